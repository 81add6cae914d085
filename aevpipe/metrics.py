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
    """Sums of squared and absolute errors and the count, in kcal/mol: one set,
    or one per ensemble member (`members`)."""

    def __init__(self, device: torch.device | str = "cpu", members: int = 0):
        # [sum of squares, sum of absolutes, count] (per member: a row each);
        # float64 so large sums stay exact
        shape = (members, 3) if members else (3,)
        self.sums = torch.zeros(shape, dtype=torch.float64, device=device)

    def add(
        self,
        predicted_hartree: torch.Tensor,
        reference_hartree: torch.Tensor,
        mask: torch.Tensor | None = None,
    ) -> None:
        """Add a batch of predictions ((B,), or (K, B) per member) and references
        (B,) (Hartree); where `mask` is given, only the entries it holds true."""
        err = (predicted_hartree.double() - reference_hartree.double()).detach()
        err = err * HARTREE_TO_KCALMOL
        if mask is None:  # a fill, not a host copy
            count = err.new_full(err.shape[:-1], float(err.shape[-1]))
        else:
            err = err * mask
            count = mask.sum(-1, dtype=torch.float64)
        self.sums += torch.stack([err.square().sum(-1), err.abs().sum(-1), count], -1)

    def reduce(self) -> ErrorSums:
        """Sum over all training processes (no-op for one); returns self."""
        all_sum(self.sums)
        return self

    def result(self) -> dict[str, float]:
        """{'rmse_kcal_mol', 'mae_kcal_mol', 'n'}; NaN errors when n is 0. Of
        all members' errors pooled, where there are several."""
        return _result(*self.sums.reshape(-1, 3).sum(0).tolist())

    def members(self) -> list[dict[str, float]]:
        """`result()` of each member."""
        return [_result(*row) for row in self.sums.reshape(-1, 3).tolist()]


def _result(sq: float, ab: float, n: float) -> dict[str, float]:
    if n == 0:
        return {"rmse_kcal_mol": math.nan, "mae_kcal_mol": math.nan, "n": 0}
    return {"rmse_kcal_mol": math.sqrt(sq / n), "mae_kcal_mol": ab / n, "n": int(n)}
