"""The featurize planner: molecule sizes in, a layout and a list of work units out.

Pure: no I/O, no torch. Every position a work unit writes to is fixed here, so the
store is the same value for value whichever executor runs the units, in any order.

Layout of one atom-count group: its conformations are ordered train | valid | test,
each region holding molecules in input order and each molecule's conformations in
source order; every element's rows follow the same order. A reader of one split
therefore reads one contiguous range per array and nothing else.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import numpy as np

from aevpipe.config import SplitSettings
from aevpipe.errors import SettingsError

N_SPLITS = 3


@dataclass(frozen=True)
class MoleculeShape:
    """What the planner needs to know of one molecule group."""

    n_conformations: int
    n_atoms: int
    element_counts: tuple[int, ...]  # atoms of each element, in the element order


@dataclass(frozen=True)
class UnitPart:
    """The conformations of a unit that fall in one split, and where they go."""

    split: int
    count: int
    conformation_offset: int  # first position in the group's per-conformation arrays
    row_offsets: tuple[int, ...]  # first row per element in the group's element arrays


@dataclass(frozen=True)
class Segment:
    """Conformations [start, stop) of one molecule, within a unit."""

    molecule: int
    start: int
    stop: int
    counts: tuple[int, ...]  # (N_SPLITS,) of those conformations in each split


@dataclass(frozen=True)
class Unit:
    """Blocks of conformations of molecules with one atom count, consecutive in
    the input: in every split region of their group, their conformations are one
    contiguous range (molecules in input order, each in source order)."""

    uid: int
    n_atoms: int
    segments: tuple[Segment, ...]
    parts: tuple[UnitPart, ...]

    @property
    def n_conformations(self) -> int:
        return sum(s.stop - s.start for s in self.segments)


@dataclass(frozen=True)
class GroupLayout:
    """Sizes of one atom-count group, per split: conformations and rows per element."""

    n_atoms: int
    conformations: tuple[int, ...]  # (N_SPLITS,)
    rows: tuple[tuple[int, ...], ...]  # (N_SPLITS, n_elements)

    @property
    def n_conformations(self) -> int:
        return sum(self.conformations)

    def total_rows(self) -> tuple[int, ...]:
        """Rows per element over all splits."""
        return tuple(int(sum(col)) for col in zip(*self.rows, strict=True))

    def conformation_range(self, split: int) -> tuple[int, int]:
        """[start, stop) of `split`'s conformations in this group."""
        start = sum(self.conformations[:split])
        return start, start + self.conformations[split]

    def row_range(self, split: int, element: int) -> tuple[int, int]:
        """[start, stop) of `split`'s rows of `element` in this group."""
        start = sum(r[element] for r in self.rows[:split])
        return start, start + self.rows[split][element]


@dataclass(frozen=True)
class Plan:
    """The whole featurize job: group layouts and work units."""

    groups: tuple[GroupLayout, ...]
    units: tuple[Unit, ...]

    def fingerprint(self) -> str:
        """Stable hash of the plan, stored with the store to resume safely: the
        sha256 of `json.dumps(asdict(plan), sort_keys=True)`."""
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()


def molecule_splits(settings: SplitSettings, n_molecules: int) -> list[int] | None:
    """Split code of each molecule when splitting by molecule, else None.

    Counts are by molecule: every split with a non-zero fraction gets at least one
    molecule, and training gets the rest.
    """
    if settings.by != "molecule":
        return None
    _, f_valid, f_test = settings.fractions
    n_valid = max(1, round(f_valid * n_molecules)) if f_valid > 0 else 0
    n_test = max(1, round(f_test * n_molecules)) if f_test > 0 else 0
    if n_valid + n_test >= n_molecules:
        raise SettingsError(
            f"cannot split {n_molecules} molecule(s) by molecule into fractions "
            f"{list(settings.fractions)}: too few molecules"
        )
    order = np.random.default_rng(settings.seed).permutation(n_molecules)
    codes = [0] * n_molecules
    for position, molecule in enumerate(order):
        if position < n_valid:
            codes[molecule] = 1
        elif position < n_valid + n_test:
            codes[molecule] = 2
    return codes


def conformation_splits(
    settings: SplitSettings,
    molecule: int,
    n_conformations: int,
    molecule_code: int | None = None,
) -> np.ndarray:
    """Split code (0 train, 1 valid, 2 test) of each conformation of a molecule.

    By conformation: a seeded permutation per molecule, so every molecule is split
    in the given fractions and a unit can recompute its share without the others.
    """
    if molecule_code is not None:
        return np.full(n_conformations, molecule_code, dtype=np.int8)
    f_train, f_valid, _ = settings.fractions
    n_train = round(f_train * n_conformations)
    n_valid = min(n_conformations - n_train, round(f_valid * n_conformations))
    codes = np.full(n_conformations, 2, dtype=np.int8)
    rng = np.random.default_rng([settings.seed, molecule])
    order = rng.permutation(n_conformations)
    codes[order[:n_train]] = 0
    codes[order[n_train : n_train + n_valid]] = 1
    return codes


def unit_size(n_atoms: int, block_size: int | None, block_atoms: int) -> int:
    """Conformations per unit: `block_size` when given, else as many as fit in
    `block_atoms` atoms (at least one)."""
    if block_size is not None:
        return block_size
    return max(1, block_atoms // n_atoms)


def make_plan(
    molecules: list[MoleculeShape],
    block_size: int | None,
    split: SplitSettings,
    block_atoms: int = 65536,
) -> Plan:
    """Cut molecules into blocks and pack them into units, then place them.

    A unit holds up to `block_size` conformations when given, else about
    `block_atoms` atoms: a large molecule is cut into several units, and
    consecutive small molecules of one atom count share one. Units share chunks
    only at their edges, so few units mean few chunks written twice.
    """
    if (block_size is not None and block_size < 1) or block_atoms < 1:
        raise SettingsError(f"block size must be positive: {block_size}, {block_atoms}")
    if not molecules:
        raise ValueError("nothing to plan: no molecules")
    mol_codes = molecule_splits(split, len(molecules))
    blocks: dict[int, list[Segment]] = {}  # by atom count, in input order
    for index, mol in enumerate(molecules):
        if sum(mol.element_counts) != mol.n_atoms:
            raise ValueError(f"molecule {index}: element counts do not sum to atoms")
        code = None if mol_codes is None else mol_codes[index]
        codes = conformation_splits(split, index, mol.n_conformations, code)
        size = unit_size(mol.n_atoms, block_size, block_atoms)
        for start in range(0, mol.n_conformations, size):
            stop = min(mol.n_conformations, start + size)
            counts = np.bincount(codes[start:stop], minlength=N_SPLITS)
            segment = Segment(index, start, stop, tuple(int(c) for c in counts))
            blocks.setdefault(mol.n_atoms, []).append(segment)
    groups, units = [], []
    for a in sorted(blocks):
        size = unit_size(a, block_size, block_atoms)
        group, packed = _place_group(a, blocks[a], molecules, size)
        groups.append(group)
        units += [
            Unit(len(units) + i, a, segments, parts)
            for i, (segments, parts) in enumerate(packed)
        ]
    return Plan(groups=tuple(groups), units=tuple(units))


def _place_group(
    a: int, segments: list[Segment], molecules: list[MoleculeShape], size: int
) -> tuple[GroupLayout, list[tuple[tuple[Segment, ...], tuple[UnitPart, ...]]]]:
    """The layout of the group of `a` atoms, and its units as (segments, parts):
    consecutive blocks packed up to `size` conformations, each part placed at the
    next free conformation and rows of its split region."""
    n_el = len(molecules[0].element_counts)
    packs: list[list[Segment]] = []
    held = size  # conformations in the last pack: a new one to start
    for seg in segments:
        if held + seg.stop - seg.start > size:
            packs.append([])
            held = 0
        packs[-1].append(seg)
        held += seg.stop - seg.start
    conformations = np.zeros(N_SPLITS, np.int64)
    rows = np.zeros((N_SPLITS, n_el), np.int64)
    for seg in segments:
        conformations += seg.counts
        rows += np.outer(seg.counts, molecules[seg.molecule].element_counts)
    # Cursors start at each split region's beginning inside the group.
    conf_cursor = np.cumsum(conformations) - conformations
    row_cursor = np.cumsum(rows, axis=0) - rows
    packed = []
    for pack in packs:
        parts = []
        for s in range(N_SPLITS):
            count = sum(seg.counts[s] for seg in pack)
            if count == 0:
                continue
            parts.append(
                UnitPart(
                    split=s,
                    count=count,
                    conformation_offset=int(conf_cursor[s]),
                    row_offsets=tuple(int(r) for r in row_cursor[s]),
                )
            )
            conf_cursor[s] += count
            for seg in pack:
                row_cursor[s] += seg.counts[s] * np.asarray(
                    molecules[seg.molecule].element_counts
                )
        packed.append((tuple(pack), tuple(parts)))
    layout = GroupLayout(
        n_atoms=a,
        conformations=tuple(int(c) for c in conformations),
        rows=tuple(tuple(int(x) for x in row) for row in rows),
    )
    return layout, packed
