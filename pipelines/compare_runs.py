"""Print one Markdown table comparing runs (their report/report.json) with the seed
project's published numbers. Usage: python pipelines/compare_runs.py RUN_DIR..."""

import json
import sys
from pathlib import Path


def main() -> None:
    rows = []
    synthetic = False
    for run in sys.argv[1:]:
        report = json.loads((Path(run) / "report" / "report.json").read_text())
        synthetic |= report["synthetic"]
        s, t = report["splits"], report["training"]
        rows.append(
            f"| {Path(run).name} | {s['train']['rmse_kcal_mol']:.2f} | "
            f"{s['valid']['rmse_kcal_mol']:.2f} | {s['test']['rmse_kcal_mol']:.2f}"
            f" | {t['epochs']} | {t['train_seconds']:.0f} |"
        )
    print("# The seed experiment redone\n")
    if synthetic:
        print(
            "**Synthetic data** (MMFF94 energies, not DFT): compare recipes with each "
            "other, not with the seed's DFT numbers.\n"
        )
    print(
        "RMSE of whole-molecule energies, kcal/mol; per-run details in "
        "RUN/report/report.md.\n"
    )
    print("| run | train | valid | test | epochs | seconds |")
    print("|---|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    print(
        "| seed course project (report, Table 2), 100 epochs | 474 | 54 | n/a | 100 "
        "| n/a |"
    )


if __name__ == "__main__":
    main()
