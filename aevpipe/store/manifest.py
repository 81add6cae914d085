"""The manifest: written last, it makes a store complete.

It holds the counts per split, rows per element, bytes, and a checksum per array:
the CRC-32 of one line per chunk file, in name order, "<name> <its CRC-32, 8 hex
digits> <its size>\n", so a damaged copy can be found and the file named by
recomputing it. CRC-32 rather than a cryptographic hash: it is for finding damage,
not tampering.
"""

from __future__ import annotations

import os
import re
import shutil
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aevpipe import keys
from aevpipe.errors import StoreError
from aevpipe.store.format import layout_from_attr, specs_of
from aevpipe.store.writer import write_json_atomic, writing

# Zarr v2's chunk file names, "0", "3.0": anything else in an array's folder is
# metadata (.zarray) or a temporary file that a killed writer left (*.partial).
CHUNK_NAME = re.compile(r"\d+(\.\d+)*")


def chunk_files(path: Path, array: str) -> list[str]:
    """Names of the chunk files of `array`, in name order; a StoreError when the
    array's folder is missing."""
    try:
        names = os.listdir(Path(path) / array)
    except FileNotFoundError:
        raise StoreError(
            f"{path}: array {array} is missing; featurize again with --overwrite"
        ) from None
    return sorted(n for n in names if CHUNK_NAME.fullmatch(n))


def array_checksum(path: Path, array: str) -> tuple[str, int]:
    """An array's checksum and its bytes on disk (see the module docstring)."""
    folder = Path(path) / array
    lines, size = [], 0
    for name in chunk_files(path, array):
        data = (folder / name).read_bytes()
        lines.append(f"{name} {zlib.crc32(data):08x} {len(data)}\n")
        size += len(data)
    return f"{zlib.crc32(''.join(lines).encode()):08x}", size


def finish(
    path: Path,
    attrs: dict[str, Any],
    extra: dict[str, Any],
    on_array: Callable[[], Any] | None = None,
    threads: int = 1,
) -> dict[str, Any]:
    """Write the manifest of the store at `path` (root attributes `attrs`), which
    makes it complete, and remove the run's progress records and locks. Chunk files
    are read back for their checksums, on `threads` threads (reads and CRC-32
    release the GIL); `on_array()` is called after each array."""
    path = Path(path)
    specs = specs_of(attrs)
    with ThreadPoolExecutor(max(1, threads)) as pool:
        sums = pool.map(lambda spec: array_checksum(path, spec.path), specs)
        arrays = {}
        for spec, (crc, size) in zip(specs, sums, strict=True):
            arrays[spec.path] = {"crc32": crc, "bytes": size}
            if on_array is not None:
                on_array()
    layouts = layout_from_attr(attrs[keys.ATTR_LAYOUT])
    elements = attrs[keys.ATTR_ELEMENTS]
    manifest = {
        keys.ATTR_FORMAT_VERSION: keys.FORMAT_VERSION,
        "conformations": {
            name: sum(g.conformations[s] for g in layouts)
            for s, name in enumerate(keys.SPLIT_NAMES)
        },
        "atoms": sum(g.n_atoms * g.n_conformations for g in layouts),
        "rows": {
            e: sum(g.total_rows()[i] for g in layouts) for i, e in enumerate(elements)
        },
        "groups": {keys.group_name(g.n_atoms): g.n_conformations for g in layouts},
        "bytes": sum(a["bytes"] for a in arrays.values()),
        "uncompressed_bytes": sum(spec.nbytes for spec in specs),
        "arrays": arrays,
        **extra,
    }
    with writing(path, keys.MANIFEST):
        write_json_atomic(path / keys.MANIFEST, manifest)
    shutil.rmtree(path / keys.PROGRESS_DIR, ignore_errors=True)
    shutil.rmtree(path / keys.LOCKS_DIR, ignore_errors=True)
    for leftover in path.rglob("*.partial"):
        leftover.unlink(missing_ok=True)
    return manifest
