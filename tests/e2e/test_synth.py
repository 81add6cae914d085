"""Synthetic ANI-1-shaped data: real molecules and potential, readable, marked."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("rdkit")

from aevpipe.ani1 import ANI1File  # noqa: E402
from aevpipe.cli import cli  # noqa: E402
from aevpipe.config import FeaturizeSettings  # noqa: E402
from aevpipe.keys import HARTREE_TO_KCALMOL  # noqa: E402
from aevpipe.stages.featurize import featurize  # noqa: E402
from aevpipe.store import ShardStore  # noqa: E402
from aevpipe.synth import OFFSETS, enumerate_smiles, synthesize  # noqa: E402


def test_molecules_are_about_ani1s():
    smiles = enumerate_smiles()
    assert 90 <= len(smiles) <= 110  # ANI-1 subsets 1-4: 97 molecules
    assert {"C", "N", "O", "CC", "C#N", "CCO", "CC(C)=O"} <= set(smiles)
    assert "OO" not in smiles and "C=C=C" not in smiles and "C=CO" not in smiles


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    synthesize(out, "demo", seed=3, conformations=1500)
    return out


def test_layout_energies_and_geometries(synth_dir):
    files = sorted(synth_dir.glob("ani_gdb_s0*.h5"))
    assert [f.name for f in files] == [f"ani_gdb_s0{i}.h5" for i in range(1, 5)]
    total = 0
    for path in files:
        with ANI1File(path) as f:
            assert f.is_synthetic()
            for m in f.molecules():
                block = f.read(m.group, 0, m.n_conformations)
                total += m.n_conformations
                offset = sum(OFFSETS[s] for s in block.symbols[0])
                above = (block.energies - offset) * HARTREE_TO_KCALMOL
                assert above.min() >= -1e-6 and above.max() <= 80 + 1e-6
                x = block.coordinates.astype(float)
                d = np.linalg.norm(x[:, :, None] - x[:, None], axis=-1)
                d[:, np.arange(m.n_atoms), np.arange(m.n_atoms)] = np.inf
                assert d.min() >= 0.7  # no broken molecules
    assert total == 1500


def test_deterministic_for_a_seed(synth_dir, tmp_path):
    synthesize(tmp_path, "demo", seed=3, conformations=1500)
    with (
        h5py.File(synth_dir / "ani_gdb_s03.h5") as a,
        h5py.File(tmp_path / "ani_gdb_s03.h5") as b,
    ):
        for name in a["gdb11_s03"]:
            np.testing.assert_array_equal(
                a["gdb11_s03"][name]["coordinates"][()],
                b["gdb11_s03"][name]["coordinates"][()],
            )


def test_featurized_store_is_marked_synthetic(synth_dir, tmp_path):
    files = [str(p) for p in sorted(synth_dir.glob("*.h5"))]
    featurize(files, tmp_path / "aev", FeaturizeSettings(), progress=False)
    store = ShardStore.open(tmp_path / "aev")
    assert store.attrs["synthetic"] is True
    assert len(store.molecules) >= 90


def test_cli_synth_says_synthetic(tmp_path):
    result = CliRunner().invoke(
        cli,
        ["synth", "--out", str(tmp_path), "--conformations", "400", "--no-progress"],
    )
    assert result.exit_code == 0, result.output
    assert "SYNTHETIC" in result.output and "ani_gdb_s04.h5" in result.output
