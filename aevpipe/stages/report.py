"""Report: a run's numbers as a chemist reads them, and figures.

RMSE and MAE (kcal/mol, whole-molecule energies) per split, per source file and per
molecule, from sums over conformations; learning curves, a parity plot and an error
histogram; a comparison with the seed project and, on s01, TorchANI's own recipe.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aevpipe import figures, keys, runs
from aevpipe.aev import resolve_device
from aevpipe.blocks import key_parts
from aevpipe.errors import RunError
from aevpipe.loader import ShardLoader
from aevpipe.objective import evaluate
from aevpipe.report_markdown import html, markdown
from aevpipe.runs import load_best
from aevpipe.sae import SelfEnergies
from aevpipe.store import ShardStore
from aevpipe.uncertainty import LargestSpread, rank_correlation, spread, spread_bins

S01_SHA256 = "5d463ae53c74dc6fcac49494bc3201e9a4a59fad086023184b270348428f4b34"
S02_SHA256 = "ac44c2ee90c9c1f1b0aadb2b97685fcdc0571e242ba97dfdfe1211cfe6e64084"
SEED_PROJECT = {
    "what": "seed course project (report, Table 2): ANI-1 subsets 1-4, 100 epochs",
    "train_rmse_kcal_mol": 474.0,
    "valid_rmse_kcal_mol": 54.0,
}
# TorchANI 2.9's recipe (simple_ani, AdamW 5e-4, data in RAM) as aevpipe's
# accuracy benchmark ran it: 600 s on 2 CPU cores, the same files and the same
# 80/10/10 split (seed 0, by conformation), keyed by the files' SHA-256.
TORCHANI_RECIPE = {
    frozenset({S01_SHA256}): {
        "what": "TorchANI 2.9's recipe, same data and split, 600 s on 2 CPU cores "
        "(aevpipe benchmark, 2026-12-06)",
        "valid_rmse_kcal_mol": 0.205,
        "test_rmse_kcal_mol": 0.213,
    },
    frozenset({S01_SHA256, S02_SHA256}): {
        "what": "TorchANI 2.9's recipe, same data and split, 600 s on 2 CPU cores "
        "(aevpipe benchmark, 2026-12-06)",
        "valid_rmse_kcal_mol": 0.914,
        "test_rmse_kcal_mol": 0.915,
    },
}
# The split those figures were measured on (not whatever the default split becomes).
RECIPE_SPLIT = {"fractions": [0.8, 0.1, 0.1], "seed": 0, "by": "conformation"}


@dataclass
class Sums:
    """Per-key sums of squared and absolute errors and counts (numpy)."""

    sq: np.ndarray
    ab: np.ndarray
    n: np.ndarray

    @classmethod
    def zeros(cls, size: int) -> Sums:
        return cls(np.zeros(size), np.zeros(size), np.zeros(size, np.int64))

    def add(self, key: np.ndarray, err: np.ndarray) -> None:
        np.add.at(self.sq, key, err**2)
        np.add.at(self.ab, key, np.abs(err))
        np.add.at(self.n, key, 1)

    def row(self, i: int) -> dict[str, float]:
        n = int(self.n[i])
        if n == 0:
            return {"rmse_kcal_mol": math.nan, "mae_kcal_mol": math.nan, "n": 0}
        return {
            "rmse_kcal_mol": math.sqrt(self.sq[i] / n),
            "mae_kcal_mol": self.ab[i] / n,
            "n": n,
        }


def latest_run(root: Path) -> Path:
    """The run under `root` whose files changed last."""
    candidates = [p.parent for p in Path(root).glob("*/" + runs.CONFIG)]
    if not candidates:
        raise RunError(f"no runs under {root}; pass a run directory")
    return max(candidates, key=lambda p: max(f.stat().st_mtime for f in p.iterdir()))


def build_report(run: Path, device: str = "auto") -> dict[str, Any]:
    """Every number of the report, and the test split's predictions for figures."""
    run = Path(run)
    if not (run / runs.BEST).is_file() or not (run / runs.CONFIG).is_file():
        raise RunError(f"{run}: not a finished aevpipe run (no {runs.BEST})")
    config = runs.read_json(run / runs.CONFIG)
    try:
        store_path, plan = Path(config["store"]["path"]), config["store"]["plan"]
    except (KeyError, TypeError) as exc:
        raise RunError(f"{run / runs.CONFIG}: not a run's settings ({exc!r})") from None
    store = ShardStore.open(store_path)
    if store.attrs[keys.ATTR_PLAN] != plan:
        raise RunError(f"{run}: its store {store.path} has changed since training")
    dev = resolve_device(device)
    model, payload = load_best(run, dev)
    sae = np.asarray(payload["self_energies"])
    fit = SelfEnergies.from_payload(payload)
    sae_t = torch.tensor(sae, dtype=torch.float64, device=dev)
    molecules = store.molecules
    files = sorted({m["file"] for m in molecules})
    file_of = np.array([files.index(m["file"]) for m in molecules])
    per_split, per_file, per_molecule = {}, {}, {}
    member_rmse = {}
    outside = np.zeros(len(molecules), bool)  # molecules outside the fit
    test = {"molecule": [], "reference": [], "predicted": [], "spread": []}
    largest = LargestSpread(len(molecules))
    for code, name in enumerate(keys.SPLIT_NAMES):
        by_mol = Sums.zeros(len(molecules))

        def collect(batch, energies, by_mol=by_mol, name=name, code=code):
            mol = batch.molecule.numpy()
            outside[mol[fit.outside(batch.counts.numpy())]] = True
            ref = batch.energy.numpy()
            pred = energies.mean(0).numpy()
            err = (pred - ref) * keys.HARTREE_TO_KCALMOL
            by_mol.add(mol, err)
            if model.members > 1:
                kcal = spread(energies.numpy()) * keys.HARTREE_TO_KCALMOL
                largest.add(mol, batch.key.numpy(), kcal, err, code)
                if name == "test":
                    test["spread"].append(kcal)
            if name == "test":
                test["molecule"].append(mol)
                test["reference"].append(ref)
                test["predicted"].append(pred)

        loader = ShardLoader(store, code, 4096, 1 << 30, sae, shuffle=False)
        errors = evaluate(model, loader, dev, sae_t, collect)
        per_split[name] = errors.ensemble.result()
        member_rmse[name] = [r["rmse_kcal_mol"] for r in errors.members.members()]
        by_file = Sums(
            np.bincount(file_of, by_mol.sq, len(files)),
            np.bincount(file_of, by_mol.ab, len(files)),
            np.bincount(file_of, by_mol.n, len(files)).astype(np.int64),
        )
        per_file[name] = {f: by_file.row(i) for i, f in enumerate(files)}
        per_molecule[name] = [
            {
                "molecule": i,
                "formula": m["formula"],
                "file": m["file"],
                "group": m["group"],
                "outside_fit": bool(outside[i]),
                **by_mol.row(i),
            }
            for i, m in enumerate(molecules)
            if by_mol.n[i]
        ]
        per_molecule[name].sort(key=lambda r: -r["rmse_kcal_mol"])
    arrays = {k: np.concatenate(v) if v else np.zeros(0) for k, v in test.items()}
    metrics = runs.read_metrics(run)
    comparison = {"seed_project": SEED_PROJECT}
    sources = frozenset(s["sha256"] for s in store.attrs[keys.ATTR_SOURCES])
    if sources in TORCHANI_RECIPE and store.attrs.get(keys.ATTR_SPLIT) == RECIPE_SPLIT:
        comparison["torchani_recipe"] = TORCHANI_RECIPE[sources]
    history = runs.read_history(run)
    first_below_1 = next(
        (h["elapsed_s"] for h in history if h["valid_rmse_kcal_mol"] < 1.0), None
    )
    ensemble = None
    if model.members > 1:
        ensemble = ensemble_summary(store, arrays, member_rmse, largest, model.members)
    return {
        "run": str(run),
        "store": str(store.path),
        "provenance": provenance(run, config, store, metrics.get("run", {})),
        "sources": [
            {
                "name": s["name"],
                "sha256": s["sha256"],
                "synthetic": bool(s.get("synthetic", False)),
            }
            for s in store.attrs[keys.ATTR_SOURCES]
        ],
        "synthetic": bool(store.attrs.get("synthetic", False)),
        "training": {
            **metrics.get("run", {}),
            "valid_below_1_kcal_mol_after_s": first_below_1,
        },
        "self_energies": {
            **fit.to_dict(),
            "summary": fit.summary(),
            "molecules_outside_fit": int(outside.sum()),
        },
        "splits": per_split,
        "files": per_file,
        "molecules": per_molecule,
        "comparison": comparison,
        "ensemble": ensemble,
        "_test": arrays,
        "_history": history,
    }


def provenance(
    run: Path, config: dict[str, Any], store: ShardStore, trained: dict[str, Any]
) -> dict[str, Any]:
    """What a reader needs to reproduce or trust the run: data, split, AEVs,
    networks and recipe, self energies' method, versions, date, time per epoch."""
    import datetime
    from importlib.metadata import PackageNotFoundError, version

    s = config.get("settings", {})
    try:
        aevpipe_version = version("aevpipe")
    except PackageNotFoundError:
        aevpipe_version = "unknown"
    best = run / runs.BEST
    epochs = trained.get("epochs") or 0
    return {
        "split": store.attrs.get(keys.ATTR_SPLIT),
        "aev": {
            "elements": list(store.elements),
            "length": store.aev.aev_length,
            "cutoffs_angstrom": [store.aev.Rcr, store.aev.Rca],
            "stored_as": store.aev_dtype,
        },
        "recipe": {
            k: s.get(k)
            for k in (
                "preset",
                "hidden",
                "activation",
                "optimizer",
                "lr",
                "batch_size",
                "schedule",
                "max_time",
                "ensemble",
                "ensemble_folds",
                "seed",
            )
        },
        "versions": {
            "aevpipe": aevpipe_version,
            "torch": torch.__version__,
            "torchani (featurize)": store.attrs.get(keys.ATTR_TORCHANI_VERSION),
        },
        "trained": datetime.datetime.fromtimestamp(best.stat().st_mtime)
        .astimezone()
        .isoformat(timespec="seconds"),
        "seconds_per_epoch": trained.get("train_seconds", 0) / epochs
        if epochs
        else None,
    }


def ensemble_summary(
    store: ShardStore,
    test: dict[str, np.ndarray],
    member_rmse: dict[str, list[float]],
    largest: LargestSpread,
    members: int,
) -> dict[str, Any]:
    """An ensemble's members' RMSE per split, how its spread on the test split
    ranks and bins its errors, and each molecule's conformation of largest spread
    (kcal/mol)."""
    abs_error = np.abs(test["predicted"] - test["reference"]) * keys.HARTREE_TO_KCALMOL
    seen = np.flatnonzero(np.isfinite(largest.spread))
    n_atoms, position = key_parts(largest.key[seen])
    rows = []
    for mol, a, pos in zip(seen, n_atoms, position, strict=True):
        m = store.molecules[mol]
        index = store.read(int(a), keys.INDEX, None, int(pos), int(pos) + 1)[0]
        rows.append(
            {
                "formula": m["formula"],
                "file": m["file"],
                "group": m["group"],
                "index": int(index),
                "split": keys.SPLIT_NAMES[largest.split[mol]],
                "spread_kcal_mol": float(largest.spread[mol]),
                "error_kcal_mol": float(largest.error[mol]),
            }
        )
    rows.sort(key=lambda r: -r["spread_kcal_mol"])
    return {
        "members": members,
        "member_rmse_kcal_mol": member_rmse,
        "test_rank_correlation": rank_correlation(test["spread"], abs_error),
        "test_spread_bins": spread_bins(test["spread"], abs_error),
        "largest_spread": rows,
    }


def write_report(report: dict[str, Any], out: Path) -> list[Path]:
    """report.md, report.json and the PNG figures into `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    history = report["_history"]
    if history:
        figures.learning_curves(history, out / "learning_curves.png")
        written.append(out / "learning_curves.png")
    test = report["_test"]
    if len(test["reference"]):
        mol = test["molecule"]
        lowest = np.full(mol.max() + 1, np.inf)
        np.minimum.at(lowest, mol, test["reference"])
        ref = (test["reference"] - lowest[mol]) * keys.HARTREE_TO_KCALMOL
        pred = (test["predicted"] - lowest[mol]) * keys.HARTREE_TO_KCALMOL
        formula = {r["molecule"]: r["formula"] for r in report["molecules"]["test"]}
        figures.parity(
            ref,
            pred,
            report["splits"]["test"]["rmse_kcal_mol"],
            out / "parity.png",
            labels=np.array([formula[m] for m in mol]),
        )
        figures.error_histogram(pred - ref, out / "error_histogram.png")
        figures.molecule_errors(report["molecules"]["test"], out / "molecules.png")
        written += [
            out / "parity.png",
            out / "error_histogram.png",
            out / "molecules.png",
        ]
    if report.get("ensemble") and len(test["spread"]):
        figures.spread_vs_error(
            test["spread"],
            np.abs(test["predicted"] - test["reference"]) * keys.HARTREE_TO_KCALMOL,
            report["ensemble"]["test_spread_bins"],
            out / "spread_vs_error.png",
        )
        written.append(out / "spread_vs_error.png")
    text = markdown(report)
    (out / "report.md").write_text(text)
    (out / "report.html").write_text(html(text, report["run"]))
    public = {k: v for k, v in report.items() if not k.startswith("_")}
    (out / "report.json").write_text(json.dumps(public, indent=1))
    return [out / "report.md", out / "report.html", out / "report.json", *written]
