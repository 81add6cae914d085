"""AEVs with TorchANI's public AEVComputer: the only module, with export.py, that
builds TorchANI objects.

One path for featurize, predict and export: the AEVComputer's forward (TorchANI's
cuAEV kernels on CUDA when they are built, its PyTorch path otherwise) on batches of
conformations, then one gather into per-element rows. Featurize and predict call
the same `element_rows`, so a geometry gets the same AEV bits in both.
"""

from __future__ import annotations

import torch
import torchani

from aevpipe.config import AEVParams
from aevpipe.errors import AevpipeError

TORCHANI_VERSION = torchani.__version__

# Terms below float32's normal range are flushed to zero: arithmetic on subnormal
# numbers is many times slower, and such terms are far below float32's resolution
# of any AEV value. The setting is per CPU thread; threads started after this
# (featurize's unit threads, torch's own) take it from the one that starts them.
torch.set_flush_denormal(True)


def resolve_device(device: str) -> torch.device:
    """'auto' -> CUDA when torch sees it, else CPU; 'cuda' without CUDA is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise AevpipeError("--device cuda asked for, but torch sees no CUDA device")
    if device != "cpu" and not device.startswith("cuda"):
        raise AevpipeError(f"unknown device {device!r}: use auto, cpu or cuda")
    return torch.device(device)


def build_aev_computer(params: AEVParams, device: torch.device) -> torchani.AEVComputer:
    """TorchANI's AEVComputer for `params`, on `device`."""
    computer = torchani.AEVComputer.from_constants(
        radial_cutoff=params.Rcr,
        angular_cutoff=params.Rca,
        radial_eta=params.EtaR,
        radial_shifts=list(params.ShfR),
        angular_eta=params.EtaA,
        angular_zeta=params.Zeta,
        angular_shifts=list(params.ShfA),
        sections=list(params.ShfZ),
        num_species=len(params.elements),
        strategy="auto" if device.type == "cuda" else "pyaev",
        cutoff_fn=params.cutoff_fn,
    )
    if computer.out_dim != params.aev_length:
        raise AssertionError(f"AEV length {computer.out_dim} != {params.aev_length}")
    return computer.to(device)


# Atoms per AEVComputer call: large enough that the fixed Python cost of a call is
# small, small enough that its working tensors (pairs, triples) stay in the CPU's
# caches; the benchmarks in benchmarks/RESULTS.md chose it.
BATCH_ATOMS = 4096


def batch_conformations(n_atoms: int, batch_atoms: int = BATCH_ATOMS) -> int:
    """Conformations of `n_atoms` atoms per AEVComputer call (at least one)."""
    return max(1, batch_atoms // max(1, n_atoms))


@torch.no_grad()
def element_rows(
    computer: torchani.AEVComputer,
    species: torch.Tensor,
    coordinates: torch.Tensor,
    n_elements: int,
    batch_atoms: int = BATCH_ATOMS,
) -> list[tuple[torch.Tensor, torch.Tensor] | None]:
    """AEVs of conformations `coordinates` (n, A, 3) Angstrom with `species` (n, A)
    indices into the computer's element order, as dense rows per element.

    Returns, per element, (rows (R, L) float32, conformation (R,) int64) on the
    CPU, rows in (conformation, atom) order, or None where the element is absent.
    No (n, A, L) array of all conformations is built: the forward runs on batches
    of about `batch_atoms` atoms, and each batch's rows are gathered into place.
    """
    torch.set_flush_denormal(True)  # in this thread too: see the module's top
    device = next(computer.buffers()).device
    species = species.to(torch.long)
    n, a = species.shape
    step = batch_conformations(a, batch_atoms)
    out: list[tuple[torch.Tensor, torch.Tensor] | None] = []
    atoms = []  # per element: its atoms' positions in the flattened (n * A) block
    for e in range(n_elements):
        mask = species == e
        atoms.append(mask.view(-1).nonzero()[:, 0])
        out.append(
            (torch.empty((len(atoms[e]), computer.out_dim)), mask.nonzero()[:, 0])
            if len(atoms[e])
            else None
        )
    starts = range(0, n, step)
    # Each batch's rows of each element: [first[b], first[b + 1]).
    edges = torch.tensor([i * a for i in starts] + [n * a])
    firsts = [torch.searchsorted(p, edges).tolist() for p in atoms]
    for b, i in enumerate(starts):
        j = min(n, i + step)
        aevs = computer(
            species[i:j].to(device), coordinates[i:j].to(device, torch.float32)
        ).view(-1, computer.out_dim)
        for e, rows in enumerate(out):
            if rows is None:
                continue
            r0, r1 = firsts[e][b], firsts[e][b + 1]
            index = (atoms[e][r0:r1] - i * a).to(device)
            rows[0][r0:r1] = aevs.index_select(0, index).cpu()
    return out
