"""Stage one: ANI-1 HDF5 files to a complete AEV shard store.

Scan every input and check its structure before writing anything, plan the work,
create the store (or resume it), run the units on an executor with a progress
bar, then write the manifest last. Values (NaN, infinities) are checked as the
units read them, so each input is decompressed once; with `skip_invalid` they are
checked up front too, so that bad molecules are left out of the plan.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch

from aevpipe import keys, store
from aevpipe.aev import TORCHANI_VERSION, resolve_device
from aevpipe.ani1 import MoleculeInfo
from aevpipe.config import FeaturizeSettings
from aevpipe.errors import InputError, StoreError, StoreWriteError
from aevpipe.executors import cpu_cores, make_executor, threads_per_worker
from aevpipe.folders import only_writer
from aevpipe.plan import MoleculeShape, make_plan, molecule_splits
from aevpipe.stages.inputs import (
    hashed_sources,
    progress_bar,
    refuse_repeats,
    scan_inputs,
)
from aevpipe.units import (
    SegmentSource,
    UnitTask,
    close_readers,
    run_unit,
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


class _Run(NamedTuple):
    """How a featurize runs, apart from what it makes."""

    device: torch.device
    workers: int | None
    scheduler: str | None
    overwrite: bool
    progress: bool


def _job_fingerprint(attrs: dict[str, Any]) -> str:
    """What makes a store: inputs, settings and plan. A resumed run must match it."""
    names = (
        keys.ATTR_FORMAT_VERSION,
        keys.ATTR_AEV_PARAMS,
        keys.ATTR_SPLIT,
        keys.ATTR_MOLECULES,
        "plan_hash",
    )
    ident = {k: attrs[k] for k in names}
    if keys.ATTR_AEV_DTYPE in attrs:
        ident[keys.ATTR_AEV_DTYPE] = attrs[keys.ATTR_AEV_DTYPE]
    ident["sha256"] = [s["sha256"] for s in attrs[keys.ATTR_SOURCES]]
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()


def _store_attrs(
    molecules: list[MoleculeInfo], sources, settings: FeaturizeSettings, plan
) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        keys.ATTR_FORMAT_VERSION: keys.FORMAT_VERSION,
        keys.ATTR_AEV_PARAMS: settings.aev.to_dict(),
        keys.ATTR_ELEMENTS: list(settings.aev.elements),
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
    if settings.aev_dtype != "float32":  # a float32 store is as it always was
        attrs[keys.ATTR_AEV_DTYPE] = settings.aev_dtype
        attrs[keys.ATTR_FORMAT_VERSION] = 2
    attrs[keys.ATTR_PLAN] = _job_fingerprint(attrs)
    return attrs


def _differences(existing: dict[str, Any], attrs: dict[str, Any]) -> str:
    """What a store's making differs in from this request, in a user's words."""

    def dtype(a: dict[str, Any]) -> str:
        return a.get(keys.ATTR_AEV_DTYPE, "float32")

    def inputs(a: dict[str, Any]) -> list[str]:
        return [source["sha256"] for source in a.get(keys.ATTR_SOURCES, [])]

    found = []
    if dtype(existing) != dtype(attrs):
        found.append(f"--dtype: {dtype(existing)} there, {dtype(attrs)} asked")
    if inputs(existing) != inputs(attrs):
        found.append("input files")
    if existing.get(keys.ATTR_AEV_PARAMS) != attrs[keys.ATTR_AEV_PARAMS]:
        found.append("AEV parameters")
    if existing.get(keys.ATTR_SPLIT) != attrs[keys.ATTR_SPLIT]:
        found.append("split")
    return ", ".join(found) or "work units: block sizes, or another aevpipe version"


def _prepare_store(out: Path, attrs: dict[str, Any], overwrite: bool) -> str:
    """Decide what to do with `out`: 'new', 'resume' or 'complete'."""
    if overwrite:
        store.remove(out)
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return "new"
    existing = store.read_attrs(out)
    if existing is None:
        raise StoreError(
            f"{out}: exists and is not an aevpipe store; choose another --out"
        )
    if existing.get(keys.ATTR_PLAN) != attrs[keys.ATTR_PLAN]:
        raise StoreError(
            f"{out}: holds a store made from other inputs or settings "
            f"({_differences(existing, attrs)}); pass --overwrite to replace it"
        )
    if not store.is_complete(out):
        return "resume"
    store.ShardStore.open(out)  # a damaged store is an error, not "complete already"
    return "complete"


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
    files, out = [str(f) for f in files], Path(out)
    # A bad device fails before any reading.
    run = _Run(resolve_device(settings.device), workers, scheduler, overwrite, progress)
    refuse_repeats([str(Path(f).resolve()) for f in files], files, "is given twice")
    molecules, skipped, synthetic = scan_inputs(files, settings, progress)
    elements = settings.aev.elements
    shapes = [
        MoleculeShape(
            m.n_conformations, m.n_atoms, tuple(m.symbols.count(e) for e in elements)
        )
        for m in molecules
    ]
    plan = make_plan(shapes, settings.block_size, settings.split, settings.block_atoms)
    used = list(dict.fromkeys(m.file for m in molecules))
    sources = hashed_sources(used, synthetic, progress)
    refuse_repeats([s["sha256"] for s in sources], used, "holds the same bytes as")
    attrs = _store_attrs(molecules, sources, settings, plan)
    summary = FeaturizeSummary(store=str(out), status="written")
    summary.skipped_molecules = skipped
    with only_writer(out, "featurize", "store"):
        _write_store(out, attrs, plan, molecules, settings, summary, run)
    summary.seconds = time.perf_counter() - t0
    return summary


def _write_store(out, attrs, plan, molecules, settings, summary, run) -> None:
    """Create or resume the store at `out`, run its units and write its manifest,
    filling in `summary`; `run` holds the executor's settings."""
    action = _prepare_store(out, attrs, run.overwrite)
    if action == "complete":
        summary.status = "complete already"
        return
    if action == "new":
        store.create(out, attrs, plan, settings.aev, settings.chunk_rows)
        todo = list(plan.units)
    else:
        summary.status = "resumed"
        done = store.done_units(out)
        todo = [u for u in plan.units if u.uid not in done]
    summary.units_skipped = len(plan.units) - len(todo)
    attrs = {**attrs, keys.ATTR_LAYOUT: store.layout_to_attr(plan.groups)}
    try:
        _run_units(out, todo, molecules, settings, run)
        n_arrays = len(store.specs_of(attrs))
        bar = progress_bar(
            run.progress, "manifest", total=n_arrays, unit="array", delay=1
        )
        with bar:
            manifest = store.finish(
                out,
                attrs,
                {"skipped_molecules": summary.skipped_molecules},
                on_array=bar.update,
                threads=cpu_cores(),
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


def unit_threads(settings: FeaturizeSettings, device: torch.device) -> int:
    """In-process unit threads: as set, else one per core (at most 4) on the CPU,
    where each thread's torch runs on its share of the cores; two on a GPU, so
    that one unit's writing overlaps the next one's AEVs."""
    if settings.threads:
        return settings.threads
    return 2 if device.type == "cuda" else min(4, cpu_cores())


@contextlib.contextmanager
def _torch_threads(n: int):
    """Torch's intra-op threads set to `n` inside the block."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _run_units(out, units, molecules, settings, run: _Run):
    """Run `units` on the executor the settings ask for, with a progress bar. The
    units run in plan order (by atom count), so units sharing chunks run close
    together."""
    codes = molecule_splits(settings.split, len(molecules))
    sources = [
        SegmentSource(
            file=m.file,
            group=m.group,
            n_conformations_of_molecule=m.n_conformations,
            molecule_code=None if codes is None else codes[i],
        )
        for i, m in enumerate(molecules)
    ]
    threads = unit_threads(settings, run.device)
    executor = make_executor(run.workers, run.scheduler, threads)
    per_unit = threads_per_worker(executor.workers)
    in_process = not (run.workers or run.scheduler)
    tasks = [
        UnitTask(
            store=str(out.resolve()),
            unit=u,
            sources=tuple(sources[seg.molecule] for seg in u.segments),
            aev=settings.aev,
            split=settings.split,
            device=settings.device,
            threads=0 if in_process else per_unit,
        )
        for u in units
    ]
    total = sum(u.n_conformations for u in units)
    bar = progress_bar(
        run.progress, "featurize", total=total, unit="conf", unit_scale=True
    )
    try:
        with bar, _torch_threads(per_unit if in_process else torch.get_num_threads()):
            for stats in executor.map_unordered(run_unit, tasks):
                bar.update(stats["conformations"])
    finally:
        executor.close()
        close_readers()
