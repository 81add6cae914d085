"""Streaming error metrics: sums and counts, never averages of averages.

Errors are whole-conformation energies in kcal/mol. Sums stay on the device where
they are made (no host sync per batch) and can be reduced across ranks as sums.
"""

from __future__ import annotations

import math

import torch

from aevpipe.distributed import all_sum
from aevpipe.keys import HARTREE_TO_KCALMOL


class ErrorSums:
    """Sum of squared and absolute errors and the count, in kcal/mol."""

    def __init__(self, device: torch.device | str = "cpu"):
        # [sum of squares, sum of absolutes, count]; float64 so large sums stay exact
        self.sums = torch.zeros(3, dtype=torch.float64, device=device)

    def add(
        self, predicted_hartree: torch.Tensor, reference_hartree: torch.Tensor
    ) -> None:
        """Add a batch of predictions and references (Hartree)."""
        err = (predicted_hartree.double() - reference_hartree.double()).detach()
        err = err * HARTREE_TO_KCALMOL
        self.sums += torch.stack(
            [
                err.square().sum(),
                err.abs().sum(),
                err.new_full((), float(err.numel())),  # a fill, not a host copy
            ]
        )

    def reduce(self) -> ErrorSums:
        """Sum over all training processes (no-op for one); returns self."""
        all_sum(self.sums)
        return self

    def result(self) -> dict[str, float]:
        """{'rmse_kcal_mol', 'mae_kcal_mol', 'n'}; NaN errors when n is 0."""
        sq, ab, n = self.sums.tolist()
        if n == 0:
            return {"rmse_kcal_mol": math.nan, "mae_kcal_mol": math.nan, "n": 0}
        return {"rmse_kcal_mol": math.sqrt(sq / n), "mae_kcal_mol": ab / n, "n": int(n)}
