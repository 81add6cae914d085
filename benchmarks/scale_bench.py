"""How aevpipe and TorchANI's recipe grow with data size, up to the seed's scale.

On the ANI-1 files `ani_gdb_s0*.h5` in `--data` (the synthetic s01-s04 of `aevpipe
synth --preset ani1-s01-s04`, made there when it has none; or the real ones), at
each size (conformations; `all` is every one) the same molecules are kept and each
molecule's first share of conformations taken, so only the amount of data changes.
Every step runs in its own process and reports its wall time and peak resident
memory (`getrusage`; the data loader's worker processes added for TorchANI):

- aevpipe: `featurize` (time, store size on disk) and `train` for `--epochs` epochs
  (epoch time and conformations/s of the last epoch, validation included);
- TorchANI 2.9's recipe as shipped (examples/training.py): `create_batched_dataset`
  (time, size on disk), then `--epochs` epochs of `simple_ani` read through a
  DataLoader with 2 workers (last epoch's time and conformations/s).

Both train on 80% of the data at batch 256. Writes a JSON file and a PNG plot.

    python -m benchmarks.scale_bench --data data/synth-full --sizes 10000,100000,all
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py

from benchmarks.common import (
    machine,
    peak_rss_mib,
    run_child,
    train_epochs,
    write_json,
)

ME = ["-m", "benchmarks.scale_bench", "--child"]
PATTERN = "ani_gdb_s0*.h5"


def count(files: list[Path]) -> int:
    """Conformations in ANI-1-layout files."""
    n = 0
    for path in files:
        with h5py.File(path, "r") as f:

            def add(name, item):
                nonlocal n
                if isinstance(item, h5py.Group) and "energies" in item:
                    n += item["energies"].shape[0]

            f.visititems(add)
    return n


def subsample(files: list[Path], fraction: float, out: Path) -> list[Path]:
    """Copies of `files` keeping each molecule group's first ceil(fraction * C)
    conformations (all other datasets of a group are dropped but species)."""
    out.mkdir(parents=True, exist_ok=True)
    made = []
    for path in files:
        dst = out / path.name
        with h5py.File(path, "r") as fin, h5py.File(dst, "w") as fout:
            for key, value in fin.attrs.items():
                fout.attrs[key] = value

            def copy(name, item, fout=fout):
                if not (isinstance(item, h5py.Group) and "energies" in item):
                    return
                c = item["energies"].shape[0]
                keep = max(1, math.ceil(fraction * c))
                g = fout.create_group(name)
                g["species"] = item["species"][()]
                g["coordinates"] = item["coordinates"][:keep]
                g["energies"] = item["energies"][:keep]

            fin.visititems(copy)
        made.append(dst)
    return made


def du(path: Path) -> int:
    """Bytes of the files under `path`."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def child_peak_mib() -> float:
    """Peak RSS of this process plus the largest finished child (DataLoader workers)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return peak_rss_mib() + children


def child_featurize(store: str, *files: str) -> dict:
    from aevpipe.config import FeaturizeSettings
    from aevpipe.stages.featurize import featurize

    t0 = time.perf_counter()
    s = featurize(list(files), Path(store), FeaturizeSettings(), progress=False)
    return {
        "seconds": time.perf_counter() - t0,
        "conformations": s.conformations,
        "atoms": s.atoms,
        "disk_bytes": du(Path(store)),
        "peak_rss_mib": peak_rss_mib(),
    }


def child_train(store: str, run: str, epochs: str) -> dict:
    n_train, history, seconds = train_epochs(store, run, int(epochs))
    last = history[-1]
    return {
        "seconds": seconds,
        "n_train": n_train,
        "epoch_seconds": last["epoch_seconds"],
        "conf_per_s": n_train / last["epoch_seconds"],
        "valid_rmse_kcal_mol": last["valid_rmse_kcal_mol"],
        "peak_rss_mib": peak_rss_mib(),
    }


def child_torchani_build(dest: str, *files: str) -> dict:
    from torchani.datasets import ANIDataset, create_batched_dataset

    t0 = time.perf_counter()
    create_batched_dataset(
        ANIDataset(list(files)),
        dest_path=dest,
        batch_size=256,
        splits={"training": 0.8, "validation": 0.2},
        divs_seed=0,
        batch_seed=0,
        verbose=False,
    )
    return {
        "seconds": time.perf_counter() - t0,
        "disk_bytes": du(Path(dest)),
        "peak_rss_mib": child_peak_mib(),
    }


def child_torchani_train(dest: str, epochs: str) -> dict:
    from benchmarks.torchani_baseline import train_batched

    result = train_batched(dest, epochs=int(epochs))
    last = result["history"][-1]
    return {
        "n_train": result["n_train"],
        "epoch_seconds": last["epoch_seconds"],
        "conf_per_s": result["n_train"] / last["epoch_seconds"],
        "valid_rmse_kcal_mol": last["valid_rmse_kcal_mol"],
        "peak_rss_mib": child_peak_mib(),
    }


CHILDREN = {
    "featurize": child_featurize,
    "train": child_train,
    "torchani_build": child_torchani_build,
    "torchani_train": child_torchani_train,
}


def ensure_data(data: Path, pattern: str = PATTERN) -> list[Path]:
    """The ANI-1 subset files in `data` (`pattern`, ani_gdb_s0*.h5 by default);
    when it has none, the synthetic s01-s04 made there with `aevpipe synth`."""
    files = sorted(data.glob(pattern))
    if not files:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "aevpipe",
                "synth",
                "--out",
                str(data),
                "--preset",
                "ani1-s01-s04",
            ],
            check=True,
        )
        files = sorted(data.glob(pattern))
    return files


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = [r["conformations"] for r in rows]
    panels = [
        ("preprocessing time (s)", "featurize_s", "torchani_build_s"),
        ("training epoch time (s)", "epoch_s", "torchani_epoch_s"),
        ("size on disk (MB)", "store_mb", "torchani_disk_mb"),
        ("peak memory, training (MiB)", "train_peak_mib", "torchani_train_peak_mib"),
    ]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.8))
    for ax, (title, ours, theirs) in zip(axes, panels, strict=True):
        ax.plot(n, [r[ours] for r in rows], "o-", label="aevpipe")
        ax.plot(n, [r[theirs] for r in rows], "s--", label="TorchANI recipe")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("conformations")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend()
    fig.suptitle(rows[0]["data"], fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="data/synth-full", help="s01-s04 files")
    ap.add_argument(
        "--pattern",
        default=PATTERN,
        help="which files of --data (TorchANI reads files with the same datasets "
        "only: the real s02 carries more than s01)",
    )
    ap.add_argument("--sizes", default="10000,100000,all")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--plot", default="benchmarks/scale.png", help="'' for none")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, *rest = args.child
        print(json.dumps(CHILDREN[kind](*rest)))
        return
    files = ensure_data(Path(args.data), args.pattern)
    with h5py.File(files[0], "r") as f:
        synthetic = bool(f.attrs.get("synthetic", False))
    total = count(files)
    subsets = "-".join(dict.fromkeys((files[0].stem[-3:], files[-1].stem[-3:])))
    label = ("SYNTHETIC " if synthetic else "") + f"ANI-1 {subsets} ({total:,} conf.)"
    rows = []
    for size in args.sizes.split(","):
        wanted = total if size == "all" else min(total, int(size))
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            sub = files
            if wanted < total:
                sub = subsample(files, wanted / total, tmp / "data")
            names = [str(f) for f in sub]
            store, run, batched = tmp / "aev", tmp / "run", tmp / "batched"
            print(f"{count(sub):,} conformations ...", flush=True)
            feat = run_child([*ME, "featurize", str(store), *names])
            fit = run_child([*ME, "train", str(store), str(run), str(args.epochs)])
            build = run_child([*ME, "torchani_build", str(batched), *names])
            theirs = run_child([*ME, "torchani_train", str(batched), str(args.epochs)])
            row = {
                "data": label,
                "conformations": feat["conformations"],
                "atoms": feat["atoms"],
                "featurize_s": feat["seconds"],
                "featurize_conf_per_s": feat["conformations"] / feat["seconds"],
                "store_mb": feat["disk_bytes"] / 1e6,
                "featurize_peak_mib": feat["peak_rss_mib"],
                "epoch_s": fit["epoch_seconds"],
                "train_conf_per_s": fit["conf_per_s"],
                "n_train": fit["n_train"],
                "valid_rmse_kcal_mol": fit["valid_rmse_kcal_mol"],
                "train_peak_mib": fit["peak_rss_mib"],
                "torchani_build_s": build["seconds"],
                "torchani_disk_mb": build["disk_bytes"] / 1e6,
                "torchani_build_peak_mib": build["peak_rss_mib"],
                "torchani_epoch_s": theirs["epoch_seconds"],
                "torchani_conf_per_s": theirs["conf_per_s"],
                "torchani_n_train": theirs["n_train"],
                "torchani_valid_rmse_kcal_mol": theirs["valid_rmse_kcal_mol"],
                "torchani_train_peak_mib": theirs["peak_rss_mib"],
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"machine: {machine()}; {label}; batch 256, epoch {args.epochs} shown")
    head = (
        f"{'conf':>9s} | {'featurize s':>11s} {'epoch s':>8s} {'conf/s':>7s} "
        f"{'disk MB':>8s} {'peak MiB f/t':>13s} | {'build s':>8s} {'epoch s':>8s} "
        f"{'conf/s':>7s} {'disk MB':>8s} {'peak MiB b/t':>13s}"
    )
    print(f"{'':9s} | {'aevpipe':^52s} | TorchANI recipe as shipped")
    print(head)
    for r in rows:
        print(
            f"{r['conformations']:9,d} | {r['featurize_s']:11.1f} {r['epoch_s']:8.1f} "
            f"{r['train_conf_per_s']:7,.0f} {r['store_mb']:8.1f} "
            f"{r['featurize_peak_mib']:6.0f}/{r['train_peak_mib']:<6.0f} | "
            f"{r['torchani_build_s']:8.1f} {r['torchani_epoch_s']:8.1f} "
            f"{r['torchani_conf_per_s']:7,.0f} {r['torchani_disk_mb']:8.1f} "
            f"{r['torchani_build_peak_mib']:6.0f}/{r['torchani_train_peak_mib']:<6.0f}"
        )
    if args.plot:
        plot(rows, Path(args.plot))
        print(f"plot: {args.plot}")
    write_json(args.json, {"machine": machine(), "data": label, "rows": rows})


if __name__ == "__main__":
    main()
