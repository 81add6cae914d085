"""`aevpipe report`, `predict` and `export`: what a trained run gives."""

from __future__ import annotations

from pathlib import Path

import click

from aevpipe.cli.common import (
    clean_errors,
    device_option,
)


@click.command()
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

    from aevpipe.report_markdown import markdown
    from aevpipe.stages.report import build_report, latest_run, write_report

    run = Path(run_dir) if run_dir else latest_run(Path(runs_root))
    result = build_report(run, device)
    written = write_report(result, Path(out) if out else run / "report")
    if fmt == "json":
        public = {k: v for k, v in result.items() if not k.startswith("_")}
        click.echo(json.dumps(public, indent=1))
    else:
        click.echo(markdown(result))
        click.echo("written: " + ", ".join(str(p) for p in written))


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.argument("files", nargs=-1, required=True)
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default=None,
    help="CSV to write [default: RUN_DIR/predictions.csv].",
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
    Columns: source,group,index,formula,n_atoms,energy_pred_hartree,
    outside_fit (1 where the composition lies outside those the self
    energies were fitted on), and energy_ref_hartree when an input carries
    energies.
    Example:
      aevpipe predict data/runs/s01 ani_gdb_s02.h5 --out s02.csv
      aevpipe predict data/runs/s01 trajectory.xyz --out traj.csv
    """
    from aevpipe.stages.predict import predict as run

    out = out or str(Path(run_dir) / "predictions.csv")
    done = run(Path(run_dir), list(files), Path(out), device, batch_atoms)
    click.echo(f"{done.rows:,} energies written to {out}")
    if done.outside_fit:
        click.echo(
            f"warning: {done.outside_fit:,} of them have compositions outside "
            "those the self energies were fitted on (outside_fit = 1): their "
            "energies may be far off",
            err=True,
        )


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default=None,
    help="Model file to write [default: RUN_DIR/model.pt].",
)
@click.option(
    "-f",
    "--format",
    "fmt",
    type=click.Choice(["torchscript", "torchani"]),
    default="torchscript",
    show_default=True,
    help="torchscript: runs without aevpipe or TorchANI (Python, C++); "
    "torchani: TorchANI's own object (needs TorchANI to load).",
)
@clean_errors
def export(run_dir, out, fmt):
    """Write a run's best model (AEVs, networks, self energies) to one file.

    \b
    TorchScript:  model = torch.jit.load("model.pt")
    energies:     model((atomic_numbers, coordinates)).energies   # Hartree
    forces:       -autograd of the energies with respect to the coordinates
    torchani:     model = torch.load("model.pt", weights_only=False); model.ase()
    Example:
      aevpipe export data/runs/s01 --out s01.pt
    """
    from aevpipe.export import export as run

    out = out or str(Path(run_dir) / "model.pt")
    fit = run(Path(run_dir), Path(out), fmt)
    kind = "TorchScript" if fmt == "torchscript" else "TorchANI"
    click.echo(f"{kind} model written to {out}")
    if not fit.determined:
        click.echo(f"warning: {fit.summary()}", err=True)
