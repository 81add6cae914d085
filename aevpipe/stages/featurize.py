"""Stage one: ANI-1 HDF5 files to a complete AEV shard store.

Scan every input and check its structure before writing anything (hashing the
inputs meanwhile, in a background thread), plan the work, create the store
(in-process, while the first units compute) or resume it, run the units on an
executor with a progress bar, then write the manifest last.

Values (NaN, infinities) are checked as the units read them, so the input is
decompressed once. On s01 x10 stored gzip'd as the release is, checking them up
front as well took 38 ms, serially, before any unit started. Without that check,
featurize took 0.378-0.392 s, against 0.407-0.424 s with it
(benchmarks/RESULTS.md, session 8). With `skip_invalid` values are checked up front
too, so that bad molecules are left out of the plan.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from tqdm import tqdm

from aevpipe import keys, shards
from aevpipe.aev import TORCHANI_VERSION, resolve_device
from aevpipe.allocator import keep_freed_memory
from aevpipe.ani1 import ANI1File, MoleculeInfo
from aevpipe.config import FeaturizeSettings
from aevpipe.errors import InputError, StoreError, StoreWriteError
from aevpipe.executors import cpu_cores, make_executor, threads_per_worker
from aevpipe.hashing import InputHashes
from aevpipe.plan import MoleculeShape, make_plan, molecule_splits
from aevpipe.units import (
    UnitTask,
    compute_unit,
    expect_writes,
    flush_writes,
    species_indices,
    torch_threads,
    write_unit,
)


@dataclass
class FeaturizeSummary:
    """What a featurize run did, for the console and the manifest."""

    store: str
    status: str  # "written", "resumed", "complete already"
    conformations: int = 0
    atoms: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    bytes_written: int = 0
    uncompressed_bytes: int = 0
    seconds: float = 0.0
    units_run: int = 0
    units_skipped: int = 0
    skipped_molecules: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """Human-readable summary."""
        if self.status == "complete already":
            return [
                f"{self.store}: complete already, nothing to do (--overwrite redoes it)"
            ]
        rate = self.conformations / self.seconds if self.seconds else 0.0
        ratio = (
            self.uncompressed_bytes / self.bytes_written if self.bytes_written else 0
        )
        rows = ", ".join(f"{e} {n:,}" for e, n in self.rows.items() if n)
        out = [
            f"{self.store}: {self.status}",
            f"  conformations {self.conformations:,}  atoms {self.atoms:,}",
            f"  rows per element: {rows}",
            f"  written {self.bytes_written / 1e6:,.1f} MB "
            f"(compression ratio {ratio:.2f})",
            f"  time {self.seconds:.1f} s ({rate:,.0f} conformations/s)",
            f"  units run {self.units_run}, already done {self.units_skipped}",
        ]
        if self.skipped_molecules:
            out.append(f"  skipped {len(self.skipped_molecules)} invalid molecule(s):")
            out += [f"    {s}" for s in self.skipped_molecules]
        return out


class _NoBar:
    """What `_bar` gives when no bar is shown: tqdm's constructor, even disabled,
    took 65 us a bar (four of them a run)."""

    def update(self, n: int = 1) -> None:
        pass

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc) -> None:
        pass


def _bar(progress: bool, desc: str, **kwargs) -> tqdm | _NoBar:
    """A progress bar on stderr, or none. Steps before and after the units pass
    `delay=1`: their bar shows only once they have taken a second."""
    if not progress:
        return _NoBar()
    return tqdm(desc=desc, dynamic_ncols=True, **kwargs)


class Scan(NamedTuple):
    """What the scan found: the molecules to featurize, the bad ones skipped (their
    errors), and which files say they hold synthetic data."""

    molecules: list[MoleculeInfo]
    skipped: list[str]
    synthetic: dict[str, bool]


def scan_inputs(
    files: list[str], settings: FeaturizeSettings, progress: bool = False
) -> Scan:
    """Every molecule group of every file, its structure checked (and its values,
    when bad groups are to be skipped); bad ones raise or are skipped. The whole
    ANI-1 release is some 58,000 groups: `progress` shows a bar while they are
    checked."""
    with _bar(progress, "scan", unit="group", delay=1) as bar:
        return _scan_inputs(files, settings, bar)


def _scan_inputs(files: list[str], settings: FeaturizeSettings, bar) -> Scan:
    elements = settings.aev.elements
    covered = set(elements)
    good: list[MoleculeInfo] = []
    skipped: list[str] = []
    synthetic: dict[str, bool] = {}
    for path in files:
        reader = ANI1File(path)
        try:
            for group, info in reader.scan():
                bar.update()
                try:
                    if isinstance(info, InputError):
                        raise info
                    # The same check the units make, before anything is written
                    # (its error where an element is not covered).
                    if not covered.issuperset(info.symbols):
                        species_indices(
                            np.asarray([info.symbols]), elements, path, group
                        )
                    if settings.skip_invalid:
                        reader.check_finite(
                            group, max(1, settings.block_atoms // info.n_atoms)
                        )
                    good.append(info)
                except InputError as exc:
                    if not settings.skip_invalid:
                        raise
                    skipped.append(str(exc))
            synthetic[reader.path] = reader.is_synthetic()  # keyed as m.file is
        finally:
            reader.close()
    if not good:
        raise InputError(
            ", ".join(files), None, "no valid molecule groups to featurize"
        )
    return Scan(good, skipped, synthetic)


def _sources(
    files: list[str], hashes: InputHashes, synthetic: dict[str, bool], progress: bool
) -> list[dict[str, Any]]:
    """The input files as the store's `sources` attribute, each with its sha256
    (from `hashes`, begun with the run; the whole ANI-1 release is some GB to hash:
    `progress` shows a bar while the rest is read)."""
    sizes = [Path(f).stat().st_size for f in files]
    sources = []
    with _bar(
        progress, "sha256", total=sum(sizes), unit="B", unit_scale=True, delay=1
    ) as bar:
        hashes.follow(bar.update)
        try:
            for f, size in zip(files, sizes, strict=True):
                sources.append(
                    {
                        "path": str(Path(f).resolve()),
                        "name": Path(f).name,
                        "sha256": hashes.digest(f),
                        "size": size,
                        "synthetic": synthetic[f],
                    }
                )
        finally:
            hashes.follow(None)
    return sources


def _shape(info: MoleculeInfo, elements: tuple[str, ...]) -> MoleculeShape:
    counts = tuple(info.symbols.count(e) for e in elements)
    return MoleculeShape(info.n_conformations, info.n_atoms, counts)


def _job_fingerprint(attrs: dict[str, Any]) -> str:
    ident = {
        k: attrs[k]
        for k in (
            keys.ATTR_FORMAT_VERSION,
            keys.ATTR_AEV_PARAMS,
            keys.ATTR_SPLIT,
            keys.ATTR_MOLECULES,
            "plan_hash",
        )
    }
    ident["sha256"] = [s["sha256"] for s in attrs[keys.ATTR_SOURCES]]
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()


def _prepare_store(out: Path, attrs: dict[str, Any], overwrite: bool) -> str:
    """Decide what to do with `out`: 'new', 'resume' or 'complete'."""
    if not out.exists() or overwrite:
        return "new"
    existing = shards.read_attrs(out)
    if existing is None:
        if out.is_dir() and not any(out.iterdir()):
            return "new"
        raise StoreError(
            f"{out}: exists and is not an aevpipe store; choose another "
            "--out or pass --overwrite"
        )
    if existing.get(keys.ATTR_PLAN) != attrs[keys.ATTR_PLAN]:
        raise StoreError(
            f"{out}: holds a store made from other inputs or settings; "
            "pass --overwrite to replace it"
        )
    return "complete" if shards.is_complete(out) else "resume"


def featurize(
    files: list[str],
    out: Path,
    settings: FeaturizeSettings,
    workers: int | None = None,
    scheduler: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> FeaturizeSummary:
    """Featurize `files` into the store at `out`; see the module docstring."""
    t0 = time.perf_counter()
    # Before any thread starts (the hashing thread below, tqdm's monitor thread
    # with the first bar): a second malloc arena made before this raised the
    # synthetic s01-s04's peak from 1,066-1,208 to 1,252-1,340 MiB
    # (benchmarks/RESULTS.md).
    keep_freed_memory()
    out = Path(out)
    resolve_device(settings.device)  # a bad device fails before any reading
    hashes = InputHashes(files)  # while the scan reads the same files
    try:
        return _featurize(
            files, out, settings, hashes, workers, scheduler, overwrite, progress, t0
        )
    finally:
        hashes.stop()


def _featurize(
    files: list[str],
    out: Path,
    settings: FeaturizeSettings,
    hashes: InputHashes,
    workers: int | None,
    scheduler: str | None,
    overwrite: bool,
    progress: bool,
    t0: float,
) -> FeaturizeSummary:
    molecules, skipped, synthetic = scan_inputs(files, settings, progress)
    elements = settings.aev.elements
    plan = make_plan(
        [_shape(m, elements) for m in molecules],
        settings.block_size,
        settings.split,
        settings.block_atoms,
    )
    sources = _sources(
        list(dict.fromkeys(m.file for m in molecules)), hashes, synthetic, progress
    )
    attrs: dict[str, Any] = {
        keys.ATTR_FORMAT_VERSION: keys.FORMAT_VERSION,
        keys.ATTR_AEV_PARAMS: settings.aev.to_dict(),
        keys.ATTR_ELEMENTS: list(elements),
        keys.ATTR_TORCHANI_VERSION: TORCHANI_VERSION,
        keys.ATTR_SOURCES: sources,
        keys.ATTR_SPLIT: settings.split.to_dict(),
        keys.ATTR_MOLECULES: [
            {
                "file": Path(m.file).name,
                "group": m.group,
                "formula": m.formula,
                "n_conformations": m.n_conformations,
            }
            for m in molecules
        ],
        "synthetic": any(src["synthetic"] for src in sources),
        "plan_hash": plan.fingerprint(),
        "block_size": settings.block_size,
        "block_atoms": settings.block_atoms,
        keys.ATTR_CHUNK_ROWS: settings.chunk_rows,
    }
    attrs[keys.ATTR_PLAN] = _job_fingerprint(attrs)
    action = _prepare_store(out, attrs, overwrite)
    summary = FeaturizeSummary(
        store=str(out), status="written", skipped_molecules=skipped
    )
    if action == "complete":
        summary.status = "complete already"
        return summary
    create, discard = None, []
    if action == "new":
        discard = shards.set_aside(out)  # removed while the new store is written
        create = functools.partial(
            shards.create, out, attrs, plan, settings.aev, settings.chunk_rows
        )
        todo = list(plan.units)
    else:
        done = shards.done_units(out)
        todo = [u for u in plan.units if u.uid not in done]
    summary.status = "resumed" if action == "resume" else "written"
    summary.units_skipped = len(plan.units) - len(todo)
    try:
        written = _run_units(
            out,
            attrs,
            todo,
            molecules,
            settings,
            workers,
            scheduler,
            progress,
            create,
            discard,
        )
        specs = len(shards.array_specs(plan.groups, elements, settings.aev.aev_length))
        with _bar(progress, "manifest", total=specs, unit="array", delay=1) as bar:
            manifest = shards.finish(
                out,
                {"skipped_molecules": skipped},
                written,
                on_array=bar.update,
                attrs={**attrs, keys.ATTR_LAYOUT: shards.layout_to_attr(plan.groups)},
            )
    except InputError as exc:  # a NaN or infinite value, found by a unit
        raise InputError(
            exc.file,
            exc.group,
            f"{exc.message}; {out} is left incomplete: fix the input, or pass "
            "--skip-invalid --overwrite to leave such groups out",
        ) from None
    except StoreWriteError as exc:  # a full disk, no permission
        raise StoreWriteError(
            f"{exc}; the units finished so far are kept: fix that and run the "
            "same command to complete the store"
        ) from None
    summary.units_run = len(todo)
    summary.conformations = sum(manifest["conformations"].values())
    summary.atoms = manifest["atoms"]
    summary.rows = manifest["rows"]
    summary.bytes_written = manifest["bytes"]
    summary.uncompressed_bytes = manifest["uncompressed_bytes"]
    summary.seconds = time.perf_counter() - t0
    return summary


def unit_threads(settings: FeaturizeSettings, on_gpu: bool) -> int:
    """In-process unit threads: as set, else one per core (at most 4) on the CPU,
    where each thread's torch runs on its share of the cores; one on a GPU."""
    if settings.threads:
        return settings.threads
    return 1 if on_gpu else min(4, cpu_cores())


def _run_order(units: list) -> list:
    """Group by group, so the writer holds few groups' partial chunks, except that
    the largest unit goes first: on a small input it would otherwise end the run
    alone (s01: CH4's one unit). Taking all the largest molecules first also
    shortened s01, but raised the synthetic s01-s04's peak from 1.05 to 1.7-1.85
    GB (benchmarks/RESULTS.md, session 5)."""
    order = sorted(units, key=lambda u: (u.n_atoms, u.uid))
    if order:
        largest = max(order, key=lambda u: u.n_conformations * u.n_atoms)
        order.remove(largest)
        order.insert(0, largest)
    return order


def _write_when_ready(ready: Future, task: UnitTask, computed) -> dict[str, Any]:
    ready.result()  # the store exists (or its creation's error is raised here)
    return write_unit(task, computed)


def _run_units(
    out,
    attrs,
    units,
    molecules,
    settings,
    workers,
    scheduler,
    progress,
    create=None,
    discard=(),
):
    """Run `units`, after `create` (the store's creation, or None when it exists);
    returns the CRC-32 and size of the chunk files written in this process (none
    when Dask workers wrote them). The old stores set aside in `discard` are
    removed in a background thread meanwhile, after the creation.

    In-process, the store is created in a background thread while the first units
    compute their AEVs (they wait for it to write). On s01 x10 with --overwrite,
    creation (then mostly removing the old store) took 0.019 of 0.44 s with the
    other core idle; in 8 alternated rounds, runs took 0.475-0.524 s against
    0.489-0.565 s before, faster in every round (benchmarks/RESULTS.md, session 6).
    """
    written: dict[str, tuple[int, int]] = {}
    if not units:
        if create is not None:
            create()
        shards.remove(discard)
        return written
    codes = molecule_splits(settings.split, len(molecules))
    on_gpu = resolve_device(settings.device).type == "cuda"
    threads = unit_threads(settings, on_gpu)
    executor = make_executor(
        workers, scheduler, overlap=on_gpu and threads == 1, threads=threads
    )
    keep_freed_memory()  # before unit threads start: see aevpipe.allocator
    store, plan = str(out.resolve()), attrs[keys.ATTR_PLAN]
    # Torch threads per unit: set in each Dask worker, here for the whole run.
    per_unit = threads_per_worker(executor.workers)
    ready: Future | None = None
    removed: Future | None = None
    ran = False
    try:
        tasks = [
            UnitTask(
                store=store,
                plan=plan,
                unit=u,
                file=molecules[u.molecule].file,
                group=molecules[u.molecule].group,
                aev=settings.aev,
                split=settings.split,
                molecule_code=None if codes is None else codes[u.molecule],
                n_conformations_of_molecule=molecules[u.molecule].n_conformations,
                device=settings.device,
                locked=executor.concurrent,
                direct_writes=settings.direct_writes,
                threads=per_unit if executor.concurrent else 0,
                symbols=(
                    molecules[u.molecule].symbols
                    if molecules[u.molecule].shared_symbols
                    else None
                ),
            )
            for u in _run_order(units)
        ]
        counts = dict(Counter(u.n_atoms for u in units))

        def prepare() -> None:
            if create is not None:
                create()
            if not executor.concurrent:
                expect_writes(store, plan, settings.direct_writes, counts)

        finish = write_unit
        starter = ThreadPoolExecutor(1, thread_name_prefix="aevpipe-create")
        if executor.concurrent or create is None:
            prepare()
        else:
            ready = starter.submit(prepare)
            finish = functools.partial(_write_when_ready, ready)
        if discard:
            removed = starter.submit(shards.remove, discard)
        starter.shutdown(wait=False)
        total = sum(u.n_conformations for u in units)
        with (
            torch_threads(0 if executor.concurrent else per_unit),
            _bar(
                progress, "featurize", total=total, unit="conf", unit_scale=True
            ) as bar,
        ):
            results = executor.map_unordered(compute_unit, tasks, finish)
            try:
                for stats in results:
                    bar.update(stats["conformations"])
            finally:
                results.close()  # waits for units still running in threads
        ran = True
    finally:
        executor.close()
        if removed is not None:
            removed.result()
        # Also on Ctrl-C, what was computed is kept; not when there is no store.
        if not executor.concurrent and (ready is None or ready.exception() is None):
            if ran:
                written = flush_writes(store, plan, settings.direct_writes)
            else:  # the run's own error is the one to report, not the flush's
                with contextlib.suppress(Exception):
                    flush_writes(store, plan, settings.direct_writes)
    return written
