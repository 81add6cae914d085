"""Inference: exported aevpipe models against TorchANI's ANI-1x, and MD through ASE.

    python -m benchmarks.inference_bench --json benchmarks/results/inference.json

In one run, on the CPU: conformations/s of energies, and of energies with forces
(the best of `--rounds` rounds over all systems),
for batches of methane (5 atoms) and hexane (20 atoms) conformations, through
- aevpipe's TorchScript export of a run with the default preset (ANI-1x's
  networks), one model and an ensemble of 8 (`--ensemble 8`);
- TorchANI 2.9's ANI-1x: its ensemble of 8, and one of its networks
  (`model[0]`), as TorchANI runs them (eager). Its trained weights download from
  the internet, which this machine cannot reach: the networks are ANI-1x's
  architecture with freshly initialised weights (the cost does not depend on the
  values);
and molecular dynamics steps per second (velocity Verlet, 0.5 fs, float64) of
methane and hexane through aevpipe's ASE calculator and TorchANI's (`.ase()`).
The runs behind the exports train for one epoch on the real s01: their accuracy
is not measured here.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from aevpipe.config import FeaturizeSettings, load_train_settings
from aevpipe.export import export
from aevpipe.stages.featurize import featurize
from aevpipe.stages.train import train
from benchmarks.common import machine, write_json

S01 = "../shared/data/ani_gdb_s01.h5"


def molecule(smiles: str):
    """An ASE Atoms of `smiles` with hydrogens, embedded and MMFF-relaxed."""
    from ase import Atoms
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    AllChem.EmbedMolecule(mol, randomSeed=0)
    AllChem.MMFFOptimizeMolecule(mol)
    positions = mol.GetConformer().GetPositions()
    return Atoms([a.GetSymbol() for a in mol.GetAtoms()], positions=positions)


def torchani_ani1x():
    """TorchANI's ANI-1x assembled as `torchani.models.ANI1x` does, without the
    download of its weights."""
    from torchani.arch import Assembler
    from torchani.utils import SYMBOLS_1X

    asm = Assembler(periodic_table_index=True)
    asm.set_symbols(SYMBOLS_1X)
    asm.set_atomic_networks(ctor="ani1x")
    asm.set_global_cutoff_fn("cosine")
    asm.set_aev_computer(angular="ani1x", radial="ani1x", strategy="pyaev")
    asm.set_neighborlist("all_pairs")
    asm.set_gsaes_as_self_energies("wb97x-631gd")
    model = asm.assemble(8)
    model.requires_grad_(False)
    return model.eval()


def rate(model, numbers, coordinates, forces: bool, seconds: float) -> float:
    """Conformations/s of `model` on the batch, energies (and forces)."""
    n = len(coordinates)
    done, t0 = 0, time.perf_counter()
    while True:
        xyz = coordinates.clone().requires_grad_(forces)
        if forces:
            energies = model((numbers, xyz)).energies
            torch.autograd.grad(energies.sum(), xyz)
        else:
            with torch.no_grad():
                model((numbers, xyz))
        done += n
        if time.perf_counter() - t0 > seconds and done >= 3 * n:
            return done / (time.perf_counter() - t0)


def md_rate(atoms, calc, steps: int) -> float:
    """Velocity Verlet steps per second (0.5 fs) from 300 K velocities."""
    from ase import units
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from ase.md.verlet import VelocityVerlet

    atoms = atoms.copy()
    atoms.calc = calc
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))
    dyn = VelocityVerlet(atoms, 0.5 * units.fs)
    dyn.run(5)
    t0 = time.perf_counter()
    dyn.run(steps)
    return steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=1.5, help="per measurement")
    ap.add_argument("--rounds", type=int, default=3, help="best of this many")
    ap.add_argument("--md-steps", type=int, default=200)
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    print(f"machine: {machine()}")
    from aevpipe.ase import Calculator

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        featurize([S01], tmp / "aev", FeaturizeSettings(), progress=False)
        models = {}
        for k in (1, 8):
            settings = load_train_settings(max_epochs=1, ensemble=k)
            train(tmp / "aev", tmp / f"run{k}", settings, progress=False, echo=print)
            export(tmp / f"run{k}", tmp / f"model{k}.pt")
            models[f"aevpipe TorchScript, {k} model(s)"] = torch.jit.load(
                str(tmp / f"model{k}.pt")
            ).eval()
        ani1x = torchani_ani1x()
        models["TorchANI ANI-1x, ensemble of 8"] = ani1x
        models["TorchANI ANI-1x, one network"] = ani1x[0]
        systems = {"methane": molecule("C"), "hexane": molecule("CCCCCC")}
        rng = np.random.default_rng(0)
        rows = []
        print(f"{'system':42s} {'molecule':8s} {'energy conf/s':>14s} {'+forces':>10s}")
        for name, atoms in systems.items():
            count = 1000 if name == "methane" else 250
            xyz = atoms.positions[None] + rng.normal(0, 0.05, (count, len(atoms), 3))
            coordinates = torch.tensor(xyz, dtype=torch.float32)
            numbers = torch.tensor(atoms.numbers).expand(count, -1).contiguous()
            # Rounds over all systems, the best of each kept: this machine's
            # speed drifts by tens of percent within minutes.
            best = {label: [0.0, 0.0] for label in models}
            for _ in range(args.rounds):
                for label, model in models.items():
                    for i, forces in enumerate((False, True)):
                        r = rate(model, numbers, coordinates, forces, args.seconds)
                        best[label][i] = max(best[label][i], r)
            for label, (e, f) in best.items():
                rows.append(
                    {
                        "system": label,
                        "molecule": name,
                        "batch": count,
                        "energy_conformations_per_s": e,
                        "energy_forces_conformations_per_s": f,
                    }
                )
                print(f"{label:42s} {name:8s} {e:14,.0f} {f:10,.0f}")
        md = []
        for name, atoms in systems.items():
            for label, calc in (
                ("aevpipe ASE calculator, 1 model", Calculator(tmp / "model1.pt")),
                ("aevpipe ASE calculator, 8 models", Calculator(tmp / "model8.pt")),
                ("TorchANI ANI-1x .ase(), ensemble of 8", ani1x.double().ase()),
            ):
                steps = md_rate(atoms, calc, args.md_steps)
                md.append({"system": label, "molecule": name, "steps_per_s": steps})
                print(f"MD {label:40s} {name:8s} {steps:8,.0f} steps/s")
            ani1x.float()
    write_json(args.json, {"machine": machine(), "throughput": rows, "md": md})


if __name__ == "__main__":
    main()
