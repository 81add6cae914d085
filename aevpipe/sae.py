"""Self atomic energies: least squares of energies on element counts, streamed.

Fitted on the training split only, so validation and test stay unseen. Element
counts often do not determine every element's energy: s01 alone holds CH4, NH3
and H2O, three compositions for four elements, and a split by molecule can leave
an element out of training. Least squares then fixes only the combinations the
training compositions span; the rest is taken from TorchANI's wB97X/6-31G(d)
atomic energies (the self energies of its ANI-1x model), and a conformation whose
composition lies outside that span is flagged wherever the model is used, since
its energy there rests on the reference, not on data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from torchani.constants import GSAES

from aevpipe import keys
from aevpipe.blocks import element_counts
from aevpipe.errors import SettingsError
from aevpipe.store import ShardStore

REFERENCE_LOT = "wb97x-631gd"
FITTED = "least squares on the training split"
COMPLETED = (
    "least squares on the training split; the combinations it leaves "
    f"undetermined from TorchANI's {REFERENCE_LOT} atomic energies"
)


@dataclass(frozen=True)
class SelfEnergies:
    """Per-element energies (Hartree) and the compositions they were fitted on."""

    elements: tuple[str, ...]
    values: np.ndarray  # (E,) Hartree
    basis: np.ndarray  # (r, E) orthonormal rows spanning the training compositions
    absent: tuple[str, ...]  # elements the training split never holds

    @property
    def determined(self) -> bool:
        """True when the training compositions fix every element's energy."""
        return len(self.basis) == len(self.elements)

    @property
    def method(self) -> str:
        """How the values were found, in words."""
        return FITTED if self.determined else COMPLETED

    def outside(self, counts: np.ndarray) -> np.ndarray:
        """(n,) True for compositions (n, E) atom counts outside the span of the
        training compositions: their energies rest partly on the reference."""
        counts = np.asarray(counts, np.float64)
        residual = counts - (counts @ self.basis.T) @ self.basis
        scale = np.maximum(1.0, np.linalg.norm(counts, axis=1))
        return np.linalg.norm(residual, axis=1) > 1e-8 * scale

    def summary(self) -> str:
        """One line on how the values were found."""
        values = ", ".join(
            f"{e} {v:.4f}" for e, v in zip(self.elements, self.values, strict=True)
        )
        if self.determined:
            return f"self energies (Hartree, {FITTED}): {values}"
        missing = (
            f"; absent from training: {', '.join(self.absent)}" if self.absent else ""
        )
        return (
            f"self energies (Hartree): {values}. The training split's compositions "
            f"determine {len(self.basis)} of {len(self.elements)} combinations"
            f"{missing}; the rest is TorchANI's {REFERENCE_LOT} atomic energies, and "
            "predictions for other compositions are flagged"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "elements": list(self.elements),
            "values": self.values.tolist(),
            "basis": self.basis.tolist(),
            "method": self.method,
            "absent": list(self.absent),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SelfEnergies:
        elements = tuple(data["elements"])
        basis = np.asarray(data["basis"], np.float64).reshape(-1, len(elements))
        values = np.asarray(data["values"], np.float64)
        return cls(elements, values, basis, tuple(data["absent"]))

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> SelfEnergies:
        """From a model payload; a model saved before the fit was recorded counts
        as fully determined (its training split determined them or it predicted
        silently; nothing more is known)."""
        if "self_energy_fit" in payload:
            return cls.from_dict(payload["self_energy_fit"])
        elements = tuple(payload["elements"])
        values = np.asarray(payload["self_energies"], np.float64)
        return cls(elements, values, np.eye(len(elements)), ())


def reference_energies(elements: tuple[str, ...]) -> np.ndarray:
    """TorchANI's wB97X/6-31G(d) atomic energies; 0 for elements it lacks."""
    table = GSAES[REFERENCE_LOT]
    return np.array([table.get(e, 0.0) for e in elements], np.float64)


def solve(xtx: np.ndarray, xty: np.ndarray, elements: tuple[str, ...]) -> SelfEnergies:
    """Self energies from the normal equations of energies on element counts.

    Least squares fixes the part of the solution in the span of the compositions;
    of all solutions, the one closest to the reference is taken.
    """
    present = np.diag(xtx) > 0
    if not present.any():
        raise SettingsError("no conformations in the split to fit self energies on")
    w, v = np.linalg.eigh(xtx)
    keep = w > w.max() * 1e-12
    basis = v[:, keep].T  # orthonormal rows spanning the compositions seen
    reference = reference_energies(elements)
    residual = xty - xtx @ reference
    values = reference + v[:, keep] @ ((v[:, keep].T @ residual) / w[keep])
    absent = tuple(e for e, p in zip(elements, present, strict=True) if not p)
    return SelfEnergies(elements, values, basis, absent)


def fit_self_energies(store: ShardStore, split: int = 0) -> SelfEnergies:
    """Self energies fitted on `split` of `store` (see `solve`).

    Normal equations are summed chunk by chunk: memory does not grow with the data.
    """
    n_el = len(store.elements)
    xtx = np.zeros((n_el, n_el))
    xty = np.zeros(n_el)
    for layout in store.layouts:
        c0, c1 = layout.conformation_range(split)
        step = store.array(layout.n_atoms, keys.SPECIES).chunks[0]
        for a in range(c0, c1, step):
            b = min(c1, a + step)
            species = store.read(layout.n_atoms, keys.SPECIES, None, a, b)
            x = element_counts(species, n_el).astype(np.float64)
            xtx += x.T @ x
            xty += x.T @ store.read(layout.n_atoms, keys.ENERGY, None, a, b)
    return solve(xtx, xty, tuple(store.elements))
