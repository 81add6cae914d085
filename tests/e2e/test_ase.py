"""aevpipe.ase: an ASE calculator from a run or an exported file; forces against
finite differences, a BFGS optimisation of water, NVE dynamics of methane."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms, units
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from ase.md.verlet import VelocityVerlet
from ase.optimize import BFGS
from click.testing import CliRunner

from aevpipe.ase import Calculator
from aevpipe.cli import cli
from aevpipe.config import load_train_settings
from aevpipe.errors import AevpipeError
from aevpipe.stages.train import train


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from aevpipe.config import FeaturizeSettings
    from aevpipe.stages.featurize import featurize
    from tests.synthetic import write_release

    tmp = tmp_path_factory.mktemp("ase")
    src = write_release(
        tmp / "s.h5", {"CH4": 300, "NH3": 150, "H2O": 300, "CH3OH": 150}, seed=4
    )
    featurize([str(src)], tmp / "aev", FeaturizeSettings(), progress=False)
    settings = load_train_settings(
        hidden={e: (64, 32) for e in "HCNO"}, batch_size=32, max_epochs=30
    )
    train(tmp / "aev", tmp / "run", settings, progress=False, echo=lambda *_: None)
    return tmp / "run"


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    """A model of the real s01 (CH4, NH3, H2O), 40 epochs (about 12 s): dynamics
    need a potential-energy surface that holds a molecule together."""
    from aevpipe.config import FeaturizeSettings
    from aevpipe.stages.featurize import featurize
    from tests.conftest import REAL_S01

    if not REAL_S01.is_file():
        pytest.skip(f"real ANI-1 subset not found at {REAL_S01}")
    tmp = tmp_path_factory.mktemp("ase-real")
    featurize([str(REAL_S01)], tmp / "aev", FeaturizeSettings(), progress=False)
    settings = load_train_settings(max_epochs=40)
    train(tmp / "aev", tmp / "run", settings, progress=False, echo=lambda *_: None)
    return tmp / "run"


def water() -> Atoms:
    return Atoms("OH2", positions=[[0, 0, 0], [0.99, 0.05, 0], [-0.3, 0.93, 0.02]])


def methane() -> Atoms:
    return Atoms(
        "CH4",
        positions=[
            [0, 0, 0],
            [0.63, 0.63, 0.63],
            [-0.63, -0.63, 0.63],
            [-0.63, 0.63, -0.63],
            [0.63, -0.63, -0.63],
        ],
    )


def test_forces_are_minus_the_gradient_of_the_energy(run):
    atoms = water()
    atoms.calc = Calculator(run)
    forces = atoms.get_forces()
    h, numeric = 1e-4, np.zeros_like(forces)
    for i in range(len(atoms)):
        for k in range(3):
            for sign in (1, -1):
                moved = atoms.copy()
                moved.calc = atoms.calc
                moved.positions[i, k] += sign * h
                numeric[i, k] -= sign * moved.get_potential_energy() / (2 * h)
    np.testing.assert_allclose(forces, numeric, atol=1e-5)


def test_a_run_and_its_exported_file_are_the_same_calculator(run, tmp_path):
    out = tmp_path / "model.pt"
    assert (
        CliRunner().invoke(cli, ["export", str(run), "--out", str(out)]).exit_code == 0
    )
    a, b = methane(), methane()
    a.calc, b.calc = Calculator(run), Calculator(out)
    assert a.get_potential_energy() == pytest.approx(b.get_potential_energy(), abs=1e-9)
    np.testing.assert_allclose(a.get_forces(), b.get_forces(), atol=1e-9)


def test_bfgs_relaxes_water(real_run):
    atoms = water()
    atoms.calc = Calculator(real_run)
    e0 = atoms.get_potential_energy()
    converged = BFGS(atoms, logfile=None).run(fmax=0.01, steps=200)
    assert converged
    assert atoms.get_potential_energy() < e0
    assert np.abs(atoms.get_forces()).max() < 0.01
    # Near wB97X/6-31G(d)'s water: O-H about 0.96 Angstrom, H-O-H about 104 degrees.
    assert 0.93 < atoms.get_distance(0, 1) < 1.0
    assert 0.93 < atoms.get_distance(0, 2) < 1.0
    assert 100 < atoms.get_angle(1, 0, 2) < 110


def test_nve_dynamics_of_methane_conserves_energy(real_run):
    """200 steps of 0.5 fs from 300 K: the total energy stays within 2% of the
    kinetic energy's scale."""
    atoms = methane()
    atoms.calc = Calculator(real_run)
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))
    totals = []
    dyn = VelocityVerlet(atoms, timestep=0.5 * units.fs, logfile=None)
    dyn.attach(lambda: totals.append(atoms.get_total_energy()), interval=1)
    dyn.run(200)
    kinetic = 1.5 * len(atoms) * units.kB * 300
    drift = max(totals) - min(totals)
    assert len(totals) == 201 and drift < 0.02 * kinetic, (drift, kinetic)


def test_bad_models_and_structures_are_one_error(run, tmp_path):
    with pytest.raises(AevpipeError, match="no such run directory or model file"):
        Calculator(tmp_path / "missing")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    with pytest.raises(AevpipeError, match="not a TorchScript model"):
        Calculator(junk)
    atoms = water()
    atoms.pbc = True
    atoms.cell = [10, 10, 10]
    atoms.calc = Calculator(run)
    with pytest.raises(AevpipeError, match="periodic"):
        atoms.get_potential_energy()
