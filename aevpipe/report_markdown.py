"""report.md and report.html: a report's numbers (from
`aevpipe.stages.report.build_report`) as a page a chemist reads on its own; the
HTML is the Markdown through Python-Markdown."""

from __future__ import annotations

import math
from html import escape
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
    if report.get("provenance"):
        lines += provenance_markdown(report["provenance"])
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
        "![test RMSE per molecule](molecules.png)",
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
    if "torchani_recipe" in c:
        ta = c["torchani_recipe"]
        lines.append(
            f"| {ta['what']} | n/a | {_fmt(ta['valid_rmse_kcal_mol'])} | "
            f"{_fmt(ta['test_rmse_kcal_mol'])} |"
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


def provenance_markdown(p: dict[str, Any]) -> list[str]:
    """The provenance table."""
    split = p.get("split") or {}
    recipe = p["recipe"]
    hidden = recipe.get("hidden") or {}
    networks = "; ".join(
        f"{e} {'-'.join(str(x) for x in hidden[e])}"
        for e in p["aev"]["elements"]
        if e in hidden
    )
    rows = [
        (
            "split",
            f"by {split.get('by')}, fractions {split.get('fractions')}, "
            f"seed {split.get('seed')}",
        ),
        (
            "AEVs",
            f"elements {', '.join(p['aev']['elements'])}; {p['aev']['length']} "
            f"values; cutoffs {p['aev']['cutoffs_angstrom']} Angstrom; stored as "
            f"{p['aev']['stored_as']}",
        ),
        (
            "recipe",
            f"preset {recipe.get('preset')}, {recipe.get('activation')}, "
            f"{recipe.get('optimizer')} lr {recipe.get('lr')}, batch "
            f"{recipe.get('batch_size')}, schedule {recipe.get('schedule')}, "
            f"max time {recipe.get('max_time') or 'none'} s, seed {recipe.get('seed')}",
        ),
        ("hidden layers", networks),
        (
            "ensemble",
            f"{recipe.get('ensemble') or 1} member(s)"
            + (", ANI's folds" if recipe.get("ensemble_folds") else ""),
        ),
        ("versions", ", ".join(f"{k} {v}" for k, v in p["versions"].items())),
        ("trained", f"{p['trained']}; {_fmt(p['seconds_per_epoch'])} s per epoch"),
    ]
    lines = ["", "## Provenance", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    return lines


HTML_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; max-width: 60em; margin: 2em auto; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: 0.2em 0.6em; }}
td {{ text-align: right; }} td:first-child {{ text-align: left; }}
img {{ max-width: 100%; }}
</style></head>
<body>
{body}
</body></html>
"""


def html(text: str, title: str) -> str:
    """report.md's text as a standalone HTML page (figures beside it)."""
    import markdown as md

    body = md.markdown(text, extensions=["tables"])
    # The title is a run's path, which may hold '&' or '<'.
    return HTML_PAGE.format(title=escape(f"aevpipe report: {title}"), body=body)
