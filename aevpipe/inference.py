"""A trained run as a potential: geometries in, energies (Hartree) out.

AEVs are computed with exactly the parameters the run was trained with; atoms of
each element go through that element's network; self energies are added back.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from aevpipe.aev import build_aev_computer, element_rows
from aevpipe.config import AEVParams
from aevpipe.loader import element_counts
from aevpipe.runs import load_best
from aevpipe.sae import SelfEnergies


class Potential:
    """Energies of conformations from a run's best model."""

    def __init__(self, run: Path, device: torch.device):
        self.device = device
        self.model, payload = load_best(Path(run), device)
        self.model.eval()
        self.aev = AEVParams.from_dict(payload["aev"])
        self.elements: tuple[str, ...] = tuple(payload["elements"])
        self.self_energies = np.asarray(payload["self_energies"], np.float64)
        self.self_energy_fit = SelfEnergies.from_payload(payload)
        self.computer = build_aev_computer(self.aev, device)
        self.payload = payload

    def outside_fit(self, species: np.ndarray) -> np.ndarray:
        """(n,) True where a conformation's composition lies outside those the
        self energies were fitted on (see aevpipe.sae)."""
        return self.self_energy_fit.outside(element_counts(species, len(self.elements)))

    @property
    def members(self) -> int:
        return self.model.members

    @torch.no_grad()
    def energies(self, species: np.ndarray, coordinates: np.ndarray) -> np.ndarray:
        """(members, n) float64 Hartree for `species` (n, A) element indices and
        `coordinates` (n, A, 3) Angstrom, all of one atom count: each member's
        (one row for a single model). The AEVs come from featurize's own
        `element_rows`, so they are the stored ones."""
        rows = element_rows(
            self.computer,
            torch.from_numpy(species),
            torch.from_numpy(coordinates),
            len(self.elements),
        )
        present = [(e, r) for e, r in zip(self.elements, rows, strict=True) if r]
        aev = {e: r[0].to(self.device) for e, r in present}
        conf = {e: r[1].to(self.device) for e, r in present}
        atomic = self.model(aev, conf, len(species)).double().cpu().numpy()
        counts = element_counts(species, len(self.elements))
        return atomic + counts @ self.self_energies
