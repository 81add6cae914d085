"""The store's format (version 1): which arrays a layout holds, their shapes, dtypes,
chunks and compressor. Names and units are declared in `aevpipe.keys`; this module
says how they are laid out, without touching any file.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from numcodecs import Blosc

from aevpipe import keys
from aevpipe.config import AEVParams
from aevpipe.plan import GroupLayout

# lz4 without shuffle: AEVs hold long runs of exact zeros (beyond the cutoffs),
# which lz4 finds on its own, fast in both directions.
COMPRESSOR = Blosc(cname="lz4", clevel=1, shuffle=Blosc.NOSHUFFLE)
CONFORMATION_CHUNK = 65536  # conformations per chunk of the per-conformation arrays


class ArraySpec(NamedTuple):
    """One array of a store: its path in the store, last name, shape and dtype."""

    path: str
    name: str
    shape: tuple[int, ...]
    dtype: str

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize


def array_specs(
    groups: tuple[GroupLayout, ...], elements: tuple[str, ...], aev_length: int
) -> list[ArraySpec]:
    """Every array a store of these group layouts holds, in path order."""
    specs = []
    for layout in groups:
        a, c = layout.n_atoms, layout.n_conformations
        per_conformation = (
            (keys.ENERGY, (c,), "f8"),
            (keys.SPECIES, (c, a), "i1"),
            (keys.MOLECULE, (c,), "i4"),
            (keys.INDEX, (c,), "i4"),
            (keys.SPLIT, (c,), "i1"),
        )
        for name, shape, dtype in per_conformation:
            specs.append(ArraySpec(keys.array_path(a, name), name, shape, dtype))
        for element, rows in zip(elements, layout.total_rows(), strict=True):
            if rows:
                for name, shape, dtype in (
                    (keys.AEV, (rows, aev_length), "f4"),
                    (keys.CONFORMATION, (rows,), "i4"),
                ):
                    path = keys.array_path(a, name, element)
                    specs.append(ArraySpec(path, name, shape, dtype))
    return sorted(specs)


def specs_of(attrs: dict[str, Any]) -> list[ArraySpec]:
    """`array_specs` of a store, from its root attributes."""
    return array_specs(
        layout_from_attr(attrs[keys.ATTR_LAYOUT]),
        tuple(attrs[keys.ATTR_ELEMENTS]),
        AEVParams.from_dict(attrs[keys.ATTR_AEV_PARAMS]).aev_length,
    )


def chunk_shape(spec: ArraySpec, chunk_rows: int) -> tuple[int, ...]:
    """Per-conformation arrays: CONFORMATION_CHUNK conformations a chunk; AEVs:
    `chunk_rows` rows; row -> conformation (4 bytes a row): as long as the larger."""
    n = spec.shape[0]
    if spec.name == keys.AEV:
        first = chunk_rows
    elif spec.name == keys.CONFORMATION:
        first = max(chunk_rows, CONFORMATION_CHUNK)
    else:
        first = CONFORMATION_CHUNK
    return (max(1, min(first, n)), *spec.shape[1:])


def layout_to_attr(groups: tuple[GroupLayout, ...]) -> list[dict[str, Any]]:
    """Group layouts as a JSON-ready list."""
    return [
        {
            "n_atoms": g.n_atoms,
            "conformations": list(g.conformations),
            "rows": [list(r) for r in g.rows],
        }
        for g in groups
    ]


def layout_from_attr(data: list[dict[str, Any]]) -> tuple[GroupLayout, ...]:
    """Inverse of `layout_to_attr`."""
    return tuple(
        GroupLayout(
            n_atoms=d["n_atoms"],
            conformations=tuple(d["conformations"]),
            rows=tuple(tuple(r) for r in d["rows"]),
        )
        for d in data
    )
