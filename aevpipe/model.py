"""Per-element networks, one model or an ensemble of them. No I/O.

A conformation's energy is the sum of its atoms' energies; atoms come as dense row
blocks per element with a row -> conformation index, summed with `index_add_`.
`ElementNetworks` is one model as plain `nn.Linear` layers (what export and
TorchANI take); `ElementEnsemble` is K of them with each layer's weights stacked,
so one batched GEMM per layer computes every member: training uses it, for K = 1
too (as fast as `nn.Linear` layers).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from aevpipe.errors import SettingsError

ACTIVATIONS = {
    "celu": lambda: nn.CELU(alpha=0.1),
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
}


def check_architecture(
    elements: tuple[str, ...], hidden: dict[str, tuple[int, ...]], activation: str
) -> None:
    """A SettingsError for networks that cannot be built: no elements, an element
    without hidden layer sizes, an unknown activation."""
    if not elements:
        raise SettingsError("need at least one element")
    missing = [e for e in elements if e not in hidden]
    if missing:
        raise SettingsError(f"no hidden layer sizes for element(s) {missing}")
    if activation not in ACTIVATIONS:
        raise SettingsError(
            f"unknown activation {activation!r}; choose from {sorted(ACTIVATIONS)}"
        )


def element_mlp(
    aev_length: int, hidden: tuple[int, ...], activation: str
) -> nn.Sequential:
    """aev_length -> hidden... -> 1, with `activation` between linear layers."""
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
        check_architecture(elements, hidden, activation)
        self.elements = tuple(elements)
        self.aev_length = aev_length
        self.hidden = {e: tuple(hidden[e]) for e in elements}
        self.activation = activation
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


class StackedMLP(nn.Module):
    """K members' networks of one element: (rows, L) -> (K, rows).

    Each layer's weights are (K, in, out), one batched GEMM for all members; the
    first takes the shared input as a stride-0 batch (`expand`), so it is never
    copied, and every activation is a contiguous (K, rows, out) tensor.
    """

    def __init__(
        self, members: int, aev_length: int, hidden: tuple[int, ...], activation: str
    ):
        super().__init__()
        sizes = (aev_length, *hidden, 1)
        # element_mlp's initialisation: Kaiming normal with a = 1, std 1/sqrt(in).
        self.weights = nn.ParameterList(
            [
                nn.Parameter(torch.randn(members, a, b) / math.sqrt(a))
                for a, b in zip(sizes[:-1], sizes[1:], strict=True)
            ]
        )
        self.biases = nn.ParameterList(
            [nn.Parameter(torch.zeros(members, 1, b)) for b in sizes[1:]]
        )
        self.activation = ACTIVATIONS[activation]()

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        out = rows.expand(self.weights[0].shape[0], -1, -1)
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            out = torch.baddbmm(b, self.activation(out) if i else out, w)
        return out.squeeze(-1)

    def linears(self, k: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Member k's layers as nn.Linear (weight (out, in), bias (out,)) pairs."""
        return [
            (w[k].T, b[k, 0]) for w, b in zip(self.weights, self.biases, strict=True)
        ]

    @torch.no_grad()
    def set_member(self, k: int, linears: list[tuple[torch.Tensor, torch.Tensor]]):
        """Member k's weights from nn.Linear (weight, bias) pairs."""
        for (w, b), mine, my_bias in zip(
            linears, self.weights, self.biases, strict=True
        ):
            mine[k] = w.T
            my_bias[k, 0] = b


class ElementEnsemble(nn.Module):
    """K members of per-element networks computed together: energies (K, n)."""

    def __init__(
        self,
        elements: tuple[str, ...],
        aev_length: int,
        hidden: dict[str, tuple[int, ...]],
        activation: str = "celu",
        members: int = 1,
    ):
        super().__init__()
        check_architecture(elements, hidden, activation)
        if members < 1:
            raise SettingsError(f"an ensemble needs at least one member: {members}")
        self.elements = tuple(elements)
        self.aev_length = aev_length
        self.hidden = {e: tuple(hidden[e]) for e in elements}
        self.activation = activation
        self.members = members
        self.nets = nn.ModuleDict(
            {
                e: StackedMLP(members, aev_length, self.hidden[e], activation)
                for e in elements
            }
        )

    def forward(
        self,
        aev: dict[str, torch.Tensor],
        conf: dict[str, torch.Tensor],
        n_conformations: int,
    ) -> torch.Tensor:
        """Energies (K, n_conformations) from element row blocks and their indices."""
        first = next(iter(aev.values()))
        out = first.new_zeros(self.members, n_conformations)
        for element, rows in aev.items():
            out.index_add_(1, conf[element], self.nets[element](rows))
        return out

    def member(self, k: int) -> ElementNetworks:
        """Member k as a model of its own (a copy)."""
        net = ElementNetworks(
            self.elements, self.aev_length, self.hidden, self.activation
        )
        with torch.no_grad():
            for e in self.elements:
                ours = [m for m in net.nets[e] if isinstance(m, nn.Linear)]
                for layer, (w, b) in zip(ours, self.nets[e].linears(k), strict=True):
                    layer.weight.copy_(w)
                    layer.bias.copy_(b)
        return net.to(next(self.parameters()).device)

    def set_member(self, k: int, net: ElementNetworks) -> None:
        """Member k's weights from a model of its own."""
        for e in self.elements:
            layers = [m for m in net.nets[e] if isinstance(m, nn.Linear)]
            self.nets[e].set_member(k, [(m.weight, m.bias) for m in layers])

    @classmethod
    def of_members(cls, members: list[ElementNetworks]) -> ElementEnsemble:
        """The ensemble of models of their own (all of one architecture)."""
        first = members[0]
        out = cls(
            first.elements,
            first.aev_length,
            first.hidden,
            first.activation,
            len(members),
        ).to(next(first.parameters()).device)
        for k, net in enumerate(members):
            out.set_member(k, net)
        return out
