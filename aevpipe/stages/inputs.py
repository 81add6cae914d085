"""Featurize's inputs: every molecule group of every file scanned and checked before
anything is written, each file hashed, and an input given twice refused."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from tqdm import tqdm

from aevpipe.ani1 import ANI1File, MoleculeInfo
from aevpipe.config import FeaturizeSettings
from aevpipe.errors import InputError
from aevpipe.units import species_indices


def progress_bar(progress: bool, desc: str, **kwargs) -> tqdm:
    """A progress bar on stderr (none unless `progress`)."""
    return tqdm(desc=desc, dynamic_ncols=True, disable=not progress, **kwargs)


class Scan(NamedTuple):
    """What the scan found: the molecules to featurize, the bad ones skipped (their
    errors), and which files say they hold synthetic data."""

    molecules: list[MoleculeInfo]
    skipped: list[str]
    synthetic: dict[str, bool]


def scan_inputs(
    files: list[str], settings: FeaturizeSettings, progress: bool = False
) -> Scan:
    """Every molecule group of every file, its structure checked (and its values,
    when bad groups are to be skipped); bad ones raise or are skipped."""
    elements = settings.aev.elements
    good: list[MoleculeInfo] = []
    skipped: list[str] = []
    synthetic: dict[str, bool] = {}
    with progress_bar(progress, "scan", unit="group", delay=1) as bar:
        for path in files:
            with ANI1File(path) as reader:
                for group, info in reader.scan():
                    bar.update()
                    try:
                        if isinstance(info, InputError):
                            raise info
                        # The units' own check, before anything is written.
                        species_indices(np.array([info.symbols]), elements, path, group)
                        if settings.skip_invalid:
                            size = max(1, settings.block_atoms // info.n_atoms)
                            reader.check_finite(group, size)
                        good.append(info)
                    except InputError as exc:
                        if not settings.skip_invalid:
                            raise
                        skipped.append(str(exc))
                synthetic[path] = reader.is_synthetic()
    if not good:
        raise InputError(
            ", ".join(files), None, "no valid molecule groups to featurize"
        )
    return Scan(good, skipped, synthetic)


def sha256_file(path: str, on_read=None) -> str:
    """Hex sha256 of a file, read in 4 MiB blocks (`on_read(n)` after each)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 22):
            digest.update(block)
            if on_read is not None:
                on_read(len(block))
    return digest.hexdigest()


def hashed_sources(
    files: list[str], synthetic: dict[str, bool], progress: bool
) -> list[dict[str, Any]]:
    """The input files as the store's `sources` attribute, each with its sha256."""
    sizes = [Path(f).stat().st_size for f in files]
    with progress_bar(
        progress, "sha256", total=sum(sizes), unit="B", unit_scale=True, delay=1
    ) as bar:
        return [
            {
                "path": str(Path(f).resolve()),
                "name": Path(f).name,
                "sha256": sha256_file(f, bar.update),
                "size": size,
                "synthetic": synthetic[f],
            }
            for f, size in zip(files, sizes, strict=True)
        ]


def refuse_repeats(identities: list[str], files: list[str], what: str) -> None:
    """An InputError when two inputs are one (the same path, or the same content
    under two names): their conformations would land in training and test alike."""
    first: dict[str, str] = {}
    for identity, file in zip(identities, files, strict=True):
        if identity in first:
            earlier = first[identity]
            message = f"{what} {earlier}" if what.endswith("as") else what
            raise InputError(file, None, f"{message}: give each input once")
        first[identity] = file
