"""Export a run as a model: AEV computer, per-element networks, self energies.

Two formats of the same TorchANI `ANI` model. TorchScript (the default) runs
without aevpipe, TorchANI or Python code from the file: `model =
torch.jit.load("model.pt")`, then `model((atomic_numbers, coordinates)).energies`
(Hartree), forces by autograd, in Python or C++ (openmm-torch, LAMMPS). The
`torchani` format pickles the TorchANI object itself, for `model.ase()` and
TorchANI's own tools; loading it runs TorchANI's code (`weights_only=False`).
With aev.py, the only module that builds TorchANI objects.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torchani.arch import ANI
from torchani.nn import ANINetworks, AtomicNetwork, Ensemble
from torchani.sae import SelfEnergy

from aevpipe.aev import build_aev_computer
from aevpipe.config import AEVParams
from aevpipe.errors import SettingsError, output_folder
from aevpipe.model import ACTIVATIONS, ElementEnsemble
from aevpipe.runs import load_best
from aevpipe.sae import SelfEnergies


def atomic_network(net: torch.nn.Sequential, activation: str) -> AtomicNetwork:
    """TorchANI's AtomicNetwork with the weights of one of our element networks."""
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    dims = [linears[0].in_features] + [m.out_features for m in linears]
    out = AtomicNetwork(dims, activation=ACTIVATIONS[activation](), bias=True)
    for ours, theirs in zip(linears[:-1], out.layers, strict=True):
        theirs.load_state_dict(ours.state_dict())
    out.final_layer.load_state_dict(linears[-1].state_dict())
    return out


def to_torchani(
    model: ElementEnsemble, aev: AEVParams, self_energies: list[float], activation: str
) -> ANI:
    """A TorchANI `ANI` model computing exactly what `model` does on AEVs of `aev`:
    an ensemble (as TorchANI's ANI-1x is) returns its members' mean, and their
    values with `ensemble_values=True`."""
    symbols = list(model.elements)
    members = []
    for k in range(model.members):
        nets = model.member(k).nets
        members.append(
            ANINetworks({e: atomic_network(nets[e], activation) for e in symbols})
        )
    networks = members[0] if len(members) == 1 else Ensemble(members)
    return ANI(
        symbols,
        build_aev_computer(aev, torch.device("cpu")),
        networks,
        SelfEnergy(symbols, self_energies),
        periodic_table_index=True,
    )


FORMATS = ("torchscript", "torchani")


def run_model(run: Path) -> tuple[ANI, SelfEnergies]:
    """A run's best model as a TorchANI `ANI` model on the CPU, in eval mode, and
    its self energies."""
    model, payload = load_best(Path(run), torch.device("cpu"))
    ani = to_torchani(
        model,
        AEVParams.from_dict(payload["aev"]),
        payload["self_energies"],
        payload["activation"],
    ).eval()
    return ani, SelfEnergies.from_payload(payload)


def export(run: Path, out: Path, fmt: str = "torchscript") -> SelfEnergies:
    """Write the run's best model at `out` in `fmt` (see the module); returns its
    self energies, whose fit says which compositions the model was trained on."""
    if fmt not in FORMATS:
        raise SettingsError(f"unknown export format {fmt!r}; choose from {FORMATS}")
    ani, fit = run_model(run)
    out = Path(out)
    output_folder(out)
    tmp = out.with_name(out.name + ".tmp")
    if fmt == "torchscript":
        torch.jit.save(torch.jit.script(ani), str(tmp))
    else:
        torch.save(ani, tmp)
    os.replace(tmp, out)
    return fit
