"""PNG figures of a run: learning curves, parity plot, error histogram, test RMSE
per molecule, and an ensemble's spread against its errors (matplotlib)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def learning_curves(history: list[dict], path: Path) -> None:
    """Train and validation RMSE per epoch, log scale, with the learning rate."""
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    marker = "o" if len(epochs) < 3 else None  # a line needs two points
    for key, label in (
        ("train_rmse_kcal_mol", "train"),
        ("valid_rmse_kcal_mol", "validation"),
    ):
        ax.semilogy(epochs, [h[key] for h in history], marker=marker, label=label)
    ax.axhline(1.0, color="grey", lw=0.8, ls="--", label="1 kcal/mol")
    ax.set_xlabel("epoch")
    ax.set_ylabel("RMSE (kcal/mol)")
    ax.set_title("Learning curves")
    ax.grid(True, which="both", alpha=0.3)
    lr = ax.twinx()
    lr.semilogy(
        epochs,
        [h["lr"] for h in history],
        color="black",
        lw=0.8,
        alpha=0.4,
        marker=marker,
        label="learning rate (right axis)",
    )
    lr.set_ylabel("learning rate", color="dimgrey")
    lines = ax.get_legend_handles_labels()
    more = lr.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], loc="upper right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def parity(
    reference: np.ndarray,
    predicted: np.ndarray,
    rmse: float,
    path: Path,
    labels: np.ndarray | None = None,
) -> None:
    """Predicted against reference energies (kcal/mol above each molecule's
    minimum); one colour per label (a formula) when there are few."""
    fig, ax = plt.subplots(figsize=(5.5, 5.5), dpi=120)
    names = np.unique(labels) if labels is not None else []
    if 1 < len(names) <= 12:
        for name in names:
            pick = labels == name
            ax.scatter(
                reference[pick],
                predicted[pick],
                s=3,
                alpha=0.5,
                edgecolors="none",
                label=str(name),
            )
        ax.legend(loc="upper left", markerscale=4, fontsize="small")
    else:
        ax.scatter(reference, predicted, s=3, alpha=0.4, edgecolors="none")
    lo = float(min(reference.min(), predicted.min()))
    hi = float(max(reference.max(), predicted.max()))
    ax.plot([lo, hi], [lo, hi], color="black", lw=0.8)
    ax.set_xlabel("reference energy (kcal/mol, relative to molecule minimum)")
    ax.set_ylabel("predicted energy (kcal/mol, same zero)")
    ax.set_title(
        f"Test split: {len(reference):,} conformations, RMSE {rmse:.3f} kcal/mol"
    )
    ax.set_aspect("equal")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def error_histogram(errors: np.ndarray, path: Path) -> None:
    """Histogram of test errors (predicted minus reference, kcal/mol)."""
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    ax.hist(errors, bins=80, color="tab:blue", alpha=0.8)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel("error: predicted - reference (kcal/mol)")
    ax.set_ylabel("conformations")
    ax.set_title(
        f"Test errors: MAE {np.abs(errors).mean():.3f}, "
        f"max |error| {np.abs(errors).max():.2f} kcal/mol"
    )
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def spread_vs_error(
    spreads: np.ndarray, abs_errors: np.ndarray, bins: list[dict], path: Path
) -> None:
    """|error| of the ensemble mean against the members' spread (kcal/mol), each
    test conformation and the binned MAE with each bin's count."""
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=120)
    floor = 1e-4  # log axes: zeros drawn at the floor
    ax.scatter(
        np.maximum(spreads, floor),
        np.maximum(abs_errors, floor),
        s=2,
        alpha=0.2,
        color="tab:grey",
        edgecolors="none",
        label="conformations",
    )
    x = [max(b["mean_spread"], floor) for b in bins]
    y = [max(b["mae"], floor) for b in bins]
    ax.plot(x, y, "o-", color="tab:red", label="bin MAE (equal counts)")
    for xi, yi, b in zip(x, y, bins, strict=True):
        ax.annotate(
            f"{b['n']:,}",
            (xi, yi),
            fontsize="x-small",
            xytext=(3, 3),
            textcoords="offset points",
        )
    lo = max(floor, min(x + y))
    hi = max(x + y)
    ax.plot(
        [lo, hi], [lo, hi], color="black", lw=0.8, ls="--", label="|error| = spread"
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("spread of the members (kcal/mol)")
    ax.set_ylabel("|error| of their mean (kcal/mol)")
    ax.set_title("Test split: error against ensemble spread")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def molecule_errors(rows: list[dict], path: Path, most: int = 40) -> None:
    """Test RMSE per molecule, worst first (the `most` worst when there are more),
    one bar each, marked where the composition lies outside the self-energy fit."""
    shown = rows[:most]
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.22 * len(shown)), dpi=120)
    names = [r["formula"] + (" *" if r.get("outside_fit") else "") for r in shown]
    y = np.arange(len(shown))
    ax.barh(y, [r["rmse_kcal_mol"] for r in shown], color="tab:blue")
    ax.set_yticks(y, names, fontsize="small")
    ax.invert_yaxis()
    ax.axvline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_xlabel("test RMSE (kcal/mol); * outside the self-energy fit")
    more = f" (the {most} worst of {len(rows)})" if len(rows) > most else ""
    ax.set_title("Test split, per molecule" + more)
    ax.grid(True, axis="x", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
