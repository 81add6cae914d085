"""Per-element networks: an `nn.ModuleDict` keyed by element symbol. No I/O.

A conformation's energy is the sum of its atoms' energies; atoms come as dense row
blocks per element with a row -> conformation index, summed with `index_add_`.
"""

from __future__ import annotations

import torch
from torch import nn

from aevpipe.errors import SettingsError

ACTIVATIONS = {
    "celu": lambda: nn.CELU(alpha=0.1),
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
}


def element_mlp(
    aev_length: int, hidden: tuple[int, ...], activation: str
) -> nn.Sequential:
    """aev_length -> hidden... -> 1, with `activation` between linear layers."""
    if activation not in ACTIVATIONS:
        raise SettingsError(
            f"unknown activation {activation!r}; choose from {sorted(ACTIVATIONS)}"
        )
    sizes = (aev_length, *hidden)
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [nn.Linear(a, b), ACTIVATIONS[activation]()]
    layers.append(nn.Linear(sizes[-1], 1))
    for layer in layers:
        if isinstance(layer, nn.Linear):
            nn.init.kaiming_normal_(layer.weight, a=1.0)
            nn.init.zeros_(layer.bias)
    return nn.Sequential(*layers)


class ElementNetworks(nn.Module):
    """One network per element; energies summed per conformation."""

    def __init__(
        self,
        elements: tuple[str, ...],
        aev_length: int,
        hidden: dict[str, tuple[int, ...]],
        activation: str = "celu",
    ):
        super().__init__()
        if not elements:
            raise SettingsError("need at least one element")
        missing = [e for e in elements if e not in hidden]
        if missing:
            raise SettingsError(f"no hidden layer sizes for element(s) {missing}")
        self.elements = tuple(elements)
        self.aev_length = aev_length
        self.nets = nn.ModuleDict(
            {e: element_mlp(aev_length, tuple(hidden[e]), activation) for e in elements}
        )

    def forward(
        self,
        aev: dict[str, torch.Tensor],
        conf: dict[str, torch.Tensor],
        n_conformations: int,
    ) -> torch.Tensor:
        """Energies (n_conformations,) from element row blocks and their indices."""
        first = next(iter(aev.values()))
        out = torch.zeros(n_conformations, dtype=first.dtype, device=first.device)
        for element, rows in aev.items():
            atomic = self.nets[element](rows).squeeze(-1)
            out.index_add_(0, conf[element], atomic)
        return out
