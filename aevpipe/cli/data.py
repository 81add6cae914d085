"""`aevpipe synth` and `demo`: synthetic ANI-1-shaped data, and the whole
pipeline on it."""

from __future__ import annotations

from pathlib import Path

import click

from aevpipe.cli.common import (
    clean_errors,
    echo_errors,
    progress_option,
)


@click.command()
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
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the conformations and energies drawn.",
)
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


@click.command()
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
