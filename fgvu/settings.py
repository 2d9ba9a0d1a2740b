"""Project-wide defaults: where data, caches and runs live, and `fgvu.toml` overrides.

Each stage keeps its defaults in one typed dataclass (ExtractConfig, FitConfig, ...). A
`fgvu.toml` in the working directory may override any field, per section::

    [paths]
    caches = "caches"
    [fit]
    epochs = 40
    [model]
    d_model = 256

CLI options override both. Values are checked against the field types and the option specs of
`fgvu.options` (choices, ranges); unknown sections and keys are errors.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from pathlib import Path

from fgvu import options
from fgvu.errors import FgvuError

CONFIG_FILE = "fgvu.toml"
SECTIONS = ("paths", "extract", "fit", "model")


class SettingsError(FgvuError):
    """A bad fgvu.toml or a default that cannot be resolved."""


@dataclasses.dataclass
class Paths:
    """Default locations, relative to the working directory."""

    data: str = "data"
    caches: str = "caches"
    runs: str = "runs"

    def data_root(self, dataset: str) -> Path:
        """`$FGVU_DATA/<dataset>` when FGVU_DATA is set, else `data/<dataset>`."""
        base = os.environ.get("FGVU_DATA", self.data)
        return Path(base) / dataset


def read_toml(path: str | Path = CONFIG_FILE) -> dict:
    """The parsed fgvu.toml, or {} when there is none; anything but the known sections is an error."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise SettingsError(f"{path}: not valid TOML ({e})") from None
    unknown = [f"[{k}]" for k in data if k not in SECTIONS]
    if unknown:  # a misspelt section ([fitt]) would otherwise be ignored without a word
        known = ", ".join(f"[{s}]" for s in SECTIONS)
        raise SettingsError(f"{path}: unknown section(s) {', '.join(unknown)}; known sections: {known}")
    for section, table in data.items():
        if not isinstance(table, dict):
            raise SettingsError(f"{path}: {section} must be a section ([{section}]), not a single value")
    return data


def _coerce(value, annotation, where: str):
    """Check a TOML value against a dataclass field type (the few types configs use)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except SettingsError:
                continue
        raise SettingsError(f"{where}: {value!r} does not fit {annotation}")
    if origin is typing.Literal:
        if value not in args:
            raise SettingsError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise SettingsError(f"{where}: expected a list, got {value!r}")
        inner = args[0] if args else typing.Any
        items = [_coerce(v, inner, where) for v in value]
        return tuple(items) if origin is tuple else items
    if dataclasses.is_dataclass(annotation):
        key = where.rsplit(".", 1)[-1]
        raise SettingsError(f"{where}: {key} settings have a section of their own; put them under [{key}]")
    if annotation is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise SettingsError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if annotation in (int, str, bool) and type(value) is not annotation:
        raise SettingsError(f"{where}: expected {annotation.__name__}, got {value!r}")
    return value


def apply_overrides(config, overrides: dict, where: str):
    """A copy of dataclass `config` with `overrides` applied; unknown keys and values that their
    field's type, choices or range refuse are errors."""
    hints = typing.get_type_hints(type(config))
    names = {f.name for f in dataclasses.fields(config)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise SettingsError(f"{where}: unknown keys {unknown}; known: {sorted(names)}")
    values = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in overrides.items()}
    try:
        for name, value in values.items():
            options.check_field(type(config), name, value, f"{where}.{name}")
    except options.OptionError as e:
        raise SettingsError(str(e)) from None
    return dataclasses.replace(config, **values)


def load_section(config, section: str, path: str | Path = CONFIG_FILE):
    """`config` with the `[section]` of fgvu.toml applied (unchanged when there is none)."""
    table = read_toml(path).get(section, {})
    return apply_overrides(config, table, f"{path} [{section}]") if table else config


def paths(path: str | Path = CONFIG_FILE) -> Paths:
    """The default locations, with fgvu.toml's [paths] applied."""
    return load_section(Paths(), "paths", path)


def find_cache(dataset: str | None, path: str | Path = CONFIG_FILE) -> Path:
    """The cache for `dataset` under the caches folder, or the only cache there when None."""
    root = Path(paths(path).caches)
    if dataset:
        cache = root / dataset
        if not (cache / "cache.json").exists():
            raise SettingsError(f"no cache for dataset {dataset!r} at {cache}; run `fgvu extract --dataset {dataset}` first")
        return cache
    found = sorted(p.parent for p in root.glob("*/cache.json")) if root.exists() else []
    if len(found) == 1:
        return found[0]
    if not found:
        raise SettingsError(f"no cache under {root}/; run `fgvu extract` first or pass the cache path")
    names = ", ".join(p.name for p in found)
    raise SettingsError(f"several caches under {root}/ ({names}); choose one with --dataset or pass its path")
