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
    "-o",
    "--out",
    default=None,
    help="File to write, - for standard output [default: RUN_DIR/predictions.csv].",
)
@click.option(
    "-f",
    "--format",
    "fmt",
    type=click.Choice(["csv", "extxyz"]),
    default=None,
    help="Output format [default: extxyz for an --out ending .xyz or .extxyz, "
    "else csv].",
)
@click.option(
    "-u",
    "--units",
    type=click.Choice(["hartree", "kcal/mol", "eV"]),
    default="hartree",
    show_default=True,
    help="Energy unit (forces: this unit per Angstrom).",
)
@click.option("--forces", is_flag=True, help="Also write forces on every atom.")
@click.option(
    "--batch-atoms",
    type=click.IntRange(min=1),
    default=65536,
    show_default=True,
    help="Atoms per model call (bounds memory).",
)
@device_option
@clean_errors
def predict(run_dir, files, out, fmt, units, forces, batch_atoms, device):
    """Energies (and forces) of new geometries from a trained run.

    \b
    FILES: ANI-1 HDF5, XYZ (symbols or atomic numbers), or anything ase.io
    reads (extended XYZ, PDB, ...).
    CSV columns: source,group,index,formula,n_atoms,energy_pred_<unit> (an
    ensemble's members' mean, then energy_std_<unit>, their spread),
    outside_fit (1 where the composition lies outside those the self
    energies were fitted on), energy_ref_<unit> when an input carries
    energies, comment (XYZ and ASE inputs), forces_<unit>_per_angstrom with
    --forces (x y z of each atom). Extended XYZ: the same values per frame.
    Example:
      aevpipe predict data/runs/s01 ani_gdb_s02.h5 --out s02.csv
      aevpipe predict data/runs/s01 traj.xyz --forces -u kcal/mol -o traj.extxyz
      aevpipe predict data/runs/s01 water.pdb -o -
    """
    from aevpipe.stages.predict import predict as run

    out = out or str(Path(run_dir) / "predictions.csv")
    done = run(Path(run_dir), list(files), out, device, batch_atoms, forces, units, fmt)
    where = "standard output" if out == "-" else out
    # Status goes to standard error when the predictions go to standard output.
    click.echo(f"{done.rows:,} predictions written to {where}", err=out == "-")
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
