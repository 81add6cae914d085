"""TorchANI's own training loop, as the baseline aevpipe is measured against.

After TorchANI 2.9's examples/training.py: padded batches of species and coordinates,
AEVs recomputed in every forward, loss = MSE / sqrt(atoms), AdamW, validation RMSE
per epoch. Data is held in memory (the example's CACHE mode, its fastest). Two models:

- `recipe`: the example's model as the shared README measured it: `simple_ani`
  (H, C, N, O; its own networks and self energies), AdamW lr 5e-4.
- `ani1x-nets`: the same loop with aevpipe's ANI-1x networks (CELU 0.1, biases,
  self energies fitted on train) and aevpipe's optimiser settings: only the data
  path differs from aevpipe, so throughput compares like with like.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

os.environ.setdefault("TORCHANI_NO_WARN_EXTENSIONS", "1")

import torch  # noqa: E402
import torchani  # noqa: E402

from aevpipe import keys  # noqa: E402
from aevpipe.ani1 import ANI1File  # noqa: E402
from aevpipe.config import ANI1X_HIDDEN  # noqa: E402
from aevpipe.elements import ATOMIC_NUMBER  # noqa: E402
from aevpipe.store import ShardStore  # noqa: E402

ELEMENTS = ("H", "C", "N", "O")


@dataclass
class Split:
    """Padded tensors of one split: species -1 padded."""

    numbers: torch.Tensor  # (C, A) atomic numbers
    indices: torch.Tensor  # (C, A) element indices
    coordinates: torch.Tensor  # (C, A, 3)
    energies: torch.Tensor  # (C,) float64 Hartree

    def __len__(self) -> int:
        return len(self.energies)


def load_splits(store_path, h5_paths) -> dict[str, Split]:
    """The store's own train/valid/test conformations, read from the source files
    (one path or several, matched to the store's molecules by file name)."""
    if isinstance(h5_paths, str | os.PathLike):
        h5_paths = [h5_paths]
    files = {os.path.basename(str(p)): ANI1File(p) for p in h5_paths}
    store = ShardStore.open(store_path)
    rows: dict[int, list] = {0: [], 1: [], 2: []}
    for layout in store.layouts:
        a = layout.n_atoms
        for m, i, s in zip(
            store.array(a, keys.MOLECULE)[:],
            store.array(a, keys.INDEX)[:],
            store.array(a, keys.SPLIT)[:],
            strict=True,
        ):
            rows[int(s)].append((int(m), int(i)))
    max_atoms = max(g.n_atoms for g in store.layouts)
    out = {}
    cache = {}
    for code, name in enumerate(keys.SPLIT_NAMES):
        n = len(rows[code])
        numbers = torch.full((n, max_atoms), -1, dtype=torch.long)
        coords = torch.zeros((n, max_atoms, 3))
        energies = torch.zeros(n, dtype=torch.float64)
        for k, (m, i) in enumerate(rows[code]):
            if m not in cache:
                molecule = store.molecules[m]
                f = files[os.path.basename(molecule["file"])]
                info = [x for x in f.molecules() if x.group == molecule["group"]][0]
                cache[m] = f.read(molecule["group"], 0, info.n_conformations)
            block = cache[m]
            a = block.coordinates.shape[1]
            numbers[k, :a] = torch.tensor([ATOMIC_NUMBER[s] for s in block.symbols[i]])
            coords[k, :a] = torch.from_numpy(block.coordinates[i])
            energies[k] = float(block.energies[i])
        lookup = torch.full((120,), -1, dtype=torch.long)
        for e, sym in enumerate(ELEMENTS):
            lookup[ATOMIC_NUMBER[sym]] = e
        indices = torch.where(numbers >= 0, lookup[numbers.clamp(min=0)], -1)
        out[name] = Split(numbers, indices, coords, energies)
    for f in files.values():
        f.close()
    return out


class ANI1xNets(torch.nn.Module):
    """TorchANI AEVComputer + ANINetworks, ANI-1x sizes, fixed self energies."""

    def __init__(self, self_energies: torch.Tensor):
        super().__init__()
        self.aev = torchani.AEVComputer.like_1x()
        nets = {
            e: torchani.nn.AtomicNetwork(
                (384, *ANI1X_HIDDEN[e], 1), activation=torch.nn.CELU(0.1), bias=True
            )
            for e in ELEMENTS
        }
        self.nets = torchani.nn.ANINetworks(nets)
        self.register_buffer("sae", self_energies.double())

    def energies(self, split: Split, idx: torch.Tensor) -> torch.Tensor:
        species = split.indices[idx]
        out = self.nets(species, self.aev(species, split.coordinates[idx]))
        counts = torch.stack([(species == e).sum(1) for e in range(4)], 1).double()
        return out.double() + counts @ self.sae


class Recipe(torch.nn.Module):
    """TorchANI's example model: simple_ani for H, C, N, O at wB97X/6-31G(d)."""

    def __init__(self):
        super().__init__()
        self.model = torchani.arch.simple_ani(ELEMENTS, "wb97x-631gd")

    def energies(self, split: Split, idx: torch.Tensor) -> torch.Tensor:
        out = self.model((split.numbers[idx], split.coordinates[idx]))
        return out.energies.double()

    def train_parameters(self):
        return self.model.neural_networks.parameters()


def fit_sae(split: Split) -> torch.Tensor:
    counts = torch.stack([(split.indices == e).sum(1) for e in range(4)], 1).double()
    return torch.linalg.lstsq(counts, split.energies.unsqueeze(1)).solution.squeeze(1)


def rmse_kcal(model, split: Split, batch: int = 4096) -> float:
    sq = 0.0
    with torch.no_grad():
        for i in range(0, len(split), batch):
            idx = torch.arange(
                i, min(len(split), i + batch), device=split.energies.device
            )
            sq += (
                (model.energies(split, idx) - split.energies[idx]).square().sum().item()
            )
    return math.sqrt(sq / len(split)) * keys.HARTREE_TO_KCALMOL


def to_device(split: Split, device: str) -> Split:
    return Split(
        split.numbers.to(device),
        split.indices.to(device),
        split.coordinates.to(device),
        split.energies.to(device),
    )


def train(
    kind: str,
    splits: dict[str, Split],
    batch_size: int,
    max_time: float,
    seed: int = 0,
    device: str = "cpu",
    max_epochs: int | None = None,
) -> dict:
    """Train for `max_time` seconds (or `max_epochs`) on `device`, the data held
    there; per-epoch history, throughput, best and test."""
    torch.manual_seed(seed)
    splits = {k: to_device(v, device) for k, v in splits.items()}
    train_split, valid = splits["train"], splits["valid"]
    if kind == "recipe":
        model = Recipe()
        params, lr, wd = list(model.train_parameters()), 5e-4, 1e-6
    else:
        model = ANI1xNets(fit_sae(train_split))
        params, lr, wd = list(model.nets.parameters()), 1e-3, 1e-5
    model = model.to(device)
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    n_atoms = (train_split.indices >= 0).sum(1).float()
    history, elapsed, best, best_state = [], 0.0, math.inf, None
    epoch = 0
    while elapsed < max_time and (max_epochs is None or epoch < max_epochs):
        epoch += 1
        t0 = time.perf_counter()
        order = torch.randperm(len(train_split), device=device)
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            predicted = model.energies(train_split, idx)
            target = train_split.energies[idx]
            loss = ((predicted - target).float().square() / n_atoms[idx].sqrt()).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        valid_rmse = rmse_kcal(model, valid)  # .item(): waits for the GPU
        seconds = time.perf_counter() - t0
        elapsed += seconds
        history.append(
            {
                "epoch": epoch,
                "valid_rmse_kcal_mol": valid_rmse,
                "epoch_seconds": seconds,
                "elapsed_s": elapsed,
            }
        )
        if valid_rmse < best:
            best = valid_rmse
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    return {
        "history": history,
        "best_valid_rmse_kcal_mol": best,
        "test_rmse_kcal_mol": rmse_kcal(model, splits["test"]),
        "n_train": len(train_split),
    }


def train_shipped(
    src: str, workdir: str, batch_size: int, max_time: float, seed: int = 0
) -> dict:
    """The example as shipped (CACHE = False): batches prebuilt on disk by
    `create_batched_dataset` (random 80/20 split), read by a DataLoader with two
    worker processes, `simple_ani`, AdamW lr 5e-4. Throughput only."""
    from torchani.datasets import ANIDataset, create_batched_dataset

    torch.manual_seed(seed)
    path = os.path.join(workdir, f"batched-{batch_size}")
    create_batched_dataset(
        ANIDataset(src),
        dest_path=path,
        batch_size=batch_size,
        splits={"training": 0.8, "validation": 0.2},
        divs_seed=seed,
        batch_seed=seed,
    )
    return train_batched(path, max_time=max_time, seed=seed)


def train_batched(
    path: str, max_time: float = math.inf, epochs: int | None = None, seed: int = 0
) -> dict:
    """The example's training loop over batches `create_batched_dataset` wrote to
    `path`: for `max_time` seconds or `epochs` epochs, whichever ends first."""
    from torchani.datasets import ANIBatchedDataset

    torch.manual_seed(seed)
    kwargs = {"num_workers": 2, "prefetch_factor": 2, "pin_memory": False}
    training = torch.utils.data.DataLoader(
        ANIBatchedDataset(path, split="training"),
        shuffle=True,
        batch_size=None,
        **kwargs,
    )
    validation = torch.utils.data.DataLoader(
        ANIBatchedDataset(path, split="validation"),
        shuffle=False,
        batch_size=None,
        **kwargs,
    )
    model = torchani.arch.simple_ani(ELEMENTS, "wb97x-631gd")
    optimizer = torch.optim.AdamW(
        model.neural_networks.parameters(), lr=5e-4, weight_decay=1e-6
    )
    history, elapsed, n_train = [], 0.0, 0
    while elapsed < max_time and (epochs is None or len(history) < epochs):
        t0 = time.perf_counter()
        n_train = 0
        for batch in training:
            species, coords = batch["species"], batch["coordinates"].float()
            target = batch["energies"].float()
            n_atoms = (species >= 0).sum(1, dtype=target.dtype)
            predicted = model((species, coords)).energies
            loss = ((predicted - target).square() / n_atoms.sqrt()).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            n_train += len(target)
        sq, count = 0.0, 0
        with torch.no_grad():
            for batch in validation:
                out = model((batch["species"], batch["coordinates"].float())).energies
                sq += (out - batch["energies"].float()).square().sum().item()
                count += len(out)
        seconds = time.perf_counter() - t0
        elapsed += seconds
        history.append(
            {
                "epoch": len(history) + 1,
                "epoch_seconds": seconds,
                "elapsed_s": elapsed,
                "valid_rmse_kcal_mol": math.sqrt(sq / count) * keys.HARTREE_TO_KCALMOL,
            }
        )
    return {"history": history, "n_train": n_train}
