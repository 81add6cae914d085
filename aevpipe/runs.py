"""The run directory: what a training run writes and how it is read back.

config.json      resolved settings, the store it trained on, AEV parameters
checkpoint.pt    everything to resume: model, optimiser, schedule, epoch, clock
best.pt          the best model by validation RMSE (each ensemble member's own),
                 self-contained
history.jsonl    one line per epoch
metrics.json     train/valid/test RMSE and MAE (kcal/mol) of the best model
"""

from __future__ import annotations

import io
import json
import math
import os
import zlib
from pathlib import Path
from typing import Any

import torch

from aevpipe.config import AEVParams
from aevpipe.errors import RunError
from aevpipe.folders import clear
from aevpipe.model import ElementEnsemble, ElementNetworks

CONFIG = "config.json"
CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"
HISTORY = "history.jsonl"
METRICS = "metrics.json"


def _write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically: a crash leaves the old file or the new
    one; a failed write (a full disk: an OSError) leaves the old one and no
    temporary file."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path, payload: Any) -> None:
    """Write JSON atomically (see `_write_atomic`); NaN (the error of an empty
    split) is written as null, so the file stays valid JSON."""
    _write_atomic(path, json.dumps(_finite(payload), indent=1).encode())


def _finite(value: Any) -> Any:
    """`value` with every non-finite float, at any depth, as None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def save_torch(path: Path, payload: Any) -> None:
    """torch.save atomically (see `_write_atomic`). Serialized in memory first
    (checkpoints are a few MB): writing to a file, torch reports a full disk as a
    RuntimeError from its zip writer, not as the OSError it is."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    # The CRC-32s `path` may have: the new file's, and, until it is replaced, the
    # old one's (a crash between the two renames leaves the old file).
    sums = _checksum_file(path)
    old = _known_checksums(sums)[:1] if path.is_file() else []
    _write_atomic(sums, json.dumps([f"{zlib.crc32(data):08x}", *old]).encode())
    _write_atomic(path, data)


def _checksum_file(path: Path) -> Path:
    """Where a run file's CRC-32 is kept: `best.pt` -> `best.pt.crc32`."""
    return path.with_name(path.name + ".crc32")


def read_json(path: Path) -> Any:
    """A run's JSON file; a RunError naming it when it cannot be read or parsed."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:  # ValueError: not UTF-8, not JSON
        raise RunError(f"{path}: cannot be read ({exc})") from None


def _known_checksums(sums: Path) -> list[str]:
    """The CRC-32s in `sums`; empty where there is none (runs written before)."""
    if not sums.is_file():
        return []
    known = read_json(sums)
    if not isinstance(known, list):
        raise RunError(f"{sums}: not a list of CRC-32s")
    return known


def read_history(run: Path) -> list[dict[str, Any]]:
    """Epoch records of a run, in order."""
    path = Path(run) / HISTORY
    if not path.is_file():
        return []
    try:
        text = path.read_text()
        lines = text.splitlines()
        if lines and not text.endswith("\n"):
            try:
                json.loads(lines[-1])
            except ValueError:  # torn by a crash or a full disk while appending
                lines.pop()
        records = [json.loads(line) for line in lines if line]
    except ValueError as exc:  # not UTF-8, or a line that is not JSON
        raise RunError(f"{path}: cannot be read ({exc})") from None
    if not all(isinstance(r, dict) and "epoch" in r for r in records):
        raise RunError(f"{path}: holds a line that is not an epoch record")
    return records


def truncate_history(run: Path, epochs: int) -> None:
    """Keep the first `epochs` records (those the checkpoint knows of)."""
    kept = read_history(run)[:epochs]
    data = "".join(json.dumps(r) + "\n" for r in kept)
    _write_atomic(Path(run) / HISTORY, data.encode())


def read_metrics(run: Path) -> dict[str, Any]:
    """The run's metrics.json; empty for a run stopped before writing it (it is
    written last), a RunError naming it when it cannot be read."""
    path = Path(run) / METRICS
    return read_json(path) if path.is_file() else {}


def append_history(run: Path, record: dict[str, Any]) -> None:
    with open(Path(run) / HISTORY, "a") as fh:
        fh.write(json.dumps(_finite(record)) + "\n")


def first_line(exc: BaseException) -> str:
    """An exception's message cut to its first line (torch's run to many)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else repr(exc)


def load_tensors(path: Path, device: torch.device) -> dict[str, Any]:
    """A checkpoint or model file: tensors and plain values only
    (`weights_only`), so a file from elsewhere cannot run code; a damaged one is
    a RunError naming it."""
    known = _known_checksums(_checksum_file(path))
    if known and path.is_file() and f"{zlib.crc32(path.read_bytes()):08x}" not in known:
        raise RunError(
            f"{path}: does not match its CRC-32 in {path.name}.crc32: damaged"
        )
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise RunError(f"{path}: missing") from None
    except Exception as exc:  # torch raises many kinds for damaged or foreign files
        raise RunError(
            f"{path}: damaged or not written by aevpipe ({first_line(exc)})"
        ) from None


def load_best(run: Path, device: torch.device) -> tuple[ElementEnsemble, dict]:
    """The best model of a run (an ensemble of one or more members, each at its
    own best epoch) and its payload (elements, AEV, self energies)."""
    if not (Path(run) / BEST).is_file():
        raise RunError(f"{run}: not a trained aevpipe run (no {BEST})")
    payload = load_tensors(Path(run) / BEST, device)
    try:
        aev = AEVParams.from_dict(payload["aev"])
        # "model": one member, as runs before ensembles wrote it.
        states = payload["members"] if "members" in payload else [payload["model"]]
        members = []
        for state in states:
            member = ElementNetworks(
                tuple(payload["elements"]),
                aev.aev_length,
                {k: tuple(v) for k, v in payload["hidden"].items()},
                payload["activation"],
            )
            member.load_state_dict(state)
            members.append(member)
        model = ElementEnsemble.of_members(members)
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as exc:
        raise RunError(
            f"{Path(run) / BEST}: not a model aevpipe wrote ({first_line(exc)})"
        ) from None
    return model.to(device), payload


# Settings a resumed run may change: how long, where, with how much memory.
RESUMABLE_CHANGES = ("max_epochs", "max_time", "device", "memory_limit")


def _recipe(settings: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in settings.items() if k not in RESUMABLE_CHANGES}


def prepare_run_dir(
    run: Path, identity: dict[str, Any], resume: bool, overwrite: bool
) -> bool:
    """Prepare the run directory; True when resuming from a checkpoint. With
    `overwrite`, an earlier run there is removed; a folder that is not a run is
    refused, never deleted."""
    config_path = run / CONFIG
    if overwrite and config_path.is_file():
        clear(run)
    if not config_path.is_file():
        if run.exists() and any(run.iterdir()):
            raise RunError(
                f"{run}: exists and is not an aevpipe run; choose another --out "
                "(--overwrite replaces only a run)"
            )
        if resume:
            raise RunError(f"{run}: nothing to resume (no {CONFIG})")
        return False
    if not resume:
        raise RunError(
            f"{run}: already holds a run; pass --resume to continue it "
            "or --overwrite to replace it"
        )
    old = read_json(config_path)
    try:
        same = (
            old["store"]["plan"] == identity["store"]["plan"],
            old["aev"] == identity["aev"] and old["elements"] == identity["elements"],
            _recipe(old["settings"]) == _recipe(identity["settings"]),
        )
    except (KeyError, TypeError) as exc:
        raise RunError(f"{config_path}: not a run's settings ({exc!r})") from None
    if not same[0]:
        raise RunError(
            f"{config_path}: the run was trained on another shard store "
            f"({old['store'].get('path')}); cannot resume on this one"
        )
    if not same[1]:
        raise RunError(
            f"{config_path}: AEV parameters or elements differ from the store's"
        )
    if not same[2]:
        raise RunError(
            f"{config_path}: settings differ from the run being resumed; resume "
            "with the same flags"
        )
    return (run / CHECKPOINT).is_file()
