"""What training optimises and how a model is scored: ANI's loss, the optimiser
of each preset, and the errors of a model over one pass of a loader."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from aevpipe.config import TrainSettings
from aevpipe.loader import Batch, ShardLoader
from aevpipe.metrics import ErrorSums
from aevpipe.model import ElementEnsemble


def build_optimizer(model: torch.nn.Module, s: TrainSettings) -> torch.optim.Optimizer:
    """The settings' optimiser (AdamW, or SGD for the seed's recipe) on `model`."""
    if s.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(),
            lr=s.lr,
            momentum=s.momentum,
            weight_decay=s.weight_decay,
        )
    # The fused kernel (CPU and CUDA): the optimiser step is a large share of a
    # step for networks this small.
    return torch.optim.AdamW(
        model.parameters(), lr=s.lr, weight_decay=s.weight_decay, fused=True
    )


def loss_fn(
    predicted: torch.Tensor,
    target: torch.Tensor,
    n_atoms: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """ANI's loss: squared error (Hartree) over sqrt(atoms), averaged over the
    batch, for each member of `predicted` (K, B), summed over members (so each
    member's gradient is its own). `mask` (K, B) keeps a member's conformations
    (the folds it trains on)."""
    per = (predicted - target).square() / n_atoms.sqrt()
    if mask is None:
        return per.mean(-1).sum()
    kept = mask.to(per.dtype)
    return ((per * kept).sum(-1) / kept.sum(-1).clamp(min=1)).sum()


def fold_of(key: np.ndarray, folds: int) -> np.ndarray:
    """The ensemble fold (0 .. folds - 1) of conformations by their keys: a hash
    (SplitMix64's finaliser) of their place in the store, so the same in every
    epoch, process and resumed run, and folds of about equal size."""
    x = key.astype(np.uint64)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return (x % np.uint64(folds)).astype(np.int64)


def fold_mask(batch: Batch, folds: int, device: torch.device) -> torch.Tensor:
    """(folds, B): True where a conformation is in member i's own fold i."""
    fold = torch.from_numpy(fold_of(batch.key.numpy(), folds)).to(device)
    return fold == torch.arange(folds, device=device)[:, None]


@dataclass
class Evaluation:
    """Errors of one pass: of the members' mean, and of each member."""

    ensemble: ErrorSums
    members: ErrorSums

    def reduce(self) -> Evaluation:
        self.ensemble.reduce()
        self.members.reduce()
        return self


@torch.no_grad()
def evaluate(
    model: ElementEnsemble,
    loader: ShardLoader,
    device: torch.device,
    self_energies: torch.Tensor,
    collect: Callable[[Any, torch.Tensor], None] | None = None,
    folds: bool = False,
) -> Evaluation:
    """Errors of whole-conformation energies over one pass of `loader`; with
    `folds`, each member's only on its own fold (the loader's `folds`).
    `collect(batch, energies)` sees every member's energies (K, B), Hartree."""
    model.eval()
    k = model.members
    ensemble = ErrorSums(device)
    members = ErrorSums(device, model.members)
    for batch in loader.epoch(0):
        b = batch.to(device)
        energies = model(b.aev, b.conf, b.size).double() + b.counts @ self_energies
        ensemble.add(energies.mean(0), b.energy)
        members.add(energies, b.energy, fold_mask(batch, k, device) if folds else None)
        if collect is not None:
            collect(batch, energies.cpu())
    return Evaluation(ensemble, members)
