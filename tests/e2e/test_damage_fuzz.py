"""Every reader of user files, fed damaged real files (property-based).

The files are real ones the tests make: an ANI-1 release-layout HDF5 file, an XYZ
file, a TOML config, a complete store and a trained run. Hypothesis truncates them
at random offsets and flips random bytes. Each outcome must be a correct result or
aevpipe's own error (one line in the CLI) naming the file, never another exception
(a traceback) and never output that looks complete when it is not.

`AEVPIPE_FUZZ_EXAMPLES` sets the cases per test (default 12); with
`AEVPIPE_FUZZ_TABLE=FILE` the counts of outcomes are written to FILE as a Markdown
table (tests/README.md has a larger run's).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aevpipe import keys, runs
from aevpipe.config import FeaturizeSettings, load_train_settings
from aevpipe.errors import AevpipeError
from aevpipe.stages.featurize import featurize
from aevpipe.stages.train import train
from aevpipe.store import ShardStore, is_complete, verify
from aevpipe.xyz import read_frames
from tests.conftest import REAL_S01
from tests.synthetic import write_flat, write_release

EXAMPLES = int(os.environ.get("AEVPIPE_FUZZ_EXAMPLES", "12"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
OUTCOMES: Counter = Counter()  # (reader, damage, outcome) -> cases, for the table


def damage(data: bytes, kind: str, where: list[int], value: int) -> bytes:
    """`data` truncated at a fraction of its length, or with bytes flipped."""
    if kind == "truncate":
        return data[: where[0] * len(data) // 1000]
    out = bytearray(data)
    for w in where:
        out[w * len(out) // 1000 % max(1, len(out))] ^= value
    return bytes(out)


DAMAGE = st.tuples(
    st.sampled_from(["truncate", "flip"]),
    st.lists(st.integers(0, 999), min_size=1, max_size=8),
    st.integers(1, 255),
)


def outcome(reader: str, kind: str, path: Path, run) -> str:
    """Run `run()`; 'ok' or 'error' (aevpipe's own, naming `path`); anything
    else fails the test."""
    try:
        run()
        result = "ok"
    except AevpipeError as exc:
        assert str(path) in str(exc) or path.name in str(exc), str(exc)
        assert "\n" not in str(exc)
        result = "error"
    OUTCOMES[(reader, kind, result)] += 1
    return result


@pytest.fixture(scope="module")
def sources():
    """A release-layout file, a complete store of it and a trained run."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        h5 = write_release(tmp / "ani.h5", {"CH4": 40, "NH3": 30, "CH3OH": 25}, seed=3)
        flat = write_flat(tmp / "flat.h5", {"CH4": 20, "HCN": 15, "H2O": 10}, seed=4)
        store = tmp / "aev"
        featurize([str(h5)], store, FeaturizeSettings(chunk_rows=64), progress=False)
        run = tmp / "run"
        small = load_train_settings(hidden={e: (16,) for e in "HCNO"}, max_epochs=2)
        train(store, run, small, progress=False, echo=lambda *_: None)
        yield {"h5": h5, "flat": flat, "store": store, "run": run}


@pytest.fixture(scope="module", autouse=True)
def outcome_table():
    """With AEVPIPE_FUZZ_TABLE, the counts of this module's outcomes, written
    there as a Markdown table once its tests have run."""
    yield
    table = os.environ.get("AEVPIPE_FUZZ_TABLE")
    if table:
        rows = [
            f"| {reader} | {kind} | {result} | {n} |"
            for (reader, kind, result), n in sorted(OUTCOMES.items())
        ]
        head = "| reader | damage | outcome | cases |\n|---|---|---|---:|\n"
        Path(table).write_text(head + "\n".join(rows) + "\n")


@FUZZ
@given(st.sampled_from(["release", "flat", "real s01"]), DAMAGE)
def test_damaged_hdf5_inputs(sources, layout, case):
    """Both layouts, and the real ANI-1 s01 where ../shared/data has it."""
    original = {"release": sources["h5"], "flat": sources["flat"]}.get(layout)
    if original is None:
        original = REAL_S01 if REAL_S01.is_file() else sources["h5"]
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.h5"
        src.write_bytes(damage(original.read_bytes(), *case))
        out = Path(tmp) / "aev"

        def run():
            featurize([str(src)], out, FeaturizeSettings(), progress=False)
            ShardStore.open(out)

        if outcome(f"ANI-1 HDF5, {layout} (featurize)", case[0], src, run) == "error":
            assert not is_complete(out)


@FUZZ
@given(DAMAGE)
def test_damaged_xyz_files(case):
    text = "".join(
        f"3\nframe {i}\nO 0 0 {i * 0.01:.3f}\nH 0.76 0.59 0\nH -0.76 0.59 0\n"
        for i in range(5)
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "w.xyz"
        path.write_bytes(damage(text.encode(), *case))
        outcome(
            "XYZ (predict's reader)", case[0], path, lambda: list(read_frames(path))
        )


@FUZZ
@given(DAMAGE)
def test_damaged_toml_configs(case):
    text = b"[train]\nlr = 0.001\nbatch_size = 128\nhidden = { H = [16, 8] }\n"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.toml"
        path.write_bytes(damage(text, *case))
        outcome(
            "TOML config",
            case[0],
            path,
            lambda: load_train_settings(toml_path=path),
        )


def read_everything(store: ShardStore) -> None:
    for layout in store.layouts:
        for name in (keys.ENERGY, keys.SPECIES, keys.MOLECULE, keys.INDEX, keys.SPLIT):
            store.read(layout.n_atoms, name, None, 0, layout.n_conformations)
        for e, element in enumerate(store.elements):
            if layout.total_rows()[e]:
                store.read(layout.n_atoms, keys.AEV, element, 0, layout.total_rows()[e])
                rows = layout.total_rows()[e]
                store.read(layout.n_atoms, keys.CONFORMATION, element, 0, rows)


@FUZZ
@given(st.data(), DAMAGE)
def test_damaged_store_files(sources, data, case):
    """Any file of a complete store damaged: reading all of it is the data or one
    error, and `verify` names the file whenever its bytes changed."""
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "aev"
        shutil.copytree(sources["store"], store)
        files = sorted(p for p in store.rglob("*") if p.is_file())
        target = data.draw(st.sampled_from(files))
        before = target.read_bytes()
        target.write_bytes(damage(before, *case))
        changed = target.read_bytes() != before

        def run():
            read_everything(ShardStore.open(store))

        result = outcome("store (open and read all)", case[0], store, run)
        if changed and target.parent.name != "aev" and not target.name.startswith("."):
            # A chunk file: its damage is never read as data, and verify names it.
            assert result == "error"
            assert any(target.name in p for p in verify(store))


@FUZZ
@given(
    st.sampled_from(
        [runs.BEST, runs.CHECKPOINT, runs.CONFIG, runs.HISTORY, runs.BEST + ".crc32"]
    ),
    DAMAGE,
)
def test_damaged_run_files(sources, name, case):
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        shutil.copytree(sources["run"], run)
        target = run / name
        before = target.read_bytes()
        target.write_bytes(damage(before, *case))
        changed = target.read_bytes() != before

        def load():
            if not name.startswith(
                runs.BEST
            ):  # a resume reads config, checkpoint, history
                small = load_train_settings(
                    hidden={e: (16,) for e in "HCNO"}, max_epochs=3
                )
                train(
                    sources["store"],
                    run,
                    small,
                    resume=True,
                    progress=False,
                    echo=lambda *_: None,
                )
            else:
                runs.load_best(run, torch.device("cpu"))

        result = outcome(f"run file {name}", case[0], target, load)
        if changed and name in (runs.BEST, runs.CHECKPOINT):
            assert result == "error"  # never other weights read as the model


GOOD_GROUP = {
    "coordinates": lambda rng: (
        rng.normal(0, 0.05, (6, 3, 3)).astype(np.float32)
        + np.array([[0, 0, 0], [0.76, 0.59, 0], [-0.76, 0.59, 0]], np.float32)
    ),
    "energies": lambda rng: rng.normal(-76.4, 0.01, 6),
    "species": lambda rng: np.array([b"O", b"H", b"H"]),
}
# What a group's dataset may be made into.
STRUCTURE = st.sampled_from(
    [
        "as is",
        "missing",
        "strings",
        "one value",
        "wrong shape",
        "empty",
        "nan",
        "inf",
        "huge",
        "extra dataset",
    ]
)


def build(value: np.ndarray, how: str) -> np.ndarray | None:
    """`value` (a good dataset) made into what `how` says, or None (missing)."""
    if how == "missing":
        return None
    if how == "strings":
        return np.array([b"x"] * value.size).reshape(value.shape)
    if how == "one value":
        return np.asarray(value.flat[0])
    if how == "wrong shape":
        return value.reshape(-1)[:-1] if value.size > 1 else np.zeros((2, 2))
    if how == "empty":
        return value[:0]
    if value.dtype.kind == "f" and how in ("nan", "inf", "huge"):
        out = value.copy()
        out.flat[out.size // 2] = {"nan": np.nan, "inf": -np.inf, "huge": 1e30}[how]
        return out
    return value


@FUZZ
@given(
    st.fixed_dictionaries({name: STRUCTURE for name in GOOD_GROUP}),
    st.sampled_from(["mol", "..", "a b", "ü"]),
)
def test_badly_shaped_hdf5_inputs(changes, name):
    """Groups whose datasets are missing, of other kinds or shapes, empty, NaN,
    infinite or huge: a store with finite AEVs, or one error naming the file."""
    import h5py

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.h5"
        with h5py.File(src, "w") as f:
            group = f.create_group(f"set/{name}")
            for key, make in GOOD_GROUP.items():
                value = build(make(rng), changes[key])
                if value is not None:
                    group[key] = value
            if "extra dataset" in changes.values():
                group["forces"] = np.zeros((6, 3, 3))
            good = f.create_group("set/water")
            for key, make in GOOD_GROUP.items():
                good[key] = make(rng)
        out = Path(tmp) / "aev"

        def run():
            featurize([str(src)], out, FeaturizeSettings(), progress=False)
            store = ShardStore.open(out)
            for layout in store.layouts:
                for e, element in enumerate(store.elements):
                    rows = layout.total_rows()[e]
                    if rows:
                        aev = store.read(layout.n_atoms, keys.AEV, element, 0, rows)
                        assert np.isfinite(aev).all()

        kind = ",".join(sorted({v for v in changes.values() if v != "as is"})) or "none"
        if outcome("ANI-1 HDF5, structure", kind, src, run) == "error":
            assert not is_complete(out)
