"""Reader of XYZ files, single or multi-frame, coordinates in Angstrom, elements
as symbols or atomic numbers; the comment line is kept as it is. No torch."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aevpipe.elements import symbol_of
from aevpipe.errors import InputError


@dataclass
class Frame:
    """One structure of an XYZ file."""

    index: int
    symbols: list[str]
    coordinates: np.ndarray  # (A, 3) float32 Angstrom
    comment: str


def read_frames(path: str | Path) -> Iterator[Frame]:
    """Frames of an XYZ file in order; InputError naming the file and frame when a
    frame is malformed."""
    path = str(path)
    if not Path(path).is_file():
        raise InputError(path, None, "no such file")
    try:
        yield from _frames(path)
    except UnicodeDecodeError:
        raise InputError(path, None, "is not UTF-8 text") from None


def _frames(path: str) -> Iterator[Frame]:
    with open(path, encoding="utf-8") as fh:
        index = 0
        while True:
            header = fh.readline()
            if not header:
                return
            if not header.strip():
                continue
            where = f"frame {index}"
            try:
                n = int(header.split()[0])
            except ValueError:
                raise InputError(
                    path, where, f"expected an atom count, got {header.strip()!r}"
                ) from None
            if n < 1:
                raise InputError(path, where, f"atom count {n}: must be at least 1")
            comment = fh.readline().rstrip("\n")
            symbols, coords = [], []
            for k in range(n):
                parts = fh.readline().split()
                if len(parts) < 4:
                    raise InputError(
                        path,
                        where,
                        f"atom line {k + 1} of {n} is "
                        "missing or has fewer than 4 fields",
                    )
                symbols.append(_symbol(path, where, k, n, parts[0]))
                try:
                    coords.append([float(x) for x in parts[1:4]])
                except ValueError:
                    raise InputError(
                        path, where, f"atom line {k + 1}: coordinates are not numbers"
                    ) from None
            xyz = np.asarray(coords, dtype=np.float32).reshape(n, 3)
            if not np.isfinite(xyz).all():
                raise InputError(path, where, "coordinates are NaN or infinite")
            yield Frame(index, symbols, xyz, comment)
            index += 1


def _symbol(path: str, where: str, k: int, n: int, text: str) -> str:
    """An atom line's element: a symbol (any case) or an atomic number."""
    if not text.isdigit():
        return text.capitalize()
    try:
        return symbol_of(int(text))
    except ValueError:
        raise InputError(
            path, where, f"atom line {k + 1} of {n}: unknown atomic number {text}"
        ) from None
