"""`aevpipe featurize` and `verify`: making an AEV shard store, and checking one."""

from __future__ import annotations

from pathlib import Path

import click

from aevpipe.cli.common import (
    Interrupted,
    SectionedCommand,
    UserError,
    aev_options,
    clean_errors,
    device_option,
    floats,
    progress_option,
    resolve_aev,
    section,
)
from aevpipe.config import AEV_DTYPES, FeaturizeSettings


@click.command(cls=SectionedCommand)
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
    cls=section("Tuning"),
    type=click.IntRange(min=1),
    default=None,
    help="Conformations per work unit [default: as many as --block-atoms allows].",
)
@click.option(
    "--block-atoms",
    cls=section("Tuning"),
    type=click.IntRange(min=1),
    default=65536,
    show_default=True,
    help="Atoms per work unit: bounds featurize memory (~1.5 kB per atom).",
)
@click.option(
    "--dtype",
    "aev_dtype",
    type=click.Choice(AEV_DTYPES),
    default=FeaturizeSettings().aev_dtype,
    show_default=True,
    help="How AEVs are stored; training reads them as float32.",
)
@click.option(
    "--chunk-rows",
    cls=section("Tuning"),
    type=click.IntRange(min=16),
    default=4096,
    show_default=True,
    help="AEV rows per Zarr chunk.",
)
@device_option
@click.option(
    "--workers",
    cls=section("Tuning"),
    type=click.IntRange(min=1),
    default=None,
    help="Run units on a local Dask cluster of this many processes.",
)
@click.option(
    "--scheduler", cls=section("Tuning"), help="Address of an existing Dask scheduler."
)
@click.option(
    "--threads",
    cls=section("Tuning"),
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Threads running units in this process, torch's threads shared among "
    "them; 0: one per core (at most 4) on the CPU, one on a GPU.",
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
    aev_dtype,
    chunk_rows,
    device,
    workers,
    scheduler,
    threads,
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
    from aevpipe.config import SplitSettings
    from aevpipe.stages.featurize import featurize as run

    fractions = floats(split)
    settings = FeaturizeSettings(
        aev=resolve_aev(**aev),
        split=SplitSettings(fractions=fractions, seed=seed, by=split_by),
        block_size=block_size,
        block_atoms=block_atoms,
        chunk_rows=chunk_rows,
        device=device,
        skip_invalid=skip_invalid,
        threads=threads,
        aev_dtype=aev_dtype,
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


@click.command()
@click.argument("store", type=click.Path(file_okay=False))
@clean_errors
def verify(store):
    """Check every chunk file of an AEV shard STORE against its manifest.

    Names each missing, extra or damaged file (exit code 2), or says the store is
    whole (exit code 0).

    \b
    Example:
      aevpipe verify data/aev
    """
    from aevpipe.store import verify as check

    problems = check(Path(store))
    if problems:
        for line in problems:
            click.echo(f"{store}: {line}", err=True)
        raise UserError(f"{store}: {len(problems)} damaged file(s) or array(s)")
    click.echo(f"{store}: whole (every chunk file matches the manifest)")
