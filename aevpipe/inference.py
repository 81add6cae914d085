"""A trained run as a potential: geometries in, energies (Hartree) out.

AEVs are computed with exactly the parameters the run was trained with; atoms of
each element go through that element's network; self energies are added back.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from aevpipe.aev import batch_conformations, build_aev_computer, element_rows
from aevpipe.blocks import element_counts
from aevpipe.config import AEVParams
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

    def energies_and_forces(
        self, species: np.ndarray, coordinates: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """`energies`, and (n, A, 3) float64 Hartree/Angstrom forces: minus the
        gradient of the members' mean energy, in one pass. The AEVs come from the
        same AEVComputer calls, on the same batches, as `element_rows` makes, with
        autograd on; the networks run a batch at a time, so energies may differ
        from `energies` in float32's last place."""
        n, a = species.shape
        step = batch_conformations(a)
        members = np.empty((self.members, n))
        forces = np.empty((n, a, 3))
        for i in range(0, n, step):
            j = min(n, i + step)
            s = torch.from_numpy(species[i:j]).to(self.device, torch.long)
            xyz = torch.tensor(coordinates[i:j], dtype=torch.float32)
            xyz = xyz.to(self.device).requires_grad_(True)
            aevs = self.computer(s, xyz).view(-1, self.computer.out_dim)
            flat = s.view(-1)
            aev, conf = {}, {}
            for e, element in enumerate(self.elements):
                atoms = (flat == e).nonzero()[:, 0]
                if len(atoms):
                    aev[element] = aevs.index_select(0, atoms)
                    conf[element] = atoms // a
            atomic = self.model(aev, conf, j - i)
            (grad,) = torch.autograd.grad(atomic.mean(0).sum(), xyz)
            members[:, i:j] = atomic.detach().double().cpu().numpy()
            forces[i:j] = -grad.double().cpu().numpy()
        counts = element_counts(species, len(self.elements))
        return members + counts @ self.self_energies, forces
