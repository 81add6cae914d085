"""ANI's radial and angular terms for the dense path, with TorchANI's own formulas.

`dense_aev` needs each pair's radial terms and each triple's angular terms. For
TorchANI's standard terms (`ANIRadial`, `ANIAngular`: ANI-1x and ANI-2x, with any
of its cutoff functions), `StandardTerms` evaluates TorchANI's formulas, step by
step as its modules do, with the computer's parameters and its own cutoff
function modules, with two differences:

- Exponents below `LOWEST_EXPONENT` are raised to it, and so are powers that would
  fall below e^LOWEST_EXPONENT; the results up to twice that are then set to 0.
  Torch's CPU `exp` (MKL's, here) takes 10 to 30 times longer for arguments whose
  results are subnormal or zero (below about -87.3) than for others
  (`benchmarks/RESULTS.md`, session 11), and radial terms of pairs far from a
  shift are mostly such: on s01, TorchANI's radial module took a fifth of the AEV
  time. An exponential or power then differs from TorchANI's by at most 3.3e-38,
  and where TorchANI's is 0 so is this one: the stored AEVs compress as well
  (left at e^-87 instead, s01's store grew by 9%).
- The angular terms come out feature-major, (features, triples): their product
  of radial and angular parts is then one broadcast over whole rows, where
  TorchANI's (triples, 4, 1) x (triples, 1, 8) product ran at a fifth of the speed.

Values agree with the modules' within a few units in the last place (tests check
them, and the dense rows against TorchANI's forward). Other term classes go
through the computer's own modules (`ModuleTerms`).
"""

from __future__ import annotations

import math
import os
import weakref

os.environ.setdefault("TORCHANI_NO_WARN_EXTENSIONS", "1")

import torch  # noqa: E402
from torchani.aev import ANIAngular, ANIRadial  # noqa: E402

# e^-87 = 1.6e-38, just above float32's smallest normal number (1.18e-38).
LOWEST_EXPONENT = -87.0
ZERO_UP_TO = 2 * math.exp(LOWEST_EXPONENT)


class ModuleTerms:
    """The computer's own term modules, angular terms transposed."""

    def __init__(self, computer) -> None:
        self.computer = computer

    def radial(self, distances: torch.Tensor) -> torch.Tensor:
        """(N,) distances -> (N, radial features)."""
        return self.computer.radial(distances)

    def angular(self, distances: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
        """(2, T) distances and (2, T, 3) vectors of each triple's two sides from
        its centre -> (angular features, T)."""
        return self.computer.angular(distances, vectors).t()


class StandardTerms:
    """TorchANI's `ANIRadial` and `ANIAngular`, with the computer's cutoff
    functions."""

    def __init__(self, computer) -> None:
        radial, angular = computer.radial, computer.angular
        self.radial_cutoff = float(radial.cutoff)
        self.radial_cutoff_fn = radial.cutoff_fn
        self.radial_eta = float(radial.eta)
        self.radial_shifts = radial.shifts.detach().view(1, -1).clone()
        self.angular_cutoff = float(angular.cutoff)
        self.angular_cutoff_fn = angular.cutoff_fn
        self.angular_eta = float(angular.eta)
        self.zeta = float(angular.zeta)
        self.angular_shifts = angular.shifts.detach().view(-1, 1, 1).clone()
        self.sections = angular.sections.detach().view(1, -1, 1).clone()
        # ((1 + cos) / 2) ** zeta below e^LOWEST_EXPONENT: the base below this.
        self.lowest_base = math.exp(LOWEST_EXPONENT / self.zeta)
        self.squarings = squarings_of(self.zeta)

    @staticmethod
    def takes(computer) -> bool:
        """Whether the computer's terms are exactly those this class evaluates."""
        radial, angular = computer.radial, computer.angular
        return (
            type(radial) is ANIRadial
            and type(angular) is ANIAngular
            and radial.eta.numel() == 1
            and angular.eta.numel() == 1
            and angular.zeta.numel() == 1
        )

    def radial(self, distances: torch.Tensor) -> torch.Tensor:
        # ANIRadial: 0.25 * exp(-eta * (d - shift) ** 2) * cutoff(d)
        factor = self.radial_cutoff_fn(distances, self.radial_cutoff) * 0.25
        terms = distances.view(-1, 1) - self.radial_shifts
        terms.square_().mul_(-self.radial_eta).clamp_(min=LOWEST_EXPONENT).exp_()
        return torch.threshold_(terms, ZERO_UP_TO, 0.0).mul_(factor.view(-1, 1))

    def angular(self, distances: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
        # ANIAngular: for shift s and section z, with the angle at the centre
        # acos(0.95 * cos), 2 * ((1 + cos(angle - z)) / 2) ** zeta
        # * exp(-eta * ((d1 + d2) / 2 - s) ** 2) * cutoff(d1) * cutoff(d2),
        # shift-major (feature s * sections + z).
        factor = self.angular_cutoff_fn(distances, self.angular_cutoff)
        factor = factor[0] * factor[1]
        cos = (vectors[0] * vectors[1]).sum(-1) / torch.clamp(
            distances[0] * distances[1], min=1e-10
        )
        angles = torch.acos(cos.mul_(0.95))
        by_angle = angles.view(1, 1, -1) - self.sections
        by_angle.cos_().add_(1).div_(2).clamp_(min=self.lowest_base)
        torch.threshold_(self._power(by_angle), ZERO_UP_TO, 0.0).mul_(2)
        by_distance = (distances[0] + distances[1]).div_(2).view(1, 1, -1)
        by_distance = by_distance - self.angular_shifts
        by_distance.square_().mul_(-self.angular_eta)
        by_distance.clamp_(min=LOWEST_EXPONENT).exp_()
        torch.threshold_(by_distance, ZERO_UP_TO, 0.0).mul_(factor)
        return (by_distance * by_angle).view(-1, len(angles))

    def _power(self, base: torch.Tensor) -> torch.Tensor:
        """`base` ** zeta, in place. A zeta of 2^k (ANI-1x: 32) is k squarings in
        float64, rounded once to float32: as close to the exact power as torch's
        float32 `pow` (6e-8 relative; a test checks both within 1.2e-7), in a third
        of its time
        (0.26 ms against 0.69 ms for s01 CH4's 393,000 bases on one thread). It
        took 12% of the dense path's time on s01's CH4 (benchmarks/RESULTS.md,
        session 14). Squarings in float32 would be faster still, but lose up to
        1.6e-6 relative."""
        if self.squarings is None:
            return base.pow_(self.zeta)
        wide = base.double()
        for _ in range(self.squarings):
            wide.square_()
        return base.copy_(wide)


def squarings_of(zeta: float) -> int | None:
    """k where zeta = 2^k, 1 <= k <= 10; else None."""
    k = round(math.log2(zeta)) if zeta > 0 else 0
    return k if 1 <= k <= 10 and 2.0**k == zeta else None


_TERMS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def terms_of(computer) -> StandardTerms | ModuleTerms:
    """The terms the dense path evaluates for `computer` (made once per computer)."""
    if computer not in _TERMS:
        kind = StandardTerms if StandardTerms.takes(computer) else ModuleTerms
        _TERMS[computer] = kind(computer)
    return _TERMS[computer]
