"""The manifest: written last, it makes a store complete.

It holds the counts per split, rows per element, bytes, and a checksum per array:
the CRC-32 of one line per chunk file, in name order, "<name> <its CRC-32, 8 hex
digits> <its size>\n". `chunks` keeps each file's CRC-32 and size, so that a reader
can check cheaply that every file is there at its size (`check_files`) and
`verify` can name each damaged file. CRC-32 rather than a cryptographic hash: it is
for finding damage, not tampering.
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
from aevpipe.store.files import read_complete, write_json_atomic, writing
from aevpipe.store.format import ArraySpec, chunk_shape, layout_from_attr, specs_of

DAMAGED = "`aevpipe verify` names every damaged file; featurize again with --overwrite"

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


def file_checksums(path: Path, array: str) -> dict[str, list]:
    """Each chunk file of `array`: name -> [its CRC-32 in 8 hex digits, its size]."""
    folder = Path(path) / array
    out = {}
    for name in chunk_files(path, array):
        data = (folder / name).read_bytes()
        out[name] = [f"{zlib.crc32(data):08x}", len(data)]
    return out


def array_checksum(path: Path, array: str) -> tuple[str, int]:
    """An array's checksum and its bytes on disk (see the module docstring)."""
    return _summed(file_checksums(path, array))


def _summed(files: dict[str, list]) -> tuple[str, int]:
    lines = "".join(f"{name} {crc} {size}\n" for name, (crc, size) in files.items())
    return f"{zlib.crc32(lines.encode()):08x}", sum(s for _, s in files.values())


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
        sums = pool.map(lambda spec: file_checksums(path, spec.path), specs)
        arrays = {}
        for spec, files in zip(specs, sums, strict=True):
            crc, size = _summed(files)
            arrays[spec.path] = {"crc32": crc, "bytes": size, "chunks": files}
            if on_array is not None:
                on_array()
    layouts = layout_from_attr(attrs[keys.ATTR_LAYOUT])
    elements = attrs[keys.ATTR_ELEMENTS]
    manifest = {
        keys.ATTR_FORMAT_VERSION: attrs[keys.ATTR_FORMAT_VERSION],
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


def expected_chunks(spec: ArraySpec, chunk_rows: int) -> list[str]:
    """The chunk file names an array of `spec` holds, every chunk being written."""
    rows = chunk_shape(spec, chunk_rows)[0]
    return [
        f"{i}" + ".0" * (len(spec.shape) - 1) for i in range(-(-spec.shape[0] // rows))
    ]


def check_files(path: Path, attrs: dict[str, Any], manifest: dict[str, Any]) -> None:
    """A StoreError naming the first chunk file that is missing or not of the size
    the manifest records (a stat per file: cheap enough for every open)."""
    path = Path(path)
    for spec in specs_of(attrs):
        recorded = manifest["arrays"].get(spec.path, {}).get("chunks", {})
        if not (path / spec.path / ".zarray").is_file():
            raise StoreError(
                f"{path}: {spec.path}/.zarray is missing: the store is damaged "
                f"({DAMAGED})"
            )
        for name in expected_chunks(spec, attrs[keys.ATTR_CHUNK_ROWS]):
            try:
                size = (path / spec.path / name).stat().st_size
            except FileNotFoundError:
                raise StoreError(
                    f"{path}: chunk file {spec.path}/{name} is missing: the store "
                    f"is damaged ({DAMAGED})"
                ) from None
            if name in recorded and size != recorded[name][1]:
                raise StoreError(
                    f"{path}: chunk file {spec.path}/{name} is {size} bytes, the "
                    f"manifest says {recorded[name][1]}: the store is damaged "
                    f"({DAMAGED})"
                )


def verify(path: Path) -> list[str]:
    """Every difference between the store's files and its manifest, one line
    each, naming the array and chunk file; empty when the store is whole. A
    StoreError when `path` is no complete store."""
    path = Path(path)
    attrs, manifest = read_complete(path)
    problems = []
    for spec in specs_of(attrs):
        entry = manifest["arrays"].get(spec.path)
        if entry is None:
            problems.append(f"{spec.path}: not in the manifest")
            continue
        try:
            files = file_checksums(path, spec.path)
        except StoreError:
            problems.append(f"{spec.path}: the array's folder is missing")
            continue
        recorded = entry.get("chunks")
        if recorded is None:  # a manifest of an earlier version: whole arrays only
            if _summed(files)[0] != entry["crc32"]:
                problems.append(f"{spec.path}: checksum differs from the manifest's")
            continue
        for name in sorted(set(recorded) | set(files), key=_natural):
            if name not in files:
                problems.append(f"{spec.path}/{name}: missing")
            elif name not in recorded:
                problems.append(f"{spec.path}/{name}: not in the manifest")
            elif files[name] != recorded[name]:
                problems.append(
                    f"{spec.path}/{name}: CRC-32 {files[name][0]}, {files[name][1]} "
                    f"bytes; the manifest says {recorded[name][0]}, "
                    f"{recorded[name][1]} bytes"
                )
    return problems


def _natural(name: str) -> list[int]:
    return [int(part) for part in name.split(".")]
