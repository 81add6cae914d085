"""Frozen settings of each stage, from presets, TOML files and flags.

An `AEVParams` travels with every shard store and every trained model, so that a
reader can refuse features made with other parameters.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aevpipe.elements import ATOMIC_NUMBER
from aevpipe.errors import SettingsError
from aevpipe.settings_file import (
    from_known_fields,
    is_number,
    naming,
    read_toml,
    toml_table,
)


def _linspace(start: float, stop: float, steps: int) -> tuple[float, ...]:
    # The same pure-Python formula TorchANI uses, so presets match it bit for bit.
    return tuple(start + ((stop - start) / steps) * j for j in range(steps))


def _sections(n: int) -> tuple[float, ...]:
    start = math.pi / n / 2
    return _linspace(start, math.pi + start, n)


@dataclass(frozen=True)
class AEVParams:
    """Parameters of ANI's radial and angular symmetry functions, and the elements.

    Names follow the ANI papers: Rcr/Rca cutoffs (Angstrom), EtaR/ShfR radial width
    and shifts, EtaA/Zeta/ShfA/ShfZ angular width, sharpness, radial shifts and
    angle sections (radians).
    """

    elements: tuple[str, ...]
    Rcr: float
    Rca: float
    EtaR: float
    ShfR: tuple[float, ...]
    EtaA: float
    Zeta: float
    ShfA: tuple[float, ...]
    ShfZ: tuple[float, ...]
    cutoff_fn: str = "cosine"

    def __post_init__(self) -> None:
        for name in ("elements", "ShfR", "ShfA", "ShfZ"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if not self.elements:
            raise SettingsError("AEV parameters need at least one element")
        if len(set(self.elements)) != len(self.elements):
            raise SettingsError(f"repeated element in {list(self.elements)}")
        unknown = [e for e in self.elements if e not in ATOMIC_NUMBER]
        if unknown:
            raise SettingsError(f"unknown element symbol(s): {unknown}")
        numbers = (self.Rcr, self.Rca, self.EtaR, self.EtaA, self.Zeta)
        numbers += self.ShfR + self.ShfA + self.ShfZ
        if not all(is_number(x) and math.isfinite(x) for x in numbers):
            raise SettingsError("AEV parameters must be finite numbers (no NaN or inf)")
        if not 0 < self.Rca < self.Rcr:
            raise SettingsError(
                f"need 0 < Rca < Rcr, got Rca={self.Rca} Rcr={self.Rcr}"
            )
        if not (self.ShfR and self.ShfA and self.ShfZ):
            raise SettingsError("ShfR, ShfA and ShfZ must not be empty")
        if self.cutoff_fn not in ("cosine", "smooth"):
            raise SettingsError(
                f"cutoff_fn must be 'cosine' or 'smooth': {self.cutoff_fn}"
            )

    @property
    def aev_length(self) -> int:
        """Values per atom: radial per element plus angular per element pair."""
        n = len(self.elements)
        radial = len(self.ShfR) * n
        angular = len(self.ShfA) * len(self.ShfZ) * n * (n + 1) // 2
        return radial + angular

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (tuples become lists)."""
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AEVParams:
        """Inverse of `to_dict`; unknown keys are an error."""
        return from_known_fields(cls, data, "AEV parameter")

    @classmethod
    def ani1x(cls) -> AEVParams:
        """ANI-1x parameters: H, C, N, O; 384 values per atom."""
        return cls(
            elements=("H", "C", "N", "O"),
            Rcr=5.2,
            Rca=3.5,
            EtaR=16.0,
            ShfR=_linspace(0.9, 5.2, 16),
            EtaA=8.0,
            Zeta=32.0,
            ShfA=_linspace(0.9, 3.5, 4),
            ShfZ=_sections(8),
        )

    @classmethod
    def ani2x(cls) -> AEVParams:
        """ANI-2x parameters: H, C, N, O, S, F, Cl; 1008 values per atom."""
        return cls(
            elements=("H", "C", "N", "O", "S", "F", "Cl"),
            Rcr=5.1,
            Rca=3.5,
            EtaR=19.7,
            ShfR=_linspace(0.8, 5.1, 16),
            EtaA=12.5,
            Zeta=14.1,
            ShfA=_linspace(0.8, 3.5, 8),
            ShfZ=_sections(4),
        )


# "seed": the course project used ANI-1x's AEVs (one --preset names both stages).
AEV_PRESETS = {
    "ani1x": AEVParams.ani1x,
    "ani2x": AEVParams.ani2x,
    "seed": AEVParams.ani1x,
}


def load_aev_params(preset: str = "ani1x", toml_path: Path | None = None) -> AEVParams:
    """AEV parameters from a preset, overridden by an `[aev]` table of a TOML file."""
    if preset not in AEV_PRESETS:
        raise SettingsError(
            f"unknown AEV preset {preset!r}; choose from {list(AEV_PRESETS)}"
        )
    params = AEV_PRESETS[preset]().to_dict()
    if toml_path is None:
        return AEVParams.from_dict(params)
    with naming(toml_path):
        params.update(toml_table(read_toml(toml_path), "aev"))
        return AEVParams.from_dict(params)


@dataclass(frozen=True)
class SplitSettings:
    """How conformations are assigned to train/valid/test, once, deterministically."""

    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0
    by: str = "conformation"  # or "molecule"

    def __post_init__(self) -> None:
        object.__setattr__(self, "fractions", tuple(float(f) for f in self.fractions))
        if len(self.fractions) != 3 or any(f < 0 for f in self.fractions):
            raise SettingsError(
                f"split needs three non-negative fractions: {self.fractions}"
            )
        if abs(sum(self.fractions) - 1.0) > 1e-6:
            raise SettingsError(f"split fractions must sum to 1: {self.fractions}")
        if self.by not in ("conformation", "molecule"):
            raise SettingsError(f"split-by must be conformation or molecule: {self.by}")

    def to_dict(self) -> dict[str, Any]:
        return {"fractions": list(self.fractions), "seed": self.seed, "by": self.by}


# How a store may hold its AEVs (aevpipe.store.format maps each to a Zarr dtype).
AEV_DTYPES = ("float32", "float16", "bfloat16")


@dataclass(frozen=True)
class FeaturizeSettings:
    """Everything `featurize` needs besides the input files and the output folder."""

    aev: AEVParams = field(default_factory=AEVParams.ani1x)
    split: SplitSettings = field(default_factory=SplitSettings)
    block_size: int | None = None  # conformations per work unit; None: by atoms
    block_atoms: int = 65536  # atoms per work unit (about 100 MB of AEVs)
    chunk_rows: int = 4096  # rows per Zarr chunk of the AEV arrays
    device: str = "auto"
    skip_invalid: bool = False
    threads: int = 0  # in-process unit threads; 0: one per core (at most 4) on CPU
    # How AEVs are stored, one of AEV_DTYPES: float16 holds them in under half the
    # bytes of float32 at no accuracy cost measured (benchmarks/RESULTS.md).
    aev_dtype: str = "float16"

    def __post_init__(self) -> None:
        if self.threads < 0:
            raise SettingsError(f"threads must be 0 (auto) or more: {self.threads}")
        if self.aev_dtype not in AEV_DTYPES:
            raise SettingsError(
                f"AEV dtype must be one of {', '.join(AEV_DTYPES)}: {self.aev_dtype}"
            )


SCHEDULES = ("auto", "cosine", "plateau", "none")

ANI1X_HIDDEN = {
    "H": (160, 128, 96),
    "C": (144, 112, 96),
    "N": (128, 112, 96),
    "O": (128, 112, 96),
    "S": (128, 112, 96),
    "F": (128, 112, 96),
    "Cl": (128, 112, 96),
}


@dataclass(frozen=True)
class TrainSettings:
    """Everything `train` needs besides the store and the run directory."""

    preset: str = "ani1x"
    hidden: dict[str, tuple[int, ...]] = field(default_factory=lambda: ANI1X_HIDDEN)
    activation: str = "celu"
    optimizer: str = "adamw"  # or "sgd"
    lr: float = 1e-3
    weight_decay: float = 1e-5
    momentum: float = 0.0  # SGD only
    batch_size: int = 256
    valid_batch_size: int = 4096
    max_epochs: int = 10000
    max_time: float | None = None  # seconds of training, resumes included
    # "auto": "cosine" when max_time is set, else "plateau". "cosine": the lr falls
    # from lr to min_lr along half a cosine of the time spent over max_time, so a
    # run reaches its schedule's end in the time given. "plateau": lr *= lr_factor
    # when validation stalls. "none": constant.
    schedule: str = "auto"
    lr_factor: float = 0.5
    lr_patience: int = 25  # epochs without a new best before the lr drops
    min_lr: float = 1e-6  # plateau: stop when the lr falls below this; cosine: its end
    # Stop after this many epochs without a new best; 0: never. A cosine schedule
    # runs to its end instead: its best epochs come last.
    early_stop: int = 200
    memory_limit: int = 1 << 30  # bytes of AEV data the loader may hold
    device: str = "auto"
    seed: int = 0
    # Members trained together on every batch, differing by initialisation; with
    # ensemble_folds, member i instead validates on fold i of the training split
    # and trains on the other folds (ANI's scheme).
    ensemble: int = 1
    ensemble_folds: bool = False

    def __post_init__(self) -> None:
        hidden = {k: tuple(int(x) for x in v) for k, v in dict(self.hidden).items()}
        object.__setattr__(self, "hidden", hidden)
        if self.optimizer not in ("adamw", "sgd"):
            raise SettingsError(f"optimizer must be adamw or sgd: {self.optimizer}")
        if self.schedule not in SCHEDULES:
            raise SettingsError(
                f"schedule must be one of {', '.join(SCHEDULES)}: {self.schedule}"
            )
        if self.schedule == "cosine" and not self.max_time:
            raise SettingsError("the cosine schedule needs a time limit (max_time)")
        if self.ensemble_folds and self.ensemble < 2:
            raise SettingsError(
                f"ensemble folds need an ensemble of 2 or more: {self.ensemble}"
            )
        for name in (
            "batch_size",
            "valid_batch_size",
            "max_epochs",
            "memory_limit",
            "ensemble",
        ):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name} must be positive: {getattr(self, name)}")
        if self.lr <= 0:
            raise SettingsError(f"learning rate must be positive: {self.lr}")
        if self.lr_schedule != "none" and self.lr < self.min_lr:
            why = (
                "the cosine would climb instead of falling"
                if self.lr_schedule == "cosine"
                else "the run would stop before its first epoch"
            )
            raise SettingsError(
                f"learning rate {self.lr} is below min_lr {self.min_lr}: {why}"
            )

    @property
    def lr_schedule(self) -> str:
        """The schedule this run follows ("auto" resolved)."""
        if self.schedule != "auto":
            return self.schedule
        return "cosine" if self.max_time else "plateau"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["hidden"] = {k: list(v) for k, v in self.hidden.items()}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainSettings:
        """Inverse of `to_dict`; unknown keys are an error."""
        return from_known_fields(cls, data, "train setting")


# TorchANI's ANINetworks.like_2x (ANI-2x's networks).
ANI2X_HIDDEN = {
    "H": (256, 192, 160),
    "C": (224, 192, 160),
    "N": (192, 160, 128),
    "O": (192, 160, 128),
    "S": (160, 128, 96),
    "F": (160, 128, 96),
    "Cl": (160, 128, 96),
}


TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    "ani1x": {},
    "ani2x": {"hidden": ANI2X_HIDDEN},
    # The course project's recipe: 4 fully connected layers per element, ReLU,
    # L2 weight 1e-5 (as SGD weight decay), SGD lr 1e-3, batch 600, 100 epochs,
    # no schedule, no early stop.
    "seed": {
        "activation": "relu",
        "optimizer": "sgd",
        "lr": 1e-3,
        "weight_decay": 1e-5,
        "batch_size": 600,
        "max_epochs": 100,
        "schedule": "none",
        "early_stop": 0,
    },
}


def load_train_settings(
    preset: str = "ani1x", toml_path: Path | None = None, **overrides: Any
) -> TrainSettings:
    """Train settings from a preset, a `[train]` table of a TOML file, then flags."""
    if preset not in TRAIN_PRESETS:
        raise SettingsError(
            f"unknown train preset {preset!r}; choose from {list(TRAIN_PRESETS)}"
        )
    data: dict[str, Any] = {"preset": preset, **TRAIN_PRESETS[preset]}
    data.update({k: v for k, v in overrides.items() if v is not None})
    if toml_path is None:
        return TrainSettings.from_dict(data)
    with naming(toml_path):
        from_file = toml_table(read_toml(toml_path), "train")
        overrides = {k: v for k, v in overrides.items() if v is not None}
        return TrainSettings.from_dict({**data, **from_file, **overrides})
