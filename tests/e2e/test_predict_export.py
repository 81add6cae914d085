"""predict (HDF5 and XYZ to CSV) and export (a TorchANI model, forces by autograd)."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from aevpipe import runs
from aevpipe.ani1 import ANI1File
from aevpipe.cli import cli
from aevpipe.config import load_train_settings
from aevpipe.elements import ATOMIC_NUMBER
from aevpipe.keys import HARTREE_TO_KCALMOL
from aevpipe.stages.train import train


@pytest.fixture
def run(store, tmp_path):
    out = tmp_path / "run"
    settings = load_train_settings(
        hidden={e: (32, 16) for e in "HCNO"}, batch_size=32, max_epochs=4
    )
    train(store, out, settings, progress=False, echo=lambda *_: None)
    return out


def read_csv(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


def write_xyz(path, frames):
    with open(path, "w") as fh:
        for symbols, coords in frames:
            fh.write(f"{len(symbols)}\ncomment\n")
            for s, (x, y, z) in zip(symbols, coords, strict=True):
                fh.write(f"{s} {x:.8f} {y:.8f} {z:.8f}\n")


def test_predict_hdf5_matches_training_metrics(run, release_file, tmp_path):
    out = tmp_path / "p.csv"
    result = CliRunner().invoke(
        cli,
        [
            "predict",
            str(run),
            str(release_file),
            "--out",
            str(out),
            "--batch-atoms",
            "100",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = read_csv(out)
    assert len(rows) == 345
    assert list(rows[0]) == [
        "source",
        "group",
        "index",
        "formula",
        "n_atoms",
        "energy_pred_hartree",
        "outside_fit",
        "energy_ref_hartree",
    ]
    with ANI1File(release_file) as f:
        ref = f.read("/gdb11_s01/gdb11_s01-3", 0, 75).energies
    mine = [r for r in rows if r["group"] == "/gdb11_s01/gdb11_s01-3"]
    assert [int(r["index"]) for r in mine] == list(range(75))
    np.testing.assert_allclose([float(r["energy_ref_hartree"]) for r in mine], ref)
    # AEVs recomputed from geometries give the metrics training got from shards.
    err = (
        np.array(
            [
                float(r["energy_pred_hartree"]) - float(r["energy_ref_hartree"])
                for r in rows
            ]
        )
        * HARTREE_TO_KCALMOL
    )
    metrics = json.loads((run / runs.METRICS).read_text())
    pooled = math.sqrt(
        sum(
            metrics[s]["rmse_kcal_mol"] ** 2 * metrics[s]["n"]
            for s in ("train", "valid", "test")
        )
        / 345
    )
    assert math.sqrt((err**2).mean()) == pytest.approx(pooled, rel=1e-5)


def test_predict_xyz_equals_hdf5(run, release_file, tmp_path):
    with ANI1File(release_file) as f:
        a = f.read("/gdb11_s01/gdb11_s01-0", 0, 3)
        b = f.read("/gdb11_s01/gdb11_s01-2", 5, 7)
    frames = [(list(a.symbols[i]), a.coordinates[i]) for i in range(3)]
    frames += [(list(b.symbols[i]), b.coordinates[i]) for i in range(2)]
    xyz = tmp_path / "traj.xyz"
    write_xyz(xyz, frames)
    CliRunner().invoke(
        cli, ["predict", str(run), str(release_file), "--out", str(tmp_path / "h.csv")]
    )
    result = CliRunner().invoke(
        cli, ["predict", str(run), str(xyz), "--out", str(tmp_path / "x.csv")]
    )
    assert result.exit_code == 0, result.output
    x = read_csv(tmp_path / "x.csv")
    h = {
        (r["group"], r["index"]): float(r["energy_pred_hartree"])
        for r in read_csv(tmp_path / "h.csv")
    }
    assert [r["index"] for r in x] == ["0", "1", "2", "3", "4"]
    assert [r["formula"] for r in x] == ["CH4"] * 3 + ["H2O"] * 2
    expected = [h[("/gdb11_s01/gdb11_s01-0", str(i))] for i in range(3)]
    expected += [h[("/gdb11_s01/gdb11_s01-2", str(i))] for i in (5, 6)]
    np.testing.assert_allclose(
        [float(r["energy_pred_hartree"]) for r in x], expected, atol=1e-6
    )


def test_predict_forces_units_and_extended_xyz(run, release_file, tmp_path):
    """Forces are minus the gradient of the predicted energy, the same as the ASE
    calculator's; units scale both; extended XYZ keeps the comment and reads back
    in ASE; a PDB goes in through ase.io; - writes to standard output."""
    import ase.io

    from aevpipe.ase import Calculator
    from aevpipe.keys import HARTREE_TO_EV

    with ANI1File(release_file) as f:
        a = f.read("/gdb11_s01/gdb11_s01-2", 0, 3)  # H2O
    xyz = tmp_path / "water.xyz"
    with open(xyz, "w") as fh:
        for i in range(3):
            fh.write(f"3\nframe {i} of a scan\n")
            for s, (x, y, z) in zip(a.symbols[i], a.coordinates[i], strict=True):
                number = {"O": 8, "H": 1}[s]  # atomic numbers, as some tools write
                fh.write(f"{number} {x:.8f} {y:.8f} {z:.8f}\n")
    runner = CliRunner()
    out = tmp_path / "w.extxyz"
    args = ["predict", str(run), str(xyz), "--forces", "-u", "eV", "-o", str(out)]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    frames = ase.io.read(out, index=":")
    assert [f.info["comment"] for f in frames] == [
        f"frame {i} of a scan" for i in range(3)
    ]
    calc = Calculator(run, dtype=torch.float32)
    for frame in frames:
        atoms = frame.copy()
        atoms.calc = calc
        # The float32 calculator's total, about -2,074 eV, is resolved to 2.4e-4 eV
        # (one unit in float32's last place): a few such units apart.
        assert frame.info["energy_pred_ev"] == pytest.approx(
            atoms.get_potential_energy(), rel=3e-7
        )
        np.testing.assert_allclose(
            frame.arrays["forces_ev_per_angstrom"], atoms.get_forces(), atol=1e-4
        )
    kcal = runner.invoke(
        cli, ["predict", str(run), str(xyz), "--forces", "-u", "kcal/mol", "-o", "-"]
    )
    assert kcal.exit_code == 0, kcal.output
    rows = list(csv.DictReader(kcal.stdout.splitlines()))
    assert len(rows) == 3 and "predictions written" in kcal.stderr
    scale = HARTREE_TO_KCALMOL / HARTREE_TO_EV
    np.testing.assert_allclose(
        [float(r["energy_pred_kcal_mol"]) for r in rows],
        [f.info["energy_pred_ev"] * scale for f in frames],
        rtol=1e-9,
    )
    # One pass gives energies and forces: the energies are those without --forces.
    plain = runner.invoke(
        cli, ["predict", str(run), str(xyz), "-u", "kcal/mol", "-o", "-"]
    )
    np.testing.assert_allclose(
        [float(r["energy_pred_kcal_mol"]) for r in rows],
        [
            float(r["energy_pred_kcal_mol"])
            for r in csv.DictReader(plain.stdout.splitlines())
        ],
        rtol=1e-7,
    )
    forces = np.array([r["forces_kcal_mol_per_angstrom"].split() for r in rows], float)
    np.testing.assert_allclose(
        forces.reshape(3, 3, 3),
        [f.arrays["forces_ev_per_angstrom"] * scale for f in frames],
        atol=1e-5,
    )
    pdb = tmp_path / "water.pdb"
    ase.io.write(pdb, frames[0])
    result = runner.invoke(cli, ["predict", str(run), str(pdb), "-o", "-"])
    assert result.exit_code == 0, result.output
    (row,) = csv.DictReader(result.stdout.splitlines())
    assert row["formula"] == "H2O"


def test_predict_unknown_element_names_file_and_frame(run, tmp_path):
    xyz = tmp_path / "bad.xyz"
    write_xyz(xyz, [(["O", "H", "H"], np.eye(3)), (["S", "H", "H"], np.eye(3))])
    result = CliRunner().invoke(
        cli, ["predict", str(run), str(xyz), "--out", str(tmp_path / "o.csv")]
    )
    assert result.exit_code == 2, result.output
    assert "bad.xyz:frame 1" in result.output and "['S']" in result.output
    assert not (tmp_path / "o.csv").exists()


def test_export_is_a_torchani_model_with_consistent_forces(run, release_file, tmp_path):
    out = tmp_path / "model.pt"
    result = CliRunner().invoke(
        cli, ["export", str(run), "--out", str(out), "--format", "torchani"]
    )
    assert result.exit_code == 0, result.output
    model = torch.load(out, weights_only=False)
    CliRunner().invoke(
        cli, ["predict", str(run), str(release_file), "--out", str(tmp_path / "p.csv")]
    )
    rows = [
        r
        for r in read_csv(tmp_path / "p.csv")
        if r["group"] == "/gdb11_s01/gdb11_s01-3"
    ][:10]
    with ANI1File(release_file) as f:
        block = f.read("/gdb11_s01/gdb11_s01-3", 0, 10)
    numbers = torch.tensor([[ATOMIC_NUMBER[s] for s in row] for row in block.symbols])
    coords = torch.from_numpy(block.coordinates)
    energies = model((numbers, coords)).energies.detach().double().numpy()
    np.testing.assert_allclose(
        energies, [float(r["energy_pred_hartree"]) for r in rows], atol=2e-5
    )
    # Forces: minus the gradient of the energy, against central differences.
    model = model.double()
    x = coords[:1].double().clone().requires_grad_(True)
    energy = model((numbers[:1], x)).energies.sum()
    forces = -torch.autograd.grad(energy, x)[0][0]
    h = 1e-5
    numeric = torch.zeros_like(forces)
    with torch.no_grad():
        for atom in range(x.shape[1]):
            for axis in range(3):
                dx = torch.zeros_like(x)
                dx[0, atom, axis] = h
                up = model((numbers[:1], x + dx)).energies.item()
                down = model((numbers[:1], x - dx)).energies.item()
                numeric[atom, axis] = -(up - down) / (2 * h)
    torch.testing.assert_close(forces, numeric, atol=1e-6, rtol=1e-4)


def test_export_bad_run(tmp_path):
    result = CliRunner().invoke(cli, ["export", str(tmp_path)])
    assert result.exit_code == 2 and "not a trained aevpipe run" in result.output


def test_exported_model_drives_an_ase_optimisation(run, tmp_path):
    ase = pytest.importorskip("ase")
    from ase.optimize import BFGS

    out = tmp_path / "model.pt"
    CliRunner().invoke(cli, ["export", str(run), "--out", str(out), "-f", "torchani"])
    model = torch.load(out, weights_only=False)
    atoms = ase.Atoms(
        "CH4",
        positions=[
            [0, 0, 0],
            [0.7, 0.7, 0.7],
            [-0.6, -0.6, 0.6],
            [-0.6, 0.6, -0.6],
            [0.6, -0.6, -0.6],
        ],
    )
    atoms.calc = model.ase()
    e0, f0 = atoms.get_potential_energy(), np.abs(atoms.get_forces()).max()
    BFGS(atoms, logfile=None).run(fmax=0.05, steps=30)
    assert atoms.get_potential_energy() < e0
    assert np.abs(atoms.get_forces()).max() < f0


def test_outputs_go_inside_the_run_or_where_asked(run, release_file, tmp_path):
    """Defaults are RUN_DIR/predictions.csv and RUN_DIR/model.pt, never the
    current folder; a folder that does not exist (or is a file) is one line."""
    runner = CliRunner()
    result = runner.invoke(cli, ["predict", str(run), str(release_file)])
    assert result.exit_code == 0, result.output
    assert (run / "predictions.csv").is_file()
    result = runner.invoke(cli, ["export", str(run)])
    assert result.exit_code == 0, result.output
    assert (run / "model.pt").is_file()
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for args in (
        ["predict", str(run), str(release_file), "--out", str(blocker / "p.csv")],
        ["export", str(run), "--out", str(tmp_path / "no" / "such" / "m.pt")],
    ):
        result = runner.invoke(cli, args)
        assert result.exit_code == 2 and "does not exist" in result.output
        assert "Traceback" not in result.output
    assert not (tmp_path / "no").exists()


def test_an_empty_input_is_an_error_not_zero_rows(run, release_file, tmp_path):
    empty = tmp_path / "empty.xyz"
    empty.write_text("")
    out = tmp_path / "p.csv"
    result = CliRunner().invoke(
        cli, ["predict", str(run), str(release_file), str(empty), "--out", str(out)]
    )
    assert result.exit_code == 2
    assert f"{empty}: holds no conformations" in result.output
    assert not out.exists()


def test_compositions_outside_the_self_energy_fit_are_flagged(release_file, tmp_path):
    """Trained on CH4, NH3 and H2O (s01's three compositions for four elements),
    the self energies are not all determined: train says so, predict flags
    methanol and not methane, export and report warn."""
    from aevpipe.config import FeaturizeSettings
    from aevpipe.stages.featurize import featurize
    from tests.synthetic import write_release

    s01 = write_release(
        tmp_path / "three.h5", {"CH4": 60, "NH3": 60, "H2O": 60}, seed=3
    )
    store = tmp_path / "aev"
    featurize([str(s01)], store, FeaturizeSettings(), progress=False)
    lines = []
    settings = load_train_settings(hidden={e: (16,) for e in "HCNO"}, max_epochs=2)
    train(store, tmp_path / "run", settings, progress=False, echo=lines.append)
    assert any("determine 3 of 4 combinations" in line for line in lines)
    runner = CliRunner()
    out = tmp_path / "p.csv"
    result = runner.invoke(
        cli, ["predict", str(tmp_path / "run"), str(release_file), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    flags = {(r["formula"], r["outside_fit"]) for r in read_csv(out)}
    assert flags == {("CH4", "0"), ("H3N", "0"), ("H2O", "0"), ("CH4O", "1")}
    assert "75 of them have compositions outside" in result.output
    result = runner.invoke(cli, ["export", str(tmp_path / "run")])
    assert result.exit_code == 0 and "determine 3 of 4" in result.output
    result = runner.invoke(cli, ["report", str(tmp_path / "run")])
    assert result.exit_code == 0 and "determine 3 of 4" in result.output


# Loads the TorchScript file where neither aevpipe nor TorchANI can be imported,
# and prints energies and forces of the conformations given as JSON.
LOAD_ALONE = """
import json, sys
sys.modules["torchani"] = None
sys.modules["aevpipe"] = None
import torch
model = torch.jit.load(sys.argv[1])
numbers = torch.tensor(json.loads(sys.argv[2]))
coords = torch.tensor(json.loads(sys.argv[3]), requires_grad=True)
energies = model((numbers, coords)).energies
forces = -torch.autograd.grad(energies.sum(), coords)[0]
print(json.dumps([energies.tolist(), forces.tolist()]))
"""


def run_alone(script, numbers, coordinates):
    """Energies and forces from the TorchScript file `script`, loaded in a Python
    that cannot import aevpipe or TorchANI."""
    import subprocess
    import sys

    done = subprocess.run(
        [
            sys.executable,
            "-c",
            LOAD_ALONE,
            str(script),
            json.dumps(numbers),
            json.dumps(np.asarray(coordinates).tolist()),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_torchscript_export_runs_without_aevpipe_or_torchani(
    run, release_file, tmp_path
):
    """The default export is TorchScript: loaded in a Python that cannot import
    aevpipe or TorchANI, it gives the energies predict gives and the forces of the
    TorchANI model."""

    runner = CliRunner()
    script, pickled = tmp_path / "model.pt", tmp_path / "torchani.pt"
    result = runner.invoke(cli, ["export", str(run), "--out", str(script)])
    assert result.exit_code == 0 and "TorchScript model written" in result.output
    runner.invoke(cli, ["export", str(run), "--out", str(pickled), "-f", "torchani"])
    with ANI1File(release_file) as f:
        block = f.read("/gdb11_s01/gdb11_s01-3", 0, 4)
    numbers = [[ATOMIC_NUMBER[s] for s in row] for row in block.symbols]
    energies, forces = run_alone(script, numbers, block.coordinates)
    runner.invoke(
        cli, ["predict", str(run), str(release_file), "--out", str(tmp_path / "p.csv")]
    )
    rows = [
        r
        for r in read_csv(tmp_path / "p.csv")
        if r["group"] == "/gdb11_s01/gdb11_s01-3"
    ][:4]
    np.testing.assert_allclose(
        energies, [float(r["energy_pred_hartree"]) for r in rows], atol=2e-5
    )
    model = torch.load(pickled, weights_only=False)
    x = torch.from_numpy(block.coordinates).requires_grad_(True)
    e = model((torch.tensor(numbers), x)).energies.sum()
    expected = -torch.autograd.grad(e, x)[0]
    np.testing.assert_allclose(forces, expected.numpy(), atol=1e-5)


def test_the_openmm_wrapper_of_docs_export_scripts_and_converts_units(run, tmp_path):
    """docs/EXPORT.md's openmm-torch wrapper (without OpenMM): it scripts around
    the loaded model and gives kJ/mol from positions in nm."""

    class Potential(torch.nn.Module):
        def __init__(self, model, numbers):
            super().__init__()
            self.model = model
            self.register_buffer("numbers", torch.tensor([numbers]))

        def forward(self, positions):
            coordinates = positions.to(torch.float32).unsqueeze(0) * 10.0
            return self.model((self.numbers, coordinates)).energies.sum() * 2625.4996

    out = tmp_path / "model.pt"
    CliRunner().invoke(cli, ["export", str(run), "--out", str(out)])
    model = torch.jit.load(out)
    module = torch.jit.script(Potential(model, [8, 1, 1]))
    angstrom = torch.tensor([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]])
    hartree = model((torch.tensor([[8, 1, 1]]), angstrom[None])).energies.item()
    kj = module(angstrom.double() / 10.0).item()
    assert kj == pytest.approx(hartree * 2625.4996, rel=1e-6)
