"""glibc malloc settings for the large, short-lived tensors of AEV computation.

TorchANI's CPU path allocates and frees tens of megabytes per call; by default glibc
hands such blocks back to the kernel at once, so every call pays page faults on
memory it had a moment ago. Keeping freed blocks in one heap for all threads avoids
that (benchmarks/RESULTS.md has the figures). The setting is process-wide and stays
for the process's life (a featurize and a train in one process both keep up to 1 GiB
of freed memory); `AEVPIPE_MALLOC=default` turns it off. Only glibc is touched.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
KEEP = 1 << 30  # bytes


@functools.lru_cache(maxsize=1)
def keep_freed_memory() -> bool:
    """Keep freed blocks up to 1 GiB in this process's one heap; True when applied.
    Idempotent: call it before AEV work, in every process (Dask workers too), best
    before other threads start allocating."""
    if os.environ.get("AEVPIPE_MALLOC", "").lower() == "default":
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    settings = {M_MMAP_THRESHOLD: KEEP, M_ARENA_MAX: 1, M_TRIM_THRESHOLD: KEEP}
    return all(mallopt(option, value) == 1 for option, value in settings.items())
