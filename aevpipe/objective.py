"""What training optimises and how a model is scored: ANI's loss, the optimiser
of each preset, and the errors of a model over one pass of a loader."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from aevpipe.config import TrainSettings
from aevpipe.loader import ShardLoader
from aevpipe.metrics import ErrorSums
from aevpipe.model import ElementNetworks


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
    predicted: torch.Tensor, target: torch.Tensor, n_atoms: torch.Tensor
) -> torch.Tensor:
    """ANI's loss: squared error (Hartree) over sqrt(atoms), averaged over the batch."""
    return ((predicted - target).square() / n_atoms.sqrt()).mean()


@torch.no_grad()
def evaluate(
    model: ElementNetworks,
    loader: ShardLoader,
    device: torch.device,
    self_energies: torch.Tensor,
    collect: Callable[[Any, torch.Tensor], None] | None = None,
) -> ErrorSums:
    """Errors of whole-conformation energies over one pass of `loader`."""
    model.eval()
    sums = ErrorSums(device)
    for batch in loader.epoch(0):
        b = batch.to(device)
        predicted = model(b.aev, b.conf, b.size).double() + b.counts @ self_energies
        sums.add(predicted, b.energy)
        if collect is not None:
            collect(batch, predicted.cpu())
    return sums
