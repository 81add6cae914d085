"""The `aevpipe` command line: thin click commands over the stages.

Errors a user can cause become one line on stderr and exit code 2; bugs keep their
traceback.
"""

from __future__ import annotations

import errno
import functools
from dataclasses import replace
from pathlib import Path

import click

from aevpipe.errors import AevpipeError


class UserError(click.ClickException):
    """A clean one-line error with exit code 2."""

    exit_code = 2

    def show(self, file=None) -> None:
        click.echo(f"aevpipe: error: {self.format_message()}", err=True)


class Interrupted(click.ClickException):
    """Ctrl-C: one line saying what was kept and how to go on; exit code 130 (the
    shell's code for a run stopped by SIGINT), not click's bare "Aborted!"."""

    exit_code = 130

    def show(self, file=None) -> None:
        click.echo(f"aevpipe: interrupted: {self.format_message()}", err=True)


# OSErrors that come from the machine, not from a bug: a full disk or quota, no
# permission, a read-only file system.
MACHINE_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS}
)


def machine_error(exc: BaseException) -> str | None:
    """'PATH: reason' for an OSError caused by the machine (MACHINE_ERRNOS), else
    None."""
    if not isinstance(exc, OSError) or exc.errno not in MACHINE_ERRNOS:
        return None
    reason = exc.strerror or str(exc)
    return f"{exc.filename}: {reason}" if exc.filename else reason


def clean_errors(fn):
    """Turn library errors (bad input, bad settings) and the machine's (a full
    disk, no permission) into `UserError`."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (AevpipeError, ValueError) as exc:
            raise UserError(str(exc)) from None
        except OSError as exc:
            message = machine_error(exc)
            if message is None:
                raise
            raise UserError(message) from None

    return wrapper


def _floats(text: str | None) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated numbers: {text}") from None


device_option = click.option(
    "--device",
    default="auto",
    show_default=True,
    help="auto (CUDA when torch sees it), cpu or cuda.",
)
progress_option = click.option(
    "--progress/--no-progress",
    default=True,
    show_default=True,
    help="Show a progress bar.",
)

AEV_FLAGS = ("Rcr", "Rca", "EtaR", "ShfR", "EtaA", "Zeta", "ShfA", "ShfZ")


def aev_options(fn):
    """Options that set the AEV parameters: a preset, a TOML file, single flags."""
    opts = [
        click.option(
            "--aev-preset",
            type=click.Choice(["ani1x", "ani2x"]),
            default="ani1x",
            show_default=True,
            help="AEV parameters and elements to start from.",
        ),
        click.option(
            "--config",
            "config_path",
            type=click.Path(dir_okay=False),
            help="TOML file with an [aev] table overriding the preset.",
        ),
        click.option("--elements", help="Element order, e.g. H,C,N,O."),
    ] + [
        click.option(
            f"--{name}",
            name,
            help=f"AEV parameter {name}"
            + (" (comma-separated)" if name.startswith("Shf") else "."),
        )
        for name in AEV_FLAGS
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def resolve_aev(aev_preset, config_path, elements, **flags):
    """AEVParams from preset, TOML file and flags, later ones winning."""
    from aevpipe.config import load_aev_params

    params = load_aev_params(aev_preset, Path(config_path) if config_path else None)
    changes: dict = {}
    if elements:
        changes["elements"] = tuple(e.strip() for e in elements.split(","))
    for name in AEV_FLAGS:
        value = flags.get(name)
        if value is None:
            continue
        changes[name] = _floats(value) if name.startswith("Shf") else float(value)
    return replace(params, **changes) if changes else params


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="aevpipe")
def cli() -> None:
    """Train ANI-style neural-network potentials from cached AEV shards.

    \b
    aevpipe featurize ani_gdb_s0*.h5 --out data/aev
    aevpipe train --shards data/aev --out data/runs/first
    aevpipe report data/runs/first
    """


@cli.command()
@click.argument("files", nargs=-1, required=True)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default="data/aev",
    show_default=True,
    help="Folder of the Zarr shard store.",
)
@aev_options
@click.option(
    "--split",
    default="0.8,0.1,0.1",
    show_default=True,
    help="Train, valid, test fractions.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Split seed.")
@click.option(
    "--split-by",
    type=click.Choice(["conformation", "molecule"]),
    default="conformation",
    show_default=True,
    help="molecule holds whole molecules out of training.",
)
@click.option(
    "--block-size",
    type=click.IntRange(min=1),
    default=None,
    help="Conformations per work unit [default: as many as --block-atoms allows].",
)
@click.option(
    "--block-atoms",
    type=click.IntRange(min=1),
    default=65536,
    show_default=True,
    help="Atoms per work unit: bounds featurize memory (~1.5 kB per atom).",
)
@click.option(
    "--chunk-rows",
    type=click.IntRange(min=16),
    default=4096,
    show_default=True,
    help="AEV rows per Zarr chunk.",
)
@device_option
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Run units on a local Dask cluster of this many processes.",
)
@click.option("--scheduler", help="Address of an existing Dask scheduler.")
@click.option(
    "--threads",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Threads running units in this process, torch's threads shared among "
    "them; 0: one per core (at most 4) on the CPU, one on a GPU.",
)
@click.option(
    "--direct-writes/--buffered-writes",
    default=False,
    show_default=True,
    help="Write chunk files of 256 KiB or more straight to the device (O_DIRECT, "
    "where the file system allows it, from I/O threads) or through the page cache. "
    "Direct pays on a VM whose freed memory goes back to the host, and for stores "
    "far larger than memory. In-process runs only.",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing store.")
@click.option(
    "--skip-invalid",
    is_flag=True,
    help="Skip bad molecule groups instead of stopping; count them.",
)
@progress_option
@clean_errors
def featurize(
    files,
    out,
    split,
    seed,
    split_by,
    block_size,
    block_atoms,
    chunk_rows,
    device,
    workers,
    scheduler,
    threads,
    direct_writes,
    overwrite,
    skip_invalid,
    progress,
    **aev,
):
    """Compute AEVs of ANI-1 HDF5 FILES once and store them as Zarr shards.

    \b
    Example:
      aevpipe featurize ani_gdb_s0*.h5 --out data/aev
      aevpipe featurize ani_gdb_s01.h5 --split-by molecule --workers 2
    """
    from aevpipe.config import FeaturizeSettings, SplitSettings
    from aevpipe.stages.featurize import featurize as run

    fractions = _floats(split)
    settings = FeaturizeSettings(
        aev=resolve_aev(**aev),
        split=SplitSettings(fractions=fractions, seed=seed, by=split_by),
        block_size=block_size,
        block_atoms=block_atoms,
        chunk_rows=chunk_rows,
        device=device,
        skip_invalid=skip_invalid,
        threads=threads,
        direct_writes=direct_writes,
    )
    try:
        summary = run(
            list(files),
            Path(out),
            settings,
            workers=workers,
            scheduler=scheduler,
            overwrite=overwrite,
            progress=progress,
        )
    except KeyboardInterrupt:
        raise Interrupted(
            f"the units finished so far are kept in {out}, which readers refuse "
            "until it is complete; run the same command to complete it"
        ) from None
    for line in summary.lines():
        click.echo(line)


def echo_errors(by_split: dict, indent: int) -> None:
    """One line per split: RMSE, MAE (kcal/mol) and the count."""
    for split in ("train", "valid", "test"):
        m = by_split[split]
        click.echo(
            f"{' ' * indent}{split:5s} RMSE {m['rmse_kcal_mol']:.3f}  MAE "
            f"{m['mae_kcal_mol']:.3f} kcal/mol  (n={m['n']:,})"
        )


def parse_bytes(text: str) -> int:
    """'1GiB', '512MiB', '2G', '1000000' -> bytes."""
    units = {
        "": 1,
        "K": 1e3,
        "M": 1e6,
        "G": 1e9,
        "KIB": 1 << 10,
        "MIB": 1 << 20,
        "GIB": 1 << 30,
        "KB": 1e3,
        "MB": 1e6,
        "GB": 1e9,
    }
    t = text.strip().upper().replace(" ", "")
    number = t.rstrip("KMGIB")
    try:
        return int(float(number) * units[t[len(number) :]])
    except (ValueError, KeyError):
        raise click.BadParameter(f"not a size: {text!r} (e.g. 1GiB, 512MiB)") from None


@cli.command()
@click.option(
    "--shards",
    type=click.Path(file_okay=False),
    default="data/aev",
    show_default=True,
    help="Shard store written by `aevpipe featurize`.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Run directory [default: data/runs/run-<date>-<time>].",
)
@click.option(
    "--preset",
    type=click.Choice(["ani1x", "seed"]),
    default="ani1x",
    show_default=True,
    help="ani1x: ANI-1x networks, AdamW, schedule; seed: the course project's recipe.",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help="TOML file with a [train] table overriding the preset.",
)
@click.option("--max-epochs", type=click.IntRange(min=1))
@click.option("--max-time", type=click.FloatRange(min=0), help="Seconds of training.")
@click.option("--batch-size", type=click.IntRange(min=1))
@click.option(
    "--lr", type=click.FloatRange(min=0, min_open=True), help="Initial learning rate."
)
@click.option(
    "--memory-limit",
    default="1GiB",
    show_default=True,
    help="AEV data the loader may hold in RAM.",
)
@device_option
@click.option("--seed", type=int, default=0, show_default=True)
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
    nproc,
    resume,
    overwrite,
    progress,
):
    """Train per-element networks straight from AEV shards.

    \b
    Example:
      aevpipe train --shards data/aev --out data/runs/s01 --max-time 600
      aevpipe train --shards data/aev --out data/runs/s01 --resume
      aevpipe train --shards data/aev --preset seed
    """
    import json
    import time

    from aevpipe.config import load_train_settings
    from aevpipe.stages.train import train as run

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
            f"{out} keeps its settings and every finished epoch; run the same "
            "command with --resume to continue from the last one"
        ) from None
    except OSError as exc:
        message = machine_error(exc)
        if message is None:
            raise
        raise UserError(
            f"{message}; {out} keeps every finished epoch: fix that and run the "
            "same command with --resume to continue"
        ) from None
    r = metrics["run"]
    click.echo(
        f"stopped after epoch {r['epochs']} ({r['stop_reason']}); "
        f"best epoch {r['best_epoch']}"
    )
    echo_errors(metrics, indent=2)
    click.echo(f"run written to {out}")


@cli.command()
@click.argument("run_dir", required=False, type=click.Path(file_okay=False))
@click.option(
    "--runs",
    "runs_root",
    default="data/runs",
    show_default=True,
    help="Where to look for the most recent run when RUN_DIR is omitted.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    help="Folder for report.md, report.json and PNGs [default: RUN_DIR/report].",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="What to print: the Markdown report or JSON.",
)
@device_option
@clean_errors
def report(run_dir, runs_root, out, fmt, device):
    """Errors per split, source file and molecule, with figures, for a run.

    \b
    Example:
      aevpipe report                       # the latest run under data/runs
      aevpipe report data/runs/s01 --format json
    """
    import json

    from aevpipe.stages.report import build_report, latest_run, markdown, write_report

    run = Path(run_dir) if run_dir else latest_run(Path(runs_root))
    result = build_report(run, device)
    written = write_report(result, Path(out) if out else run / "report")
    if fmt == "json":
        public = {k: v for k, v in result.items() if not k.startswith("_")}
        click.echo(json.dumps(public, indent=1))
    else:
        click.echo(markdown(result))
        click.echo("written: " + ", ".join(str(p) for p in written))


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.argument("files", nargs=-1, required=True)
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default="predictions.csv",
    show_default=True,
    help="CSV to write.",
)
@click.option(
    "--batch-atoms",
    type=click.IntRange(min=1),
    default=65536,
    show_default=True,
    help="Atoms per model call (bounds memory).",
)
@device_option
@clean_errors
def predict(run_dir, files, out, batch_atoms, device):
    """Energies of new geometries (ANI-1 HDF5 or XYZ FILES) from a trained run.

    \b
    Columns: source,group,index,formula,n_atoms,energy_pred_hartree
    and energy_ref_hartree when an input carries energies.
    Example:
      aevpipe predict data/runs/s01 ani_gdb_s02.h5 --out s02.csv
      aevpipe predict data/runs/s01 trajectory.xyz --out traj.csv
    """
    from aevpipe.stages.predict import predict as run

    n = run(Path(run_dir), list(files), Path(out), device, batch_atoms)
    click.echo(f"{n:,} energies written to {out}")


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default="model.pt",
    show_default=True,
    help="TorchANI model file to write.",
)
@clean_errors
def export(run_dir, out):
    """Write a run's best model as a TorchANI model (AEVs, networks, self energies).

    \b
    Load it with:  model = torch.load("model.pt", weights_only=False)
    energies:      model((atomic_numbers, coordinates)).energies   # Hartree
    ASE:           atoms.calc = model.ase()
    Example:
      aevpipe export data/runs/s01 --out s01.pt
    """
    from aevpipe.export import export as run

    run(Path(run_dir), Path(out))
    click.echo(f"TorchANI model written to {out}")


@cli.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default="data/synth",
    show_default=True,
    help="Folder for ani_gdb_s01.h5 ... ani_gdb_s04.h5.",
)
@click.option(
    "--preset",
    type=click.Choice(["demo", "ani1-s01-s04"]),
    default="demo",
    show_default=True,
    help="demo: 20,000 conformations; ani1-s01-s04: 864,898, the seed's scale.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--conformations",
    type=click.IntRange(min=1),
    help="Total conformations, overriding the preset's.",
)
@progress_option
@clean_errors
def synth(out, preset, seed, conformations, progress):
    """Write SYNTHETIC ANI-1-layout files (MMFF94 energies, not DFT), offline.

    \b
    Example:
      aevpipe synth --out data/synth --preset demo
      aevpipe synth --out data/synth-full --preset ani1-s01-s04
    """
    from tqdm import tqdm

    from aevpipe.synth import PRESETS, synthesize

    total = conformations or PRESETS[preset]
    with tqdm(
        total=total, unit="conf", unit_scale=True, disable=not progress, desc="synth"
    ) as bar:
        summary = synthesize(Path(out), preset, seed, conformations, bar.update)
    click.echo(
        f"SYNTHETIC data (MMFF94 energies plus element offsets, not DFT): "
        f"{summary['molecules']} molecules, {summary['conformations']:,} "
        f"conformations in {summary['seconds']:.1f} s"
    )
    for name, size in summary["files"].items():
        click.echo(f"  {Path(out) / name}  {size / 1e6:,.1f} MB")


@cli.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default="data/demo",
    show_default=True,
    help="Folder for the data, store, run and report.",
)
@click.option(
    "--max-time",
    type=click.FloatRange(min=1),
    default=90,
    show_default=True,
    help="Seconds of training.",
)
@progress_option
@clean_errors
def demo(out, max_time, progress):
    """synth (demo) -> featurize -> train -> report, offline, in a few minutes.

    \b
    Example:
      aevpipe demo
    """
    from aevpipe.config import FeaturizeSettings, load_train_settings
    from aevpipe.stages.featurize import featurize as run_featurize
    from aevpipe.stages.report import build_report, write_report
    from aevpipe.stages.train import train as run_train
    from aevpipe.synth import synthesize

    out = Path(out)
    click.echo("1/4 synth: SYNTHETIC ANI-1-layout data (MMFF94 energies, not DFT)")
    summary = synthesize(out / "synth", "demo", 0)
    files = [str(out / "synth" / name) for name in summary["files"]]
    click.echo(
        f"    {summary['molecules']} molecules, "
        f"{summary['conformations']:,} conformations"
    )
    click.echo("2/4 featurize")
    for line in run_featurize(
        files, out / "aev", FeaturizeSettings(), progress=progress
    ).lines():
        click.echo("    " + line)
    click.echo(f"3/4 train ({max_time:.0f} s)")
    run_train(
        out / "aev",
        out / "run",
        load_train_settings(max_time=max_time),
        overwrite=True,
        progress=progress,
        echo=click.echo,
    )
    click.echo("4/4 report")
    result = build_report(out / "run")
    written = write_report(result, out / "run" / "report")
    echo_errors(result["splits"], indent=4)
    click.echo(f"report: {written[0]} (figures beside it); data are synthetic")


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="aevpipe")
