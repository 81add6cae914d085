"""The `aevpipe` command line: thin click commands over the stages.

Errors a user can cause become one line on stderr and exit code 2; bugs keep their
traceback.
"""

from __future__ import annotations

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


def clean_errors(fn):
    """Turn library errors (bad input, bad settings) into `UserError`."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (AevpipeError, ValueError) as exc:
            raise UserError(str(exc)) from None

    return wrapper


def _floats(text: str | None) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated numbers: {text}") from None


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
    default=2048,
    show_default=True,
    help="Conformations per work unit (bounds memory).",
)
@click.option(
    "--chunk-rows",
    type=click.IntRange(min=16),
    default=4096,
    show_default=True,
    help="AEV rows per Zarr chunk.",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Run units on a local Dask cluster of this many processes.",
)
@click.option("--scheduler", help="Address of an existing Dask scheduler.")
@click.option("--overwrite", is_flag=True, help="Replace an existing store.")
@click.option(
    "--skip-invalid",
    is_flag=True,
    help="Skip bad molecule groups instead of stopping; count them.",
)
@click.option("--progress/--no-progress", default=True, show_default=True)
@clean_errors
def featurize(
    files,
    out,
    split,
    seed,
    split_by,
    block_size,
    chunk_rows,
    device,
    workers,
    scheduler,
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
        chunk_rows=chunk_rows,
        device=device,
        skip_invalid=skip_invalid,
    )
    summary = run(
        list(files),
        Path(out),
        settings,
        workers=workers,
        scheduler=scheduler,
        overwrite=overwrite,
        progress=progress,
    )
    for line in summary.lines():
        click.echo(line)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="aevpipe")
