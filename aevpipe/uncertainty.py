"""An ensemble's spread against its errors: what tells a user whether the spread
can be trusted to find the conformations a model does not know.

The spread of a conformation is the unbiased standard deviation of its members'
energies (TorchANI's query-by-committee value before its division by sqrt(atoms)).
"""

from __future__ import annotations

import numpy as np


def spread(energies: np.ndarray) -> np.ndarray:
    """(K, n) members' energies -> (n,) their standard deviation (ddof 1)."""
    return energies.std(0, ddof=1)


def rank_correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation: Pearson's of the ranks (ties ranked by
    position; energies in floating point rarely tie). NaN for fewer than 2."""
    if len(x) < 2:
        return float("nan")
    rx = np.argsort(np.argsort(x)).astype(np.float64)
    ry = np.argsort(np.argsort(y)).astype(np.float64)
    return float(np.corrcoef(rx, ry)[0, 1])


def spread_bins(
    spreads: np.ndarray, abs_errors: np.ndarray, bins: int = 10
) -> list[dict[str, float]]:
    """Conformations in `bins` bins of equal count by spread: each bin's spread
    range, count, mean spread, and the MAE and RMSE of its errors (sums over
    its conformations, same units as the inputs)."""
    order = np.argsort(spreads)
    out = []
    for part in np.array_split(order, min(bins, len(order))):
        s, e = spreads[part], abs_errors[part]
        out.append(
            {
                "spread_from": float(s[0]),
                "spread_to": float(s[-1]),
                "n": len(part),
                "mean_spread": float(s.mean()),
                "mae": float(e.mean()),
                "rmse": float(np.sqrt((e**2).mean())),
            }
        )
    return out


class LargestSpread:
    """Per molecule, the conformation with the largest spread seen so far."""

    def __init__(self, n_molecules: int):
        self.spread = np.full(n_molecules, -np.inf)
        self.key = np.zeros(n_molecules, np.int64)
        self.error = np.zeros(n_molecules)
        self.split = np.zeros(n_molecules, np.int64)

    def add(
        self,
        molecule: np.ndarray,
        key: np.ndarray,
        spreads: np.ndarray,
        errors: np.ndarray,
        split: int,
    ) -> None:
        order = np.argsort(-spreads, kind="stable")
        # The first of each molecule in descending order is its largest.
        mols, first = np.unique(molecule[order], return_index=True)
        pick = order[first]
        better = spreads[pick] > self.spread[mols]
        mols, pick = mols[better], pick[better]
        self.spread[mols] = spreads[pick]
        self.key[mols] = key[pick]
        self.error[mols] = errors[pick]
        self.split[mols] = split
