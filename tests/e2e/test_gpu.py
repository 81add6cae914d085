"""The CUDA path of featurize, train and predict: run where torch sees a GPU,
skipped (saying so) elsewhere. `pipelines/gpu_check.sh` runs these with the GPU
benchmarks."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from aevpipe import keys
from aevpipe.config import FeaturizeSettings, load_train_settings
from aevpipe.stages.featurize import featurize
from aevpipe.stages.predict import predict
from aevpipe.stages.train import train
from aevpipe.store import ShardStore

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available"),
]

SMALL = {"hidden": {e: (32, 16) for e in "HCNO"}, "batch_size": 32}


def test_cuda_featurize_writes_the_cpu_store(release_file, tmp_path):
    """Same arrays as on the CPU; AEVs to float32 rounding (cuAEV or TorchANI's
    PyTorch path on the GPU sum in another order)."""
    stores = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / device
        featurize(
            [str(release_file)],
            out,
            FeaturizeSettings(device=device, block_size=40, chunk_rows=64),
            progress=False,
        )
        stores[device] = ShardStore.open(out)
    cpu, gpu = stores["cpu"], stores["cuda"]
    assert [g.n_atoms for g in cpu.layouts] == [g.n_atoms for g in gpu.layouts]
    for layout in cpu.layouts:
        a = layout.n_atoms
        for name in (keys.ENERGY, keys.SPECIES, keys.MOLECULE, keys.INDEX, keys.SPLIT):
            np.testing.assert_array_equal(
                cpu.read(a, name, None, 0, 10**9), gpu.read(a, name, None, 0, 10**9)
            )
        for e, element in enumerate(cpu.elements):
            if layout.total_rows()[e]:
                np.testing.assert_allclose(
                    gpu.read(a, keys.AEV, element, 0, 10**9),
                    cpu.read(a, keys.AEV, element, 0, 10**9),
                    rtol=1e-4,
                    atol=1e-6,
                )


def test_cuda_training_and_prediction(store, release_file, tmp_path):
    settings = load_train_settings(**{**SMALL, "device": "cuda", "max_epochs": 3})
    result = train(
        store, tmp_path / "gpu", settings, progress=False, echo=lambda *_: None
    )
    assert result.metrics["run"]["device"].startswith("cuda")
    assert result.metrics["valid"]["n"] > 0
    rows = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / f"{device}.csv"
        predict(tmp_path / "gpu", [str(release_file)], out, device)
        with open(out) as fh:
            rows[device] = [float(r["energy_pred_hartree"]) for r in csv.DictReader(fh)]
    np.testing.assert_allclose(rows["cuda"], rows["cpu"], atol=1e-5)


def test_cuda_ensemble_and_its_export_on_cuda(store, tmp_path):
    """An ensemble trained on CUDA; its TorchScript export moved to CUDA gives
    the CPU's energies, members and forces."""
    from aevpipe.export import export

    settings = load_train_settings(
        **{**SMALL, "device": "cuda", "max_epochs": 2, "ensemble": 2}
    )
    train(store, tmp_path / "ens", settings, progress=False, echo=lambda *_: None)
    export(tmp_path / "ens", tmp_path / "model.pt")
    numbers = torch.tensor([[6, 1, 1, 1, 1], [8, 1, 1, 0, 0]])
    xyz = torch.tensor(
        [
            [
                [0, 0, 0],
                [0.63, 0.63, 0.63],
                [-0.63, -0.63, 0.63],
                [-0.63, 0.63, -0.63],
                [0.63, -0.63, -0.63],
            ],
            [[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0], [0, 0, 0], [0, 0, 0]],
        ],
        dtype=torch.float32,
    )
    numbers[1, 3:] = -1  # padding, as TorchANI's models take it
    out = {}
    for device in ("cpu", "cuda"):
        model = torch.jit.load(str(tmp_path / "model.pt"), map_location=device)
        x = xyz.to(device).requires_grad_(True)
        z = numbers.to(device)
        members = model((z, x), None, None, 0, False, True).energies
        energy = model((z, x)).energies
        forces = -torch.autograd.grad(energy.sum(), x)[0]
        out[device] = [t.detach().cpu().numpy() for t in (members, energy, forces)]
    for cpu, cuda in zip(out["cpu"], out["cuda"], strict=True):
        np.testing.assert_allclose(cuda, cpu, atol=1e-5)
