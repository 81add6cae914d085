"""`aevpipe train`: per-element networks from an AEV shard store."""

from __future__ import annotations

from pathlib import Path

import click

from aevpipe.cli.common import (
    Interrupted,
    SectionedCommand,
    UserError,
    clean_errors,
    device_option,
    echo_errors,
    machine_error,
    parse_bytes,
    progress_option,
    section,
)


@click.command(cls=SectionedCommand)
@click.argument("store", required=False, type=click.Path(file_okay=False))
@click.option(
    "--shards",
    type=click.Path(file_okay=False),
    default=None,
    help="The store, as an option (the same as STORE) [default: data/aev].",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Run directory [default: data/runs/run-<date>-<time>].",
)
@click.option(
    "--preset",
    type=click.Choice(["ani1x", "ani2x", "seed"]),
    default="ani1x",
    show_default=True,
    help="ani1x / ani2x: ANI-1x's / ANI-2x's networks, AdamW, a schedule; seed: "
    "the course project's recipe.",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help="TOML file with a [train] table overriding the preset.",
)
@click.option(
    "--max-epochs",
    type=click.IntRange(min=1),
    help="Stop after this many epochs [default: 10000].",
)
@click.option(
    "--max-time",
    type=click.FloatRange(min=0),
    help="Seconds of training [default: no limit]; the learning rate then "
    "follows a cosine over this time.",
)
@click.option(
    "--batch-size",
    cls=section("Tuning"),
    type=click.IntRange(min=1),
    help="Conformations per training step [default: the preset's, 256 for ani1x].",
)
@click.option(
    "--lr",
    type=click.FloatRange(min=0, min_open=True),
    cls=section("Tuning"),
    help="Initial learning rate [default: the preset's, 1e-3 for ani1x].",
)
@click.option(
    "--memory-limit",
    cls=section("Tuning"),
    default="1GiB",
    show_default=True,
    help="AEV data the loader may hold in RAM.",
)
@device_option
@click.option(
    "--seed",
    cls=section("Tuning"),
    type=int,
    default=0,
    show_default=True,
    help="Seed of the networks' initial weights and the batch order (the split is "
    "featurize's).",
)
@click.option(
    "--ensemble",
    type=click.IntRange(min=1),
    help="Members trained together on every batch, differing by initial weights; "
    "predict and the report give their mean and spread [default: 1].",
)
@click.option(
    "--ensemble-folds",
    is_flag=True,
    help="ANI's scheme: member i validates on fold i of the training split and "
    "trains on the rest (needs --ensemble 2 or more).",
)
@click.option(
    "--nproc",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Training processes on this machine (DistributedDataParallel; "
    "gloo on CPU, one GPU each on CUDA). For several nodes use torchrun.",
)
@click.option("--resume", is_flag=True, help="Continue an interrupted run in --out.")
@click.option("--overwrite", is_flag=True, help="Replace the run in --out.")
@progress_option
@clean_errors
def train(
    store,
    shards,
    out,
    preset,
    config_path,
    max_epochs,
    max_time,
    batch_size,
    lr,
    memory_limit,
    device,
    seed,
    ensemble,
    ensemble_folds,
    nproc,
    resume,
    overwrite,
    progress,
):
    """Train per-element networks straight from the AEV shard STORE.

    \b
    Each epoch line gives the RMSE (kcal/mol, whole-molecule energies) on the
    training split (during the epoch) and the validation split; * marks a new
    best validation (of any member, for an ensemble).
    Example:
      aevpipe train data/aev --out data/runs/s01 --max-time 600
      aevpipe train data/aev --out data/runs/s01 --resume
      aevpipe train data/aev --preset seed
      aevpipe train data/aev --ensemble 8 --max-time 600
    """
    import json
    import time

    from aevpipe.config import load_train_settings
    from aevpipe.stages.train import train as run

    if store and shards and Path(store) != Path(shards):
        raise UserError(f"two stores given: {store} and --shards {shards}")
    shards = store or shards or "data/aev"
    settings = load_train_settings(
        preset,
        Path(config_path) if config_path else None,
        max_epochs=max_epochs,
        max_time=max_time,
        batch_size=batch_size,
        lr=lr,
        memory_limit=parse_bytes(memory_limit),
        device=device,
        seed=seed,
        ensemble=ensemble,
        ensemble_folds=ensemble_folds or None,
    )
    if out is None:
        if resume:
            raise UserError("--resume needs --out (the run to continue)")
        out = Path("data/runs") / time.strftime("run-%Y%m%d-%H%M%S")
    try:
        if nproc > 1:
            from torch.multiprocessing import ProcessRaisedException

            from aevpipe.distributed import spawn

            try:
                spawn(
                    nproc,
                    run,
                    Path(shards),
                    Path(out),
                    settings,
                    resume,
                    overwrite,
                    progress,
                )
            except ProcessRaisedException as exc:
                raise UserError(str(exc).strip().splitlines()[-1]) from None
            metrics = json.loads((Path(out) / "metrics.json").read_text())
        else:
            metrics = run(
                Path(shards),
                Path(out),
                settings,
                resume=resume,
                overwrite=overwrite,
                progress=progress,
                echo=click.echo,
            ).metrics
    except KeyboardInterrupt:
        raise Interrupted(
            f"{out} keeps its settings and its last checkpoint; run the same "
            "command with --resume to continue from there"
        ) from None
    except OSError as exc:
        message = machine_error(exc)
        if message is None:
            raise
        raise UserError(
            f"{message}; {out} keeps its last checkpoint: fix that and run the "
            "same command with --resume to continue"
        ) from None
    r = metrics["run"]
    click.echo(
        f"stopped after epoch {r['epochs']} ({r['stop_reason']}); "
        f"best epoch {r['best_epoch']}"
    )
    echo_errors(metrics, indent=2)
    click.echo(f"run written to {out}")
