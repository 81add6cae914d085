"""The pure planner: every conformation placed once, regions contiguous, stable."""

import dataclasses
import hashlib
import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from aevpipe.config import SplitSettings
from aevpipe.plan import (
    MoleculeShape,
    conformation_splits,
    make_plan,
    molecule_splits,
)

molecule = st.builds(
    lambda n, counts: MoleculeShape(n, sum(counts), tuple(counts)),
    st.integers(1, 300),
    st.lists(st.integers(0, 4), min_size=3, max_size=3).filter(lambda c: sum(c) > 0),
)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(molecule, min_size=1, max_size=8), st.integers(1, 97), st.integers(0, 3)
)
def test_units_tile_every_group_exactly(mols, block, seed):
    split = SplitSettings(seed=seed)
    plan = make_plan(mols, block, split)
    for layout in plan.groups:
        a = layout.n_atoms
        seen = np.zeros(layout.n_conformations, int)
        rows_seen = [np.zeros(r, int) for r in layout.total_rows()]
        for u in (u for u in plan.units if u.n_atoms == a):
            assert 0 < u.n_conformations <= block
            assert sum(p.count for p in u.parts) == u.n_conformations
            for seg in u.segments:
                assert mols[seg.molecule].n_atoms == a
                assert sum(seg.counts) == seg.stop - seg.start
            for p in u.parts:
                assert p.count == sum(seg.counts[p.split] for seg in u.segments)
                lo, hi = layout.conformation_range(p.split)
                assert lo <= p.conformation_offset
                assert p.conformation_offset + p.count <= hi
                seen[p.conformation_offset : p.conformation_offset + p.count] += 1
                for e, r0 in enumerate(p.row_offsets):
                    n = sum(
                        seg.counts[p.split] * mols[seg.molecule].element_counts[e]
                        for seg in u.segments
                    )
                    rlo, rhi = layout.row_range(p.split, e)
                    assert rlo <= r0 and r0 + n <= rhi
                    rows_seen[e][r0 : r0 + n] += 1
        assert (seen == 1).all()
        assert all((r == 1).all() for r in rows_seen)
    total = sum(m.n_conformations for m in mols)
    assert sum(g.n_conformations for g in plan.groups) == total
    assert plan.fingerprint() == make_plan(mols, block, split).fingerprint()
    text = json.dumps(dataclasses.asdict(plan), sort_keys=True)
    assert plan.fingerprint() == hashlib.sha256(text.encode()).hexdigest()


def test_conformation_split_fractions_and_determinism():
    s = SplitSettings(fractions=(0.8, 0.1, 0.1), seed=3)
    codes = conformation_splits(s, 7, 1000)
    assert np.bincount(codes, minlength=3).tolist() == [800, 100, 100]
    assert (codes == conformation_splits(s, 7, 1000)).all()
    assert not (codes == conformation_splits(s, 8, 1000)).all()


def test_molecule_split_holds_whole_molecules_out():
    s = SplitSettings(fractions=(0.8, 0.1, 0.1), seed=0, by="molecule")
    codes = molecule_splits(s, 20)
    assert sorted(codes).count(1) == 2 and codes.count(2) == 2
    mols = [MoleculeShape(10, 2, (1, 1)) for _ in range(20)]
    plan = make_plan(mols, 4, s)
    for u in plan.units:
        for seg in u.segments:  # every conformation in its molecule's split
            assert seg.counts[codes[seg.molecule]] == seg.stop - seg.start


def test_small_molecules_share_units_and_large_ones_are_cut():
    """Consecutive molecules of one atom count share a unit up to its size (the
    release's 57,000 groups hold some 380 conformations each); a molecule larger
    than a unit is cut."""
    mols = [MoleculeShape(30, 3, (2, 1, 0)) for _ in range(10)]
    mols.insert(5, MoleculeShape(250, 4, (3, 1, 0)))
    plan = make_plan(mols, 100, SplitSettings())
    by_atoms = {a: [u for u in plan.units if u.n_atoms == a] for a in (3, 4)}
    assert [u.n_conformations for u in by_atoms[3]] == [90, 90, 90, 30]
    assert [len(u.segments) for u in by_atoms[3]] == [3, 3, 3, 1]
    assert [u.n_conformations for u in by_atoms[4]] == [100, 100, 50]
    assert [u.uid for u in plan.units] == list(range(len(plan.units)))
