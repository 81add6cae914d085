"""The store's format (version 1): which arrays a layout holds, their shapes, dtypes,
chunks and compressor. Names and units are declared in `aevpipe.keys`; this module
says how they are laid out, without touching any file.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch
from numcodecs import Blosc

from aevpipe import keys
from aevpipe.config import AEV_DTYPES, AEVParams
from aevpipe.plan import GroupLayout

# lz4 without shuffle: AEVs hold long runs of exact zeros (beyond the cutoffs),
# which lz4 finds on its own, fast in both directions.
COMPRESSOR = Blosc(cname="lz4", clevel=1, shuffle=Blosc.NOSHUFFLE)
CONFORMATION_CHUNK = 65536  # conformations per chunk of the per-conformation arrays

# AEV dtypes a store may hold -> the Zarr dtype of the AEV arrays. numpy has no
# bfloat16, so its 16 bits are stored as uint16 and converted through torch.
ZARR_DTYPES = {"float32": "f4", "float16": "f2", "bfloat16": "u2"}
assert tuple(ZARR_DTYPES) == AEV_DTYPES


def aev_dtype_of(attrs: dict[str, Any]) -> str:
    """The AEV dtype of a store from its root attributes (float32 when absent)."""
    dtype = attrs.get(keys.ATTR_AEV_DTYPE, "float32")
    if dtype not in ZARR_DTYPES:
        raise ValueError(f"unknown AEV dtype {dtype!r}")
    return dtype


def encode_aev(rows: np.ndarray, dtype: str) -> np.ndarray:
    """float32 AEV rows as the store holds them (rounded to nearest even), the
    16-bit conversions through torch, whose float16 conversion is vectorised and
    numpy's is not."""
    if dtype == "float32":
        return rows.astype(np.float32, copy=False)
    values = torch.from_numpy(np.ascontiguousarray(rows, np.float32))
    if dtype == "bfloat16":
        return values.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    return values.to(torch.float16).numpy()


def _as_torch(stored: np.ndarray, dtype: str) -> torch.Tensor:
    """Stored AEV rows as a torch tensor of their dtype (no copy). Conversions
    go through torch: its float16 -> float32 is vectorised, numpy's is not."""
    if dtype == "bfloat16":
        return torch.from_numpy(stored.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(stored)


def decode_aev(stored: np.ndarray, dtype: str) -> np.ndarray:
    """Stored AEV rows as float32."""
    if dtype == "float32":
        return stored.astype(np.float32, copy=False)
    return _as_torch(stored, dtype).float().numpy()


def decode_aev_into(stored: np.ndarray, dtype: str, out: np.ndarray) -> None:
    """Stored AEV rows converted into `out` (float32, same shape), with no
    float32 array in between."""
    torch.from_numpy(out).copy_(_as_torch(stored, dtype))


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
    groups: tuple[GroupLayout, ...],
    elements: tuple[str, ...],
    aev_length: int,
    aev_dtype: str = "float32",
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
                    (keys.AEV, (rows, aev_length), ZARR_DTYPES[aev_dtype]),
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
        aev_dtype_of(attrs),
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
