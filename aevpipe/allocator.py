"""glibc malloc settings for the large, short-lived tensors of AEV computation.

TorchANI's CPU path allocates and frees tens of megabytes per call. By default glibc
serves blocks above a (dynamic, at most 32 MiB) threshold with fresh `mmap`s and hands
freed memory back to the kernel, so every call pays page faults on memory it had a
moment ago: on this project's 2-core machine that doubles the time of an AEV
computation at 8,192 atoms per call (benchmarks/RESULTS.md). Raising the mmap and
trim thresholds keeps freed blocks in the heap for reuse. Peak memory barely moves
(the same blocks are reused; featurize of the synthetic s01-s04 peaked at 1,026 MiB
with it, 985 MiB without); memory is just not handed back between calls.

Threads: glibc gives each thread its own arena, whose heaps grow to 64 MiB at most,
so a larger block (a unit's AEV rows, about 100 MB) is a fresh `mmap` in a worker
thread whatever the thresholds. One arena for the process (M_ARENA_MAX 1) lets the
threads of an in-process featurize reuse such blocks too (s01 x10: about 10% faster
with two threads); they allocate few, large blocks, so the shared lock costs nothing
measurable. It must be set before the threads first allocate.

Only glibc is touched (other C libraries: nothing happens), and
`AEVPIPE_MALLOC=default` turns it off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
KEEP_BYTES = 1 << 30


@functools.lru_cache(maxsize=1)
def keep_freed_memory() -> bool:
    """Keep freed blocks up to 1 GiB in this process's one heap; True when applied.

    Idempotent and cheap: call it at the start of any AEV-heavy work, in every
    process (Dask workers included).
    """
    if os.environ.get("AEVPIPE_MALLOC", "").lower() == "default":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = mallopt(M_MMAP_THRESHOLD, KEEP_BYTES) == 1
    ok = mallopt(M_ARENA_MAX, 1) == 1 and ok
    return mallopt(M_TRIM_THRESHOLD, KEEP_BYTES) == 1 and ok
