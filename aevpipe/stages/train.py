"""Stage two: train per-element networks straight from a shard store.

This module sets a run up (its directory, processes, device, the store's
checks), hands the epochs to `aevpipe.trainer.Trainer`, and scores the best
model on every split into metrics.json. AEVs are never recomputed.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aevpipe import keys, runs
from aevpipe.aev import resolve_device
from aevpipe.config import TrainSettings
from aevpipe.distributed import World, barrier, setup, world_from_env
from aevpipe.errors import AevpipeError, SettingsError, StoreError
from aevpipe.folders import only_writer
from aevpipe.loader import ShardLoader
from aevpipe.objective import evaluate
from aevpipe.runs import load_best
from aevpipe.store import ShardStore
from aevpipe.trainer import TRAIN, VALID, Trainer


@dataclass
class TrainResult:
    """Where a run ended and its final metrics."""

    run: Path
    epochs: int
    best_epoch: int
    metrics: dict[str, dict[str, float]]
    stop_reason: str


def train(
    shards_path: Path,
    run: Path,
    settings: TrainSettings,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    echo: Callable[[str], None] = print,
    on_batch: Callable[[int, int], None] | None = None,
) -> TrainResult:
    """Train on the store at `shards_path`, writing the run to `run`.

    Under torchrun (or `spawn`) every process calls this; rank 0 alone writes, and
    holds the run directory so that no other train writes there meanwhile.
    """
    args = (shards_path, Path(run), settings, resume, overwrite, progress, echo)
    new = not Path(run).exists()
    with contextlib.ExitStack() as held:
        if world_from_env().is_main:
            held.enter_context(only_writer(Path(run), "train", "run directory"))
        try:
            return _train(*args, on_batch)
        except AevpipeError:  # refused before any epoch: leave no half-made run
            if new and not (Path(run) / runs.CHECKPOINT).exists():
                shutil.rmtree(run, ignore_errors=True)
            raise


def _train(shards_path, run, settings, resume, overwrite, progress, echo, on_batch):
    store = ShardStore.open(Path(shards_path))
    world = world_from_env()
    device = setup(world, resolve_device(settings.device))
    run = Path(run)
    identity = {
        "store": {
            "path": str(Path(shards_path).resolve()),
            "plan": store.attrs[keys.ATTR_PLAN],
        },
        "aev": store.aev.to_dict(),
        "elements": list(store.elements),
        "settings": settings.to_dict(),
    }
    if store.conformations(TRAIN) == 0:
        raise StoreError(f"{shards_path}: the training split is empty")
    # Validation streams in a quarter of the budget: at least one chunk of AEVs.
    chunk = store.attrs[keys.ATTR_CHUNK_ROWS] * store.aev.aev_length * 4
    if settings.memory_limit < 4 * chunk:
        raise SettingsError(
            f"memory limit {settings.memory_limit:,} bytes: this store needs at "
            f"least {4 * chunk:,} (four of its AEV chunks)"
        )
    if world.is_main:
        resuming = runs.prepare_run_dir(run, identity, resume, overwrite)
        runs.write_json(run / runs.CONFIG, identity)  # a resume may extend limits
        if not resuming:
            (run / runs.HISTORY).write_text("")
    barrier()
    resuming = resume and (run / runs.CHECKPOINT).is_file()
    trainer = Trainer(store, run, settings, device, world, progress, echo, on_batch)
    if resuming:
        trainer.restore()
    trainer.echo(
        f"training on {store.conformations(TRAIN):,} conformations, validating on "
        f"{store.conformations(VALID):,}; {world.world_size} process(es), device "
        f"{device}"
    )
    trainer.echo(trainer.self_energies.summary())
    trainer.echo(
        "per epoch: RMSE of whole-molecule energies (kcal/mol) on the training "
        "split during the epoch and on the validation split; * a new best"
    )
    stop_reason = trainer.fit()
    # The final evaluation's loaders take their own share of the memory limit.
    trainer.train_loader.release()
    trainer.valid_loader.release()
    barrier()  # best.pt is written before anyone reads it
    state = trainer.state
    metrics = final_metrics(run, store, device, settings, trainer.sae_t, world)
    metrics["run"] = {
        "epochs": state["epoch"],
        "best_epoch": max(state["best_epoch"]),
        "member_best_epochs": state["best_epoch"],
        "train_seconds": state["elapsed"],
        "device": str(device),
        "processes": world.world_size,
        "stop_reason": stop_reason,
        "store": str(shards_path),
    }
    metrics["self_energies"] = trainer.self_energies.to_dict()
    if world.is_main:
        runs.write_json(run / runs.METRICS, metrics)
    barrier()
    best_epoch = max(state["best_epoch"])
    return TrainResult(run, state["epoch"], best_epoch, metrics, stop_reason)


def final_metrics(
    run, store, device, settings, sae_t, world: World | None = None
) -> dict[str, Any]:
    """Train/valid/test errors of the best model (of the members' mean), each
    split once (shared by rank); an ensemble's members' under "members"."""
    world = world or World()
    model, _ = load_best(run, device)
    out: dict[str, Any] = {}
    members = {}
    for name in keys.SPLIT_NAMES:
        loader = ShardLoader(
            store,
            keys.SPLIT_CODES[name],
            settings.valid_batch_size,
            settings.memory_limit // 2,
            sae_t.cpu().numpy(),
            shuffle=False,
            rank=world.rank,
            world_size=world.world_size,
        )
        errors = evaluate(model, loader, device, sae_t).reduce()
        out[name] = errors.ensemble.result()
        members[name] = errors.members.members()
    if model.members > 1:
        out["members"] = members
    return out
