"""report.md: a report's numbers (from `aevpipe.stages.report.build_report`) as
Markdown a chemist reads on its own."""

from __future__ import annotations

import math
from typing import Any


def _fmt(x: float) -> str:
    return (
        "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"
    )


def markdown(report: dict[str, Any]) -> str:
    """report.md text."""
    t = report["training"]
    lines = [f"# aevpipe report: {report['run']}", ""]
    if report["synthetic"]:
        lines += [
            "**Synthetic data** (marked SYNTHETIC below): energies from a classical "
            "force field, not DFT.",
            "",
        ]
    lines += [
        f"Store `{report['store']}` from "
        + ", ".join(
            s["name"] + (" (SYNTHETIC)" if s.get("synthetic") else " (real)")
            for s in report["sources"]
        )
        + ".",
        f"Trained {t.get('epochs')} epochs ({t.get('train_seconds', 0):.0f} s on "
        f"{t.get('device')}), best epoch {t.get('best_epoch')}, stopped: "
        f"{t.get('stop_reason')}. "
        + (
            "Validation RMSE first under 1 kcal/mol after "
            f"{t['valid_below_1_kcal_mol_after_s']:.1f} s."
            if t.get("valid_below_1_kcal_mol_after_s") is not None
            else "Validation RMSE never under 1 kcal/mol."
        ),
        "",
        report["self_energies"]["summary"] + ".",
    ]
    n_out = report["self_energies"]["molecules_outside_fit"]
    if n_out:
        lines += [
            "",
            f"**{n_out} molecule(s) have compositions outside those the self "
            "energies were fitted on** (marked * below): their energies rest on "
            "the reference atomic energies, not on training data.",
        ]
    lines += [
        "",
        "Errors of whole-molecule energies, kcal/mol, best model by validation.",
        "",
        "| split | RMSE | MAE | conformations |",
        "|---|---:|---:|---:|",
    ]
    for name, r in report["splits"].items():
        lines.append(
            f"| {name} | {_fmt(r['rmse_kcal_mol'])} | "
            f"{_fmt(r['mae_kcal_mol'])} | {r['n']:,} |"
        )
    lines += [
        "",
        "## Per source file",
        "",
        "| file | split | RMSE | MAE | n |",
        "|---|---|---:|---:|---:|",
    ]
    for name, files in report["files"].items():
        for f, r in files.items():
            if r["n"]:
                lines.append(
                    f"| {f} | {name} | {_fmt(r['rmse_kcal_mol'])} | "
                    f"{_fmt(r['mae_kcal_mol'])} | {r['n']:,} |"
                )
    mols = report["molecules"]["test"]
    lines += [
        "",
        f"## Per molecule, test split, worst first ({len(mols)} molecules)",
        "",
        "| formula | file | group | RMSE | MAE | n |",
        "|---|---|---|---:|---:|---:|",
    ]
    for r in mols:
        mark = " *" if r.get("outside_fit") else ""
        lines.append(
            f"| {r['formula']}{mark} | {r['file']} | {r['group']} | "
            f"{_fmt(r['rmse_kcal_mol'])} | {_fmt(r['mae_kcal_mol'])} | "
            f"{r['n']:,} |"
        )
    c = report["comparison"]
    seed = c["seed_project"]
    lines += [
        "",
        "## Compared with",
        "",
        "| | train RMSE | validation RMSE | test RMSE |",
        "|---|---:|---:|---:|",
        f"| this run | {_fmt(report['splits']['train']['rmse_kcal_mol'])} | "
        f"{_fmt(report['splits']['valid']['rmse_kcal_mol'])} | "
        f"{_fmt(report['splits']['test']['rmse_kcal_mol'])} |",
        f"| {seed['what']} | {seed['train_rmse_kcal_mol']:.0f} | "
        f"{seed['valid_rmse_kcal_mol']:.0f} | n/a |",
    ]
    if "torchani_s01" in c:
        ta = c["torchani_s01"]
        lines.append(
            f"| {ta['what']} | n/a | {ta['best_valid_rmse_kcal_mol']} "
            f"(under 1 after ~{ta['valid_below_1_after_s']} s) | n/a |"
        )
    if report.get("ensemble"):
        lines += ensemble_markdown(report["ensemble"], report["splits"])
    lines += [
        "",
        "![learning curves](learning_curves.png)",
        "",
        "![parity](parity.png)",
        "",
        "![errors](error_histogram.png)",
        "",
    ]
    return "\n".join(lines)


def ensemble_markdown(e: dict[str, Any], splits: dict[str, Any]) -> list[str]:
    """The report's ensemble section."""
    names = list(splits)
    lines = [
        "",
        f"## Ensemble of {e['members']} members",
        "",
        "RMSE (kcal/mol) of the members' mean and of each member.",
        "",
        "| model | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
        "| mean of members | "
        + " | ".join(_fmt(splits[n]["rmse_kcal_mol"]) for n in names)
        + " |",
    ]
    for k in range(e["members"]):
        rmse = [_fmt(e["member_rmse_kcal_mol"][n][k]) for n in names]
        lines.append(f"| member {k} | " + " | ".join(rmse) + " |")
    lines += [
        "",
        "Spread (standard deviation of the members' energies) against the error "
        "of their mean, test split, in bins of equal count: rank correlation "
        f"(Spearman) {_fmt(e['test_rank_correlation'])}.",
        "",
        "| spread from | to | conformations | mean spread | MAE | RMSE |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for b in e["test_spread_bins"]:
        lines.append(
            f"| {_fmt(b['spread_from'])} | {_fmt(b['spread_to'])} | {b['n']:,} | "
            f"{_fmt(b['mean_spread'])} | {_fmt(b['mae'])} | {_fmt(b['rmse'])} |"
        )
    lines += [
        "",
        "![spread against error](spread_vs_error.png)",
        "",
        "Per molecule, the conformation of largest spread (index in its source "
        "group; `aevpipe predict` gives every conformation's spread):",
        "",
        "| formula | file | group | index | split | spread | error |",
        "|---|---|---|---:|---|---:|---:|",
    ]
    for r in e["largest_spread"]:
        lines.append(
            f"| {r['formula']} | {r['file']} | {r['group']} | {r['index']} | "
            f"{r['split']} | {_fmt(r['spread_kcal_mol'])} | "
            f"{_fmt(r['error_kcal_mol'])} |"
        )
    return lines
