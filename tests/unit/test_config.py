"""AEV parameter presets against TorchANI's own, and settings validation."""

import pytest
import torch
import torchani

from aevpipe.aev import build_aev_computer
from aevpipe.config import (
    AEVParams,
    SplitSettings,
    load_aev_params,
    load_train_settings,
)
from aevpipe.errors import SettingsError


@pytest.mark.parametrize(
    ("params", "reference"),
    [
        (AEVParams.ani1x(), torchani.AEVComputer.like_1x()),
        (AEVParams.ani2x(), torchani.AEVComputer.like_2x()),
    ],
)
def test_presets_match_torchani(params, reference):
    ours = build_aev_computer(params, torch.device("cpu"))
    assert ours.out_dim == reference.out_dim == params.aev_length
    for name, value in reference.state_dict().items():
        assert torch.equal(ours.state_dict()[name], value), name


def test_aev_lengths():
    assert AEVParams.ani1x().aev_length == 384
    assert AEVParams.ani2x().aev_length == 1008


def test_round_trip_and_toml(tmp_path):
    p = AEVParams.ani1x()
    assert AEVParams.from_dict(p.to_dict()) == p
    toml = tmp_path / "aev.toml"
    toml.write_text('[aev]\nRcr = 5.0\nelements = ["H", "C"]\n')
    q = load_aev_params("ani1x", toml)
    assert q.Rcr == 5.0 and q.elements == ("H", "C") and q.aev_length == 16 * 2 + 32 * 3


@pytest.mark.parametrize(
    "bad",
    [
        {"Rca": 6.0},
        {"elements": ("H", "H")},
        {"ShfR": ()},
        {"cutoff_fn": "x"},
        {"EtaR": float("nan")},
        {"ShfA": (0.9, float("inf"))},
        {"Rcr": float("inf")},
        {"elements": ("H", "Xx")},
        {"Rcr": "5.2"},
        {"ShfR": (0.9, "x")},
    ],
)
def test_bad_aev_params(bad):
    """SettingsError: one line in the CLI, and a ValueError for library callers."""
    with pytest.raises(SettingsError):
        AEVParams.from_dict({**AEVParams.ani1x().to_dict(), **bad})


def test_bad_toml(tmp_path):
    toml = tmp_path / "bad.toml"
    toml.write_text("[aev\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_aev_params("ani1x", toml)
    toml.write_text("[aev]\nbogus = 1\n")
    with pytest.raises(ValueError, match="unknown AEV parameter"):
        load_aev_params("ani1x", toml)


@pytest.mark.parametrize("fractions", [(0.5, 0.5), (0.8, 0.1, 0.2), (1.2, -0.1, -0.1)])
def test_bad_split(fractions):
    with pytest.raises(ValueError):
        SplitSettings(fractions=fractions)


@pytest.mark.parametrize(
    "bad,message",
    [
        ({"lr": "fast"}, "lr must be a number, got 'fast'"),
        ({"batch_size": 2.5}, "batch_size must be an integer"),
        ({"early_stop": True}, "early_stop must be an integer"),
        ({"hidden": [1, 2]}, "hidden must be a table"),
    ],
)
def test_train_settings_of_the_wrong_kind_are_one_error(tmp_path, bad, message):
    from aevpipe.config import load_train_settings

    with pytest.raises(SettingsError, match=message):
        load_train_settings(**bad)
    toml = tmp_path / "train.toml"
    key, value = next(iter(bad.items()))
    if isinstance(value, str):
        toml.write_text(f'[train]\n{key} = "{value}"\n')
        with pytest.raises(SettingsError, match=message):
            load_train_settings(toml_path=toml)


def test_the_schedule_follows_the_time_limit():
    from aevpipe.trainer import cosine_lr

    assert load_train_settings().lr_schedule == "plateau"
    timed = load_train_settings(max_time=100.0)
    assert timed.lr_schedule == "cosine"
    assert load_train_settings(max_time=100.0, schedule="plateau").lr_schedule == (
        "plateau"
    )
    assert cosine_lr(timed, 0.0) == pytest.approx(timed.lr)
    assert cosine_lr(timed, 50.0) == pytest.approx((timed.lr + timed.min_lr) / 2)
    assert cosine_lr(timed, 100.0) == pytest.approx(timed.min_lr)
    assert cosine_lr(timed, 250.0) == pytest.approx(timed.min_lr)  # a resume past it
    rates = [cosine_lr(timed, t) for t in range(0, 101, 10)]
    assert rates == sorted(rates, reverse=True)
    with pytest.raises(SettingsError, match="needs a time limit"):
        load_train_settings(schedule="cosine")
    with pytest.raises(SettingsError, match="schedule must be one of"):
        load_train_settings(schedule="linear")
