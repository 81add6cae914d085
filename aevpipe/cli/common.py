"""What the commands share: clean errors, shared options, parsing helpers.

Errors a user can cause (aevpipe's own errors, and the machine's: a full disk, no
permission) become one line on stderr and exit code 2; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import errno
import functools
from dataclasses import replace
from pathlib import Path

import click

from aevpipe.errors import AevpipeError


class UserError(click.ClickException):
    """A clean one-line error with exit code 2."""

    exit_code = 2

    def show(self, file=None) -> None:
        click.echo(f"aevpipe: error: {self.format_message()}", err=True)


class Interrupted(click.ClickException):
    """Ctrl-C: one line saying what was kept and how to go on; exit code 130 (the
    shell's code for a run stopped by SIGINT), not click's bare "Aborted!"."""

    exit_code = 130

    def show(self, file=None) -> None:
        click.echo(f"aevpipe: interrupted: {self.format_message()}", err=True)


# OSErrors that come from the machine, not from a bug: a full disk or quota, no
# permission, a read-only file system.
MACHINE_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS}
)


def machine_error(exc: BaseException) -> str | None:
    """'PATH: reason' for an OSError caused by the machine (MACHINE_ERRNOS), else
    None."""
    if not isinstance(exc, OSError) or exc.errno not in MACHINE_ERRNOS:
        return None
    reason = exc.strerror or str(exc)
    return f"{exc.filename}: {reason}" if exc.filename else reason


def clean_errors(fn):
    """Turn library errors (bad input, bad settings) and the machine's (a full
    disk, no permission) into `UserError`."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except AevpipeError as exc:
            raise UserError(str(exc)) from None
        except OSError as exc:
            message = machine_error(exc)
            if message is None:
                raise
            raise UserError(message) from None

    return wrapper


class SectionedCommand(click.Command):
    """A command whose help lists its everyday options first, then each option
    made with `section(name)` under that name's heading."""

    def format_options(self, ctx, formatter) -> None:
        sections: dict[str, list[tuple[str, str]]] = {"Options": []}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is not None and isinstance(param, click.Option):
                name = getattr(param, "section", "Options")
                sections.setdefault(name, []).append(record)
        for name, records in sections.items():
            with formatter.section(name):
                formatter.write_dl(records)


_SECTIONS: dict[str, type[click.Option]] = {}


def section(name: str) -> type[click.Option]:
    """An option class whose options `SectionedCommand` lists under `name`."""
    if name not in _SECTIONS:
        _SECTIONS[name] = type("SectionOption", (click.Option,), {"section": name})
    return _SECTIONS[name]


def floats(text: str | None) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated numbers: {text}") from None


device_option = click.option(
    "--device",
    default="auto",
    show_default=True,
    help="auto (CUDA when torch sees it), cpu or cuda.",
)
progress_option = click.option(
    "--progress/--no-progress",
    default=True,
    show_default=True,
    help="Show a progress bar.",
)

AEV_FLAGS = ("Rcr", "Rca", "EtaR", "ShfR", "EtaA", "Zeta", "ShfA", "ShfZ")


def aev_options(fn):
    """Options that set the AEV parameters: a preset, a TOML file, single flags."""
    opts = [
        click.option(
            "--preset",
            "--aev-preset",
            "aev_preset",
            type=click.Choice(["ani1x", "ani2x", "seed"]),
            default="ani1x",
            show_default=True,
            help="AEV parameters and elements to start from (train takes the same "
            "name; seed: ANI-1x's AEVs, as the course project used).",
        ),
        click.option(
            "--config",
            "config_path",
            type=click.Path(dir_okay=False),
            help="TOML file with an [aev] table overriding the preset.",
        ),
        click.option(
            "--elements",
            cls=section("AEV parameters"),
            help="Element order, e.g. H,C,N,O.",
        ),
    ] + [
        click.option(
            f"--{name}",
            name,
            cls=section("AEV parameters"),
            help=f"AEV parameter {name}"
            + (" (comma-separated)" if name.startswith("Shf") else "."),
        )
        for name in AEV_FLAGS
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def resolve_aev(aev_preset, config_path, elements, **flags):
    """AEVParams from preset, TOML file and flags, later ones winning."""
    from aevpipe.config import load_aev_params

    params = load_aev_params(aev_preset, Path(config_path) if config_path else None)
    changes: dict = {}
    if elements:
        changes["elements"] = tuple(e.strip() for e in elements.split(","))
    for name in AEV_FLAGS:
        value = flags.get(name)
        if value is None:
            continue
        changes[name] = floats(value) if name.startswith("Shf") else float(value)
    return replace(params, **changes) if changes else params


def echo_errors(by_split: dict, indent: int) -> None:
    """One line per split: RMSE, MAE (kcal/mol) and the count."""
    for split in ("train", "valid", "test"):
        m = by_split[split]
        click.echo(
            f"{' ' * indent}{split:5s} RMSE {m['rmse_kcal_mol']:.3f}  MAE "
            f"{m['mae_kcal_mol']:.3f} kcal/mol  (n={m['n']:,})"
        )


def parse_bytes(text: str) -> int:
    """'1GiB', '512MiB', '2G', '1000000' -> bytes."""
    units = {
        "": 1,
        "K": 1e3,
        "M": 1e6,
        "G": 1e9,
        "KIB": 1 << 10,
        "MIB": 1 << 20,
        "GIB": 1 << 30,
        "KB": 1e3,
        "MB": 1e6,
        "GB": 1e9,
    }
    t = text.strip().upper().replace(" ", "")
    number = t.rstrip("KMGIB")
    try:
        return int(float(number) * units[t[len(number) :]])
    except (ValueError, KeyError):
        raise click.BadParameter(f"not a size: {text!r} (e.g. 1GiB, 512MiB)") from None
