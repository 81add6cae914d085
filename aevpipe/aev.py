"""AEVs with TorchANI's own AEVComputer: the only module that builds TorchANI objects.

CUDA when asked or when `auto` finds it; TorchANI's cuAEV kernels when they are
built, its pure-PyTorch path otherwise.
"""

from __future__ import annotations

import os

os.environ.setdefault("TORCHANI_NO_WARN_EXTENSIONS", "1")

import torch  # noqa: E402
import torchani  # noqa: E402

from aevpipe.config import AEVParams  # noqa: E402
from aevpipe.errors import AevpipeError  # noqa: E402

TORCHANI_VERSION = torchani.__version__


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


# Atoms per AEVComputer call: with aevpipe.allocator's setting TorchANI's CPU path
# ran fastest at this size of 2,048 / 4,096 / 8,192 on s01 x10 (benchmarks/RESULTS.md),
# and memory stays small.
BATCH_ATOMS = 4096


@torch.no_grad()
def compute_aevs(
    computer: torchani.AEVComputer,
    species: torch.Tensor,
    coordinates: torch.Tensor,
    batch_atoms: int = BATCH_ATOMS,
) -> torch.Tensor:
    """AEVs (n, A, L) float32 on the CPU of conformations `coordinates` (n, A, 3)
    Angstrom, computed in batches of about `batch_atoms` atoms.

    `species` (n, A) holds indices into the element order of the computer.
    """
    device = computer.radial.shifts.device
    n, a = species.shape
    out = torch.empty((n, a, computer.out_dim), dtype=torch.float32)
    step = max(1, batch_atoms // max(1, a))
    for i in range(0, n, step):
        s = species[i : i + step].to(device, torch.long)
        c = coordinates[i : i + step].to(device, torch.float32)
        out[i : i + step] = computer(s, c).cpu()
    return out


@torch.no_grad()
def compute_element_rows(
    computer: torchani.AEVComputer,
    species: torch.Tensor,
    coordinates: torch.Tensor,
    n_elements: int,
    batch_atoms: int = BATCH_ATOMS,
) -> list[torch.Tensor | None]:
    """AEVs of conformations of one molecule, as dense rows per element.

    `species` (n, A) holds indices into the element order; every conformation must
    hold the same number k_e of atoms of each element e (one molecule; atom order
    may differ). Returns, per element, (n * k_e, L) float32 rows on the CPU ordered
    by conformation then atom (None where k_e = 0), so the rows of conformations
    [i, j) are rows [i * k_e, j * k_e). Each batch's AEVs are copied once, straight
    into these rows: no (n, A, L) array is ever built.
    """
    device = computer.radial.shifts.device
    n, a = species.shape
    counts = [int((species[0] == e).sum()) for e in range(n_elements)]
    for e, k in enumerate(counts):
        if not bool(((species == e).sum(1) == k).all()):
            raise ValueError("conformations of one molecule differ in composition")
    # One atom order for every conformation (the release layout): a fixed gather.
    fixed = bool((species == species[:1]).all())
    positions = [torch.nonzero(species[0] == e)[:, 0] for e in range(n_elements)]
    length = computer.out_dim
    out = [torch.empty((n * k, length)) if k else None for k in counts]
    step = max(1, batch_atoms // max(1, a))
    for i in range(0, n, step):
        j = min(n, i + step)
        s = species[i:j]
        aevs = computer(
            s.to(device, torch.long), coordinates[i:j].to(device, torch.float32)
        ).cpu()
        for e, k in enumerate(counts):
            if not k:
                continue
            rows = out[e][i * k : j * k]
            if fixed:
                torch.index_select(aevs, 1, positions[e], out=rows.view(j - i, k, -1))
            else:
                rows.copy_(aevs[s == e])
    return out
