"""An ASE calculator for an aevpipe model: energy and forces of one structure.

From a run directory (its best model) or a TorchScript file that `aevpipe export`
wrote; either way the model computed is the exported one, so ASE, predict and
export agree. Forces are minus the gradient of the energy (autograd). An
ensemble gives its members' mean, and their spread as `energy_std` (eV,
unbiased standard deviation; 0 for a single model). The model
runs in float64 by default: molecular dynamics conserves energy better, at no
cost that matters for one molecule.

    from aevpipe.ase import Calculator
    atoms.calc = Calculator("data/runs/s01")        # or "model.pt"
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from ase.calculators.calculator import Calculator as _AseCalculator
from ase.calculators.calculator import all_changes

from aevpipe.errors import AevpipeError
from aevpipe.keys import HARTREE_TO_EV


class Calculator(_AseCalculator):
    """Energy (eV), forces (eV/Angstrom) and an ensemble's spread (eV) from an
    aevpipe model."""

    implemented_properties = ["energy", "free_energy", "forces", "energy_std"]

    def __init__(
        self,
        model: str | Path,
        device: str = "cpu",
        dtype: torch.dtype = torch.float64,
        **kwargs,
    ):
        super().__init__(**kwargs)
        path = Path(model)
        if path.is_dir():
            from aevpipe.export import run_model

            module = torch.jit.script(run_model(path)[0])
        elif path.is_file():
            try:
                module = torch.jit.load(str(path), map_location="cpu")
            except RuntimeError as exc:
                raise AevpipeError(
                    f"{path}: not a TorchScript model (export one with "
                    "`aevpipe export RUN_DIR`)"
                ) from exc
        else:
            raise AevpipeError(f"{path}: no such run directory or model file")
        self.device = torch.device(device)
        self.dtype = dtype
        self.model = module.to(self.device).to(dtype).eval()

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        if self.atoms.pbc.any():
            raise AevpipeError(
                "periodic cells are not supported: set atoms.pbc = False"
            )
        numbers = torch.as_tensor(self.atoms.numbers, device=self.device)[None]
        coordinates = torch.tensor(
            self.atoms.positions[None], dtype=self.dtype, device=self.device
        ).requires_grad_(True)
        try:
            # Arguments: cell, pbc, charge, atomic, ensemble_values.
            members = self.model((numbers, coordinates), None, None, 0, False, True)
        except RuntimeError as exc:
            raise AevpipeError(
                f"the model cannot compute {self.atoms.get_chemical_formula()}: "
                f"{str(exc).strip().splitlines()[-1]}"
            ) from None
        members = members.energies[:, 0]
        energy = members.mean()
        forces = -torch.autograd.grad(energy, coordinates)[0][0]
        e = energy.item() * HARTREE_TO_EV
        spread = members.std().item() if len(members) > 1 else 0.0
        self.results = {
            "energy": e,
            "free_energy": e,
            "energy_std": spread * HARTREE_TO_EV,
            "forces": forces.detach().cpu().numpy().astype(np.float64) * HARTREE_TO_EV,
        }
