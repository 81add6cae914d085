"""AEVs with TorchANI's own AEVComputer: the only module that builds TorchANI objects.

CUDA when asked or when `auto` finds it; TorchANI's cuAEV kernels when they are
built, its pure-PyTorch path otherwise. On that path, on the CPU, featurize adds
TorchANI's radial and angular terms straight into each element's rows: for
molecules of up to 32 atoms in one atom order (ANI-1's layout) on every pair and
triple of atoms, with TorchANI's term formulas evaluated without its slow
subnormal exponentials (`dense_aev`, `ani_terms`: the forward's values up to the
order of the sums and float32 rounding, within 1e-5), otherwise TorchANI's own
terms on its own neighbour list, in its own order (the same bits). Tests check
both against the forward.
"""

from __future__ import annotations

import math
import os
from typing import Any, NamedTuple

os.environ.setdefault("TORCHANI_NO_WARN_EXTENSIONS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchani  # noqa: E402
from torchani.neighbors import discard_outside_cutoff, neighbors_to_triples  # noqa: E402

from aevpipe import dense_aev  # noqa: E402
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


# Conformations per AEVComputer call. Each call costs a fixed ~100 Python-dispatched
# ops, so on the CPU small molecules run fastest in large calls: on s01 x10, 16,384
# atoms ran TorchANI's CPU path at ~1.23x the speed of 8,192 with two torch threads,
# and featurize's unit threads (one torch thread each) contend less for the GIL
# (benchmarks/RESULTS.md, session 5). Memory, though, follows the atom triples (the
# angular terms), which grow as A^3: calls hold up to BATCH_TRIPLES triples of A
# atoms each (counting every triple, within the angular cutoff or not), between
# MIN_BATCH_ATOMS and BATCH_ATOMS atoms. CH4 gets 16,384 atoms; from 14 atoms on,
# calls are as before (4,096 atoms). A synthetic s01-s04 featurize peaked at 1,027
# MiB, against 931 with 4,096 atoms for every molecule and 1.23-1.36 GB with a
# 50,000-pair cap instead of the triple cap.
BATCH_ATOMS = 16384
MIN_BATCH_ATOMS = 4096
BATCH_TRIPLES = 320_000


def batch_conformations(n_atoms: int, batch_atoms: int = BATCH_ATOMS) -> int:
    """Conformations of `n_atoms` atoms per AEVComputer call (see BATCH_TRIPLES)."""
    a = max(1, n_atoms)
    triples = a * (a - 1) * (a - 2) // 2
    low = min(MIN_BATCH_ATOMS, batch_atoms) // a
    high = batch_atoms // a
    return max(1, low, min(high, BATCH_TRIPLES // max(1, triples)))


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
    step = batch_conformations(a, batch_atoms)
    for i in range(0, n, step):
        s = species[i : i + step].to(device, torch.long)
        c = coordinates[i : i + step].to(device, torch.float32)
        out[i : i + step] = computer(s, c).cpu()
    return out


def _uses_torchani_pyaev_parts(computer: torchani.AEVComputer) -> bool:
    """Whether `aev_parts` can run TorchANI's pure-PyTorch path in its two halves."""
    return getattr(computer, "_strategy", None) == "pyaev" and all(
        hasattr(computer, name)
        for name in (
            "neighborlist",
            "radial",
            "angular",
            "_collect_radial",
            "_collect_angular",
        )
    )


def aev_parts(
    computer: torchani.AEVComputer, species: torch.Tensor, coordinates: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The radial (n, A, R) and angular (n, A, L - R) halves of the AEVs that
    `computer(species, coordinates)` returns, in that order.

    On TorchANI's pure-PyTorch path these are the very tensors its forward computes
    and then concatenates (TorchANI 2.9's `_pyaev_compute_from_neighbors`, step by
    step): skipping the concatenation saves a copy of every AEV, which callers make
    anyway into their own layout. Other strategies (cuAEV) run the forward and
    return views of its output. The values are bit for bit the forward's (test).
    """
    if not _uses_torchani_pyaev_parts(computer):
        aevs = computer(species, coordinates)
        return aevs[..., : computer.radial_len], aevs[..., computer.radial_len :]
    t = _pyaev_terms(computer, species, coordinates)
    radial = computer._collect_radial(species, t.pairs.indices, t.radial)
    angular = computer._collect_angular(
        species,
        t.close.indices,
        t.triples.central_idxs,
        t.triples.side_idxs,
        t.triples.diff_signs,
        t.angular,
    )
    return radial, angular


class _Terms(NamedTuple):
    """TorchANI's AEV terms of a batch, before it adds them into its output."""

    pairs: Any  # torchani Neighbors within the radial cutoff
    radial: torch.Tensor  # (pairs, radial features)
    close: Any  # those within the angular cutoff
    triples: Any  # torchani Triples of `close`
    angular: torch.Tensor  # (triples, angular features)


def _pyaev_terms(
    computer: torchani.AEVComputer, species: torch.Tensor, coordinates: torch.Tensor
) -> _Terms:
    """TorchANI 2.9's pure-PyTorch steps (`_pyaev_compute_from_neighbors`) up to
    adding the terms into its output: neighbors, radial terms, the neighbors within
    the angular cutoff, their triples, angular terms."""
    pairs = computer.neighborlist(
        computer.radial.cutoff, species, coordinates, None, None
    )
    radial = computer.radial(pairs.distances)
    close = discard_outside_cutoff(pairs, computer.angular.cutoff)
    triples = neighbors_to_triples(close)
    angular = computer.angular(triples.distances, triples.diff_vectors)
    return _Terms(pairs, radial, close, triples, angular)


def _runs(positions: torch.Tensor) -> list[tuple[int, int]]:
    """Sorted atom positions as [start, stop) runs of consecutive ones."""
    runs: list[tuple[int, int]] = []
    for p in positions.tolist():
        if runs and runs[-1][1] == p:
            runs[-1] = (runs[-1][0], p + 1)
        else:
            runs.append((p, p + 1))
    return runs


def _scatter_widths(computer: torchani.AEVComputer) -> tuple[int, int] | None:
    """Row widths (radial, angular) in which `_rows_by_scatter` adds TorchANI's terms
    into (rows, L) rows, or None where it cannot (not the pure-PyTorch path, or
    halves that do not tile the row). A term of an atom and an element (pair) is
    `num_feats` values at a multiple of the width inside the atom's row."""
    if not _uses_torchani_pyaev_parts(computer) or not all(
        hasattr(computer, name) for name in ("num_species_pairs", "triu_index")
    ):
        return None
    length, split = computer.out_dim, computer.radial_len
    r, a = computer.radial.num_feats, computer.angular.num_feats
    if (
        split != computer.num_species * r
        or length != split + computer.num_species_pairs * a
    ):
        return None
    return math.gcd(r, length), math.gcd(a, split, length)


@torch.no_grad()
def _rows_by_scatter(
    computer: torchani.AEVComputer,
    species: torch.Tensor,
    coordinates: torch.Tensor,
    counts: list[int],
    step: int,
    widths: tuple[int, int],
) -> list[torch.Tensor | None]:
    """`compute_element_rows` on the CPU, with TorchANI 2.9's pure-PyTorch steps
    (`_pyaev_compute_from_neighbors`) except its last: each atom's radial and
    angular terms are added straight into the atom's row of its element, where
    TorchANI adds them into (n, A, R) and (n, A, L - R) halves and concatenates.
    Same terms, same `index_add_` order, so the same bits (test); no half, no
    concatenation and no copy into rows is ever made."""
    n, a = species.shape
    length, split = computer.out_dim, computer.radial_len
    wr, wa = widths
    out = torch.empty((n * a, length))
    starts = [0]
    for k in counts:
        starts.append(starts[-1] + n * k)
    k_of = torch.tensor(counts)
    start_of = torch.tensor(starts[:-1])
    for i in range(0, n, step):
        j = min(n, i + step)
        s = species[i:j].long()
        c = coordinates[i:j].to(torch.float32)
        # Row of each atom: its element's block, its conformation, its rank among
        # the conformation's atoms of that element (source order).
        rank = torch.zeros_like(s)
        for e, k in enumerate(counts):
            if k:
                mask = s == e
                rank += mask * (mask.cumsum(1) - 1)
                out[starts[e] + i * k : starts[e] + j * k].zero_()
        conf = torch.arange(i, j).unsqueeze(1)
        row = (start_of[s] + conf * k_of[s] + rank).view(-1)

        t = _pyaev_terms(computer, s, c)
        # Each atom's radial terms go to the block of the other atom's element.
        other = s.view(-1)[t.pairs.indices].flip(0)
        first = row[t.pairs.indices] * (length // wr) + other * (
            t.radial.shape[1] // wr
        )
        by_radial = out.view(-1, wr)
        dense_aev.add_in_pieces(by_radial, 0, first[0], t.radial, wr)
        dense_aev.add_in_pieces(by_radial, 0, first[1], t.radial, wr)
        # The central atom's angular terms go to the block of its two sides'
        # element pair, after the radial half.
        sides = s.view(-1)[t.close.indices][:, t.triples.side_idxs]
        side = torch.where(t.triples.diff_signs == 1, sides[1], sides[0])
        pair = computer.triu_index[side[0], side[1]].to(torch.long)
        first = (
            row[t.triples.central_idxs] * (length // wa)
            + split // wa
            + pair * (t.angular.shape[1] // wa)
        )
        dense_aev.add_in_pieces(out.view(-1, wa), 0, first, t.angular, wa)
    return [out[starts[e] : starts[e + 1]] if k else None for e, k in enumerate(counts)]


def _composition(species: np.ndarray, n_elements: int) -> tuple[list[int], bool]:
    """Atoms of each element in every conformation of `species` (n, A), and whether
    all share one atom order; a ValueError when their compositions differ. In NumPy:
    as some 30 small torch operations, each a turn of the GIL between unit threads,
    the same checks took 0.84 s of thread time in each 6 s featurize of 2,000
    groups of 250 small conformations (py-spy)."""
    counts = np.bincount(species[0], minlength=n_elements).tolist()
    if (species == species[:1]).all():
        return counts, True
    if not (np.sort(species, axis=1) == np.sort(species[0])).all():
        raise ValueError("conformations of one molecule differ in composition")
    return counts, False


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
    [i, j) are rows [i * k_e, j * k_e). No (n, A, L) array is built.

    On the CPU with TorchANI's pure-PyTorch path, the terms are added straight into
    the rows: for up to `dense_aev.MAX_ATOMS` atoms in one atom order, from every
    pair and triple (`dense_aev.element_rows`: within 1e-5 of TorchANI's forward,
    about 2e-6 on ANI-1 molecules), otherwise from TorchANI's own neighbour list
    (`_rows_by_scatter`: bit for bit the forward on the same batches). Elsewhere
    (cuAEV, a GPU) each batch's radial and angular halves are copied into the rows
    (`_rows_by_copy`, bit for bit). Tests check all three.
    """
    n, a = species.shape
    counts, one_order = _composition(species.cpu().numpy(), n_elements)
    step = batch_conformations(a, batch_atoms)
    widths = _scatter_widths(computer)
    if computer.radial.shifts.device.type == "cpu" and widths is not None:
        if a <= dense_aev.MAX_ATOMS and one_order and dense_aev.usable(computer):
            return dense_aev.element_rows(
                computer, species, coordinates, counts, step, widths
            )
        return _rows_by_scatter(computer, species, coordinates, counts, step, widths)
    return _rows_by_copy(computer, species, coordinates, counts, step)


@torch.no_grad()
def _rows_by_copy(
    computer: torchani.AEVComputer,
    species: torch.Tensor,
    coordinates: torch.Tensor,
    counts: list[int],
    step: int,
) -> list[torch.Tensor | None]:
    """`compute_element_rows` by copying each batch's radial and angular halves
    (`aev_parts`) straight into the rows."""
    device = computer.radial.shifts.device
    n = len(species)
    # One atom order for every conformation (the release layout): each element's
    # atoms are a few runs of positions, copied as slices.
    fixed = bool((species == species[:1]).all())
    runs = [_runs(torch.nonzero(species[0] == e)[:, 0]) for e in range(len(counts))]
    length, split = computer.out_dim, computer.radial_len
    out = [torch.empty((n * k, length)) if k else None for k in counts]
    for i in range(0, n, step):
        j = min(n, i + step)
        s = species[i:j]
        halves = aev_parts(
            computer,
            s.to(device, torch.long),
            coordinates[i:j].to(device, torch.float32),
        )
        radial, angular = (h.cpu() for h in halves)
        for e, k in enumerate(counts):
            if not k:
                continue
            rows = out[e][i * k : j * k]
            if fixed:
                rows = rows.view(j - i, k, length)
                q = 0
                for p0, p1 in runs[e]:
                    q1 = q + p1 - p0
                    rows[:, q:q1, :split].copy_(radial[:, p0:p1])
                    rows[:, q:q1, split:].copy_(angular[:, p0:p1])
                    q = q1
            else:
                mask = s == e
                rows[:, :split].copy_(radial[mask])
                rows[:, split:].copy_(angular[mask])
    return out
