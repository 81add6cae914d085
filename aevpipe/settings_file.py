"""Settings from TOML files and dicts, with errors that name the file and the key:
a user's typo in a config file is one line saying where, not a traceback."""

from __future__ import annotations

import contextlib
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any

from aevpipe.errors import SettingsError


def from_known_fields(cls: type, data: dict[str, Any], what: str) -> Any:
    """`cls(**data)`, with a clear error naming keys `cls` does not have and
    values of the wrong kind (a config file's `lr = "fast"`)."""
    types = {f.name: f.type for f in fields(cls)}
    unknown = set(data) - set(types)
    if unknown:
        raise SettingsError(f"unknown {what}(s): {sorted(unknown)}")
    for name, value in data.items():
        expected = _KINDS.get(str(types[name]).split(" | ")[0].split("[")[0])
        if value is None and "None" in str(types[name]):
            continue
        if expected is not None and not expected[0](value):
            raise SettingsError(f"{what} {name} must be {expected[1]}, got {value!r}")
    return cls(**data)


def is_number(value: Any) -> bool:
    """An int or a float, not a bool (which Python counts as an int)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


# Annotation -> (check, words for the error) of the values settings accept.
_KINDS = {
    "float": (is_number, "a number"),
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "tuple": (lambda v: isinstance(v, list | tuple), "a list"),
    "dict": (lambda v: isinstance(v, dict), "a table"),
}


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file as a dict; a SettingsError naming the path when it cannot be read."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read: {exc.strerror}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{path}: not valid TOML: {exc}") from exc


def toml_table(data: dict[str, Any], name: str) -> dict[str, Any]:
    """The `[name]` table of a TOML file's data; a SettingsError if it is no table."""
    table = data.get(name, {})
    if not isinstance(table, dict):
        raise SettingsError(f"[{name}] must be a table, got {table!r}")
    return table


@contextlib.contextmanager
def naming(path: Path):
    """A SettingsError from settings that a TOML file gave, naming the file."""
    try:
        yield
    except SettingsError as exc:
        if str(exc).startswith(str(path)):
            raise
        raise SettingsError(f"{path}: {exc}") from None
