"""Element rows of a molecule's conformations from every pair and triple of its atoms.

TorchANI's pure-PyTorch path finds each batch's neighbours with data-dependent
steps (masks, `nonzero`, a sort, per-atom counts) and adds the terms with a
scattered `index_add_`. For one molecule whose conformations keep one atom order
(the ANI-1 release layout), all of that follows from the atom order alone: every
pair and every triple (a central atom and two others) is known in advance, and so
is the slot of the AEV row its term adds into. This module plans that once per
atom order and then, per batch, evaluates TorchANI's radial and angular terms
(`ani_terms`: its formulas, or its own modules) on every pair and on every triple
that is within the angular cutoff in at least one conformation of the batch.

Pairs beyond a cutoff must add nothing, as in TorchANI, where they are never
listed: their distance is set to the cutoff itself, where the cutoff function is
zero, so their terms are exactly 0 (`usable` checks this for the terms used).
Terms are laid out pair (or triple) first and conformation second, so that
gathering their inputs is cheap. Each radial term is added into its slot of every
conformation's row at once (`index_add_` along the slots of the rows). Angular
terms come feature-major, (features, triples, conformations): they are summed
into their slots in that layout, then each run of consecutive slots is copied
into the rows in one strided copy (on s01's CH4, the 24 triples of its four
hydrogens fill 8 slots; transposing every triple's terms instead took a quarter
of the AEV time).

The values are TorchANI's forward values up to the order of the additions into
each slot and the rounding of `ani_terms`: within 2e-6 of the forward on
ANI-1-sized molecules (tests check 1e-5, the format's contract). On one CPU thread
this took 0.55-0.58 of the time of `aev._rows_by_scatter` (TorchANI's neighbour
list) on s01's molecules, 0.62-0.73 on synthetic s03-s04 ones (4-14 atoms),
0.74-0.79 at 25-32 atoms and 0.89 at 50 (benchmarks/RESULTS.md, session 7), with
TorchANI's own term modules; session 11's terms and slot sums took it from 31-32
ms to 21 ms on s01.
"""

from __future__ import annotations

import functools
import weakref
from typing import NamedTuple

import torch

from aevpipe.ani_terms import terms_of

# Atoms up to which molecules take this path: every batch looks at all A(A-1)(A-2)/2
# triples per conformation and keeps each one near in any conformation, so time and
# memory grow as A^3.
# ANI-1's largest molecules (subset 8) have 26 atoms; at 50 atoms this path still
# took 0.89 of the time of the scatter path.
MAX_ATOMS = 32


class Plan(NamedTuple):
    """Where the terms of one atom order go, per element in the element order."""

    first: torch.Tensor  # (P,) first atom of each pair a < b
    second: torch.Tensor  # (P,) its second atom
    # Directed pairs (a centre and a neighbour), grouped by the centre's element:
    # the pair each takes its term from, and the slot (rank of the centre among its
    # element's atoms) * S + (neighbour's element) it adds into.
    pair_of: torch.Tensor
    pair_slot: torch.Tensor
    pair_bounds: list[int]  # element e's directed pairs: [bounds[e], bounds[e + 1])
    # Triples (a centre, two sides), grouped by the centre's element: each side as
    # a pair index (the distance) and as a directed pair index (the vector, from
    # the centre: p for a < b, P + p for a > b), every triple's first side, then
    # every triple's second; and the slot rank * (element pairs) + (the sides'
    # element pair) the triple adds into.
    side_pair: torch.Tensor  # (2T,)
    side_vector: torch.Tensor  # (2T,)
    triple_slot: torch.Tensor  # (T,)
    triple_bounds: list[int]


# A plan of 26 atoms holds about 0.3 MB of indices, one of 32 about 0.6 MB.
@functools.lru_cache(maxsize=64)
def plan(
    species: tuple[int, ...], n_elements: int, pair_index: tuple[tuple[int, ...], ...]
) -> Plan:
    """The plan of atom order `species` (element indices), with `pair_index[i][j]`
    the index of the element pair (i, j) (TorchANI's `triu_index`)."""
    n_pairs_of_elements = max(max(row) for row in pair_index) + 1
    seen = [0] * n_elements
    rank = []
    for e in species:
        rank.append(seen[e])
        seen[e] += 1
    atoms = range(len(species))
    pairs = [(a, b) for a in atoms for b in atoms if a < b]
    number = {}
    for p, (a, b) in enumerate(pairs):
        number[a, b] = p
        number[b, a] = len(pairs) + p
    pair_of, pair_slot, pair_bounds = [], [], [0]
    triples: tuple[list[int], list[int], list[int]] = ([], [], [])
    triple_bounds = [0]
    for e in range(n_elements):
        # TorchANI's order: each atom's pairs as the first atom, then as the second.
        for p, (a, b) in enumerate(pairs):
            if species[a] == e:
                pair_of.append(p)
                pair_slot.append(rank[a] * n_elements + species[b])
        for p, (a, b) in enumerate(pairs):
            if species[b] == e:
                pair_of.append(p)
                pair_slot.append(rank[b] * n_elements + species[a])
        pair_bounds.append(len(pair_of))
        for a in atoms:
            if species[a] != e:
                continue
            others = [b for b in atoms if b != a]
            for i, b in enumerate(others):
                for c in others[:i]:
                    triples[0].append(number[a, b])
                    triples[1].append(number[a, c])
                    element_pair = pair_index[species[b]][species[c]]
                    triples[2].append(rank[a] * n_pairs_of_elements + element_pair)
        triple_bounds.append(len(triples[0]))
    vectors = triples[0] + triples[1]
    return Plan(
        first=torch.tensor([a for a, _ in pairs], dtype=torch.long),
        second=torch.tensor([b for _, b in pairs], dtype=torch.long),
        pair_of=torch.tensor(pair_of, dtype=torch.long),
        pair_slot=torch.tensor(pair_slot, dtype=torch.long),
        pair_bounds=pair_bounds,
        side_pair=torch.tensor([v % len(pairs) for v in vectors], dtype=torch.long),
        side_vector=torch.tensor(vectors, dtype=torch.long),
        triple_slot=torch.tensor(triples[2], dtype=torch.long),
        triple_bounds=triple_bounds,
    )


@functools.lru_cache(maxsize=64)
def _placed(
    species: tuple[int, ...],
    n_elements: int,
    pair_index: tuple[tuple[int, ...], ...],
    row: tuple[int, int, int, int, int, int],
) -> tuple[Plan, torch.Tensor, torch.Tensor, list]:
    """The plan of atom order `species`, where each directed pair's and each
    triple's slot starts in a conformation's rows viewed as pieces of a width, and
    the triples' distinct slots (`_slots`):
    `row` is (AEV length, radial length, radial and angular features, radial and
    angular widths). Kept with the plan rather than made again in every call:
    eight small tensor operations, each a turn of the GIL that the unit threads
    share, in every unit of a few hundred small conformations."""
    p = plan(species, n_elements, pair_index)
    length, split, r_feats, a_feats, wr, wa = row
    n_element_pairs = (length - split) // a_feats
    rank = p.pair_slot.div(n_elements, rounding_mode="floor")
    element = p.pair_slot % n_elements
    pair_piece = rank * (length // wr) + element * (r_feats // wr)
    rank = p.triple_slot.div(n_element_pairs, rounding_mode="floor")
    element_pair = p.triple_slot % n_element_pairs
    triple_piece = rank * (length // wa) + split // wa + element_pair * (a_feats // wa)
    slots = _slots(triple_piece, p.triple_bounds, wa, a_feats)
    return p, pair_piece, triple_piece, slots


_USABLE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def usable(computer) -> bool:
    """Whether the computer's radial and angular terms are exactly zero at their
    cutoffs (so that far pairs can be given the cutoff as their distance); asked
    once per computer."""
    if computer not in _USABLE:
        _USABLE[computer] = _vanish_at_cutoffs(computer)
    return _USABLE[computer]


@torch.no_grad()
def _vanish_at_cutoffs(computer) -> bool:
    terms = terms_of(computer)
    rc, ac = computer.radial.cutoff, computer.angular.cutoff
    radial = terms.radial(torch.tensor([rc]))
    # One side at the cutoff, one near; both at the cutoff.
    distances = torch.tensor([[ac, ac], [1.0, ac]])
    vectors = torch.tensor([[[ac, 0.0, 0.0]] * 2, [[0.0, 1.0, 0.0], [ac, 0.0, 0.0]]])
    angular = terms.angular(distances, vectors)
    return bool((radial == 0).all()) and bool((angular == 0).all())


@torch.no_grad()
def element_rows(
    computer,
    species: torch.Tensor,
    coordinates: torch.Tensor,
    counts: list[int],
    step: int,
    widths: tuple[int, int],
) -> list[torch.Tensor | None]:
    """`aev.compute_element_rows` for conformations that all share the atom order
    `species[0]` (the caller checks), on the CPU, `step` conformations per batch.
    Radial terms are added into the rows `widths[0]` values at a time, as in
    `aev._rows_by_scatter`; `widths[1]` is the unit in which the plan places the
    angular slots."""
    n = len(species)
    length, split = computer.out_dim, computer.radial_len
    r_feats, a_feats = computer.radial.num_feats, computer.angular.num_feats
    p, pair_piece, triple_piece, triple_slots = _placed(
        tuple(species[0].tolist()),
        len(counts),
        tuple(tuple(row) for row in computer.triu_index.tolist()),
        (length, split, r_feats, a_feats, *widths),
    )
    terms = terms_of(computer)
    n_pairs, n_triples = len(p.first), len(p.triple_slot)
    r_cut, a_cut = computer.radial.cutoff, computer.angular.cutoff
    far_vector = torch.tensor([a_cut, 0.0, 0.0])
    wr, wa = widths

    out = [torch.empty((n * k, length)) if k else None for k in counts]
    by_atom = coordinates.permute(1, 0, 2)  # (A, n, 3)
    for i in range(0, n, step):
        j = min(n, i + step)
        m = j - i
        x = by_atom[:, i:j].to(torch.float32).contiguous()
        vector = x[p.second] - x[p.first]  # (P, m, 3), from first to second
        distance = vector.norm(2, -1)  # (P, m)
        radial = terms.radial(distance.clamp(max=r_cut).view(-1))
        radial = radial.view(n_pairs, m, r_feats)

        side_pair, side_vector = p.side_pair, p.side_vector
        slots, kept = triple_slots, n_triples
        far = distance > a_cut
        if bool(far.any()):
            distance = torch.where(far, a_cut, distance)
            vector = torch.where(far.unsqueeze(-1), far_vector, vector)
            # Triples with a far side in every conformation of the batch add nothing.
            near = ~far
            alive = (
                near.index_select(0, side_pair[:n_triples])
                & near.index_select(0, side_pair[n_triples:])
            ).any(1)
            keep = torch.nonzero(alive)[:, 0]
            if len(keep) < n_triples:
                both = torch.cat((keep, keep + n_triples))
                side_pair, side_vector = side_pair[both], side_vector[both]
                slots = _slots(triple_piece[keep], p.triple_bounds, wa, a_feats, keep)
                kept = len(keep)
        vectors = torch.cat((vector, -vector))  # (2P, m, 3): directed, from centre
        angular = None
        if kept:
            angular = terms.angular(
                distance.index_select(0, side_pair).view(2, kept * m),
                vectors.index_select(0, side_vector).view(2, kept * m, 3),
            ).view(a_feats, kept, m)

        for e, k in enumerate(counts):
            if not k:
                continue
            rows = out[e][i * k : j * k]
            rows.zero_()
            lo, hi = p.pair_bounds[e], p.pair_bounds[e + 1]
            pair_terms = radial.index_select(0, p.pair_of[lo:hi]).transpose(0, 1)
            add_in_pieces(rows.view(m, -1, wr), 1, pair_piece[lo:hi], pair_terms, wr)
            lo, hi, slot_of, runs = slots[e]
            if angular is not None and hi > lo:
                # Each slot's sum over its triples, feature-major, then copied in,
                # a run of consecutive slots at a time.
                sums = angular.new_zeros((a_feats, runs[-1][2], m))
                sums.index_add_(1, slot_of, angular[:, lo:hi])
                by_slot = sums.permute(2, 1, 0)  # (m, slots, features)
                target = rows.view(m, -1)
                for start, u0, u1 in runs:
                    stop = start + (u1 - u0) * a_feats
                    target[:, start:stop].view(m, -1, a_feats).copy_(by_slot[:, u0:u1])
    return out


def _slots(
    pieces: torch.Tensor,
    bounds: list[int],
    width: int,
    feats: int,
    keep: torch.Tensor | None = None,
) -> list[tuple[int, int, torch.Tensor, list[tuple[int, int, int]]]]:
    """Per element, from where each triple's slot of `feats` values starts in a
    conformation's rows (`pieces`, in pieces of `width` values; the triples
    grouped by their centre's element, element e's in [bounds[e], bounds[e + 1])
    of the plan, of which only `keep` are here): the range [lo, hi) of its triples
    here, each triple's index among its distinct slots (in the order of the rows),
    and those slots as runs (first value in the rows, first slot, last slot + 1)
    of slots that follow one another in the rows."""
    if keep is not None:
        bounds = torch.searchsorted(keep, torch.tensor(bounds)).tolist()
    out = []
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        first, slot_of = torch.unique(pieces[lo:hi], return_inverse=True)
        runs: list[list[int]] = []
        for u, piece in enumerate(first.tolist()):
            start = piece * width
            if runs and runs[-1][0] + (u - runs[-1][1]) * feats == start:
                runs[-1][2] = u + 1
            else:
                runs.append([start, u, u + 1])
        out.append((lo, hi, slot_of, [(a, b, c) for a, b, c in runs]))
    return out


def add_in_pieces(
    target: torch.Tensor, dim: int, first: torch.Tensor, terms: torch.Tensor, width: int
) -> None:
    """Add terms into `target`, whose last axis is `width` values: term t (along
    `dim` of `terms`, whose last axis holds its F values) goes in F / width pieces
    into positions first[t], first[t] + 1, ... along `dim`, each piece's terms in
    the order of t, as TorchANI's own `index_add_` adds them. Both the dense path
    and `aev._rows_by_scatter` (bit for bit TorchANI's sums) add this way."""
    for q in range(terms.shape[-1] // width):
        target.index_add_(dim, first + q, terms[..., q * width : (q + 1) * width])
