"""Kinds of sources, each written once and generic over the schema.

A source is a `[sources.<name>]` table in `.dlt/config.toml` with `kind = ...`
and that kind's options (the keyword arguments of its `*_source` function).
Every option can be overridden by env (`SOURCES__<NAME>__<OPTION>`) or
`.dlt/secrets.toml`, the dlt convention; secrets belong there, not in config.
"""

from __future__ import annotations

import importlib
import inspect
import json
import typing
from collections.abc import Callable
from types import ModuleType
from typing import Any

import dlt

from warehouse.audit import URL_PASSWORD
from warehouse.sources import KINDS, declared_sources

from .common import RawTable, SourceConfigError, check_stored_name, source_timezone

# Options every kind has, handled by the CLI rather than by the source.
COMMON_OPTIONS = ("kind", "max_rejected_rate", "timezone")
# Above this share of a run's records rejected, the source fails (per source:
# `max_rejected_rate`). A whole file rejected counts as one record.
DEFAULT_MAX_REJECTED_RATE = 0.05
# Arguments the CLI passes, never read from config.
_RUNTIME_ARGUMENTS = {"name", "stream_backend", "folder_setting", "max_batch"}


def kind_module(kind: str) -> ModuleType:
    """A kind's module, imported on demand (each kind pulls its own libraries): it holds
    `<kind>_source` and `raw_tables(name, options)`."""
    if kind not in KINDS:
        raise SourceConfigError(f"unknown kind {kind!r}; the kinds: {', '.join(KINDS)}")
    return importlib.import_module(f"{__name__}.{kind}")


def follows(kind: str) -> bool:
    """Whether the kind can stream (`--follow`): its module opens a broker."""
    return hasattr(kind_module(kind), "open_broker")


def kind_function(kind: str) -> Callable[..., Any]:
    """The source function of a kind: `<kind>_source` in its module."""
    return getattr(kind_module(kind), f"{kind}_source")


def raw_tables(name: str) -> list[RawTable]:
    """The raw tables a declared source writes, from its declaration (checked)."""
    kind, options, _ = source_options(name)
    return kind_module(kind).raw_tables(name, options)


def check_declarations() -> dict[str, list[RawTable]]:
    """Every declared source's options and raw tables, checked before anything loads:
    {source: its raw tables}. Raises SourceConfigError naming the first problem.

    Two declarations writing one raw table would delete or overwrite each other's
    rows, so they are refused here, whichever kinds they are.
    """
    owners: dict[str, str] = {}
    tables = {}
    for name in declared_sources():
        check_stored_name("source", name, "name it [sources.{}]")
        tables[name] = raw_tables(name)
        for table in tables[name]:
            if table.name in owners:
                other = owners[table.name]
                raise SourceConfigError(
                    f"sources.{other} and sources.{name} both write raw.{table.name}: "
                    "give one of them another table name"
                    if other != name
                    else f"sources.{name} writes raw.{table.name} twice: give each its own table"
                )
            owners[table.name] = name
    return tables


def source_options(name: str) -> tuple[str, dict[str, Any], float]:
    """(kind, the kind's options, its max_rejected_rate) of a declared source, resolved.

    Every option is there, with its default when not set; keys the kind does not
    know fail here, named, instead of being ignored.
    """
    declared = declared_sources()
    if name not in declared:
        raise SourceConfigError(f"no source {name!r} is declared in .dlt/config.toml")
    kind = declared[name]["kind"]
    function = kind_function(kind)
    parameters = {
        p.name: p
        for p in inspect.signature(function).parameters.values()
        if p.name not in _RUNTIME_ARGUMENTS
    }
    secrets = kind_module(kind).SECRET_OPTIONS
    for key, value in declared[name].items():
        if _holds_secret(value, key in secrets):
            raise SourceConfigError(
                f"sources.{name}.{key} holds a secret: move it from .dlt/config.toml to "
                f".dlt/secrets.toml (git-ignored) or env SOURCES__{name.upper()}__{key.upper()}"
            )
    unknown = sorted(set(declared[name]) - set(parameters) - set(COMMON_OPTIONS))
    if unknown:
        raise SourceConfigError(
            f"sources.{name}.{unknown[0]} is not an option of kind {kind}; "
            f"its options: {', '.join(parameters)}, max_rejected_rate, timezone"
        )
    hints = typing.get_type_hints(function)
    options = {}
    for parameter in parameters.values():
        key = f"sources.{name}.{parameter.name}"
        value = dlt.secrets.get(key) if parameter.name in secrets else None
        value = dlt.config.get(key) if value is None else value
        if value is not None:
            options[parameter.name] = _coerce(name, parameter.name, value, hints[parameter.name])
        elif parameter.default is inspect.Parameter.empty:
            raise SourceConfigError(
                f"sources.{name}.{parameter.name} is required for kind {kind} "
                f"(in .dlt/config.toml, or env SOURCES__{name.upper()}__"
                f"{parameter.name.upper()})"
            )
        else:
            options[parameter.name] = parameter.default
    rate = dlt.config.get(f"sources.{name}.max_rejected_rate")
    rate = DEFAULT_MAX_REJECTED_RATE if rate is None else _coerce(name, "rate", rate, float)
    if not isinstance(rate, int | float) or not 0 <= rate <= 1:
        raise SourceConfigError(f"sources.{name}.max_rejected_rate must be between 0 and 1")
    source_timezone(name)  # a bad one fails before anything loads
    return kind, options, float(rate)


def _holds_secret(value: Any, is_secret_option: bool) -> bool:
    """Whether a config.toml value is a secret: a secret option's value (a URL without a
    password, like sqlite:///file.db or redis://host, is none), or any URL with one."""
    if isinstance(value, dict):
        return any(_holds_secret(v, False) for v in value.values())
    if isinstance(value, list):
        return any(_holds_secret(v, False) for v in value)
    text = str(value)
    if URL_PASSWORD.search(text):
        return True
    return is_secret_option and "://" not in text


def _coerce(source: str, key: str, value: Any, hint: Any) -> Any:
    """An env var's text as the option's type (config.toml values are typed already)."""
    if not isinstance(value, str):
        return value
    types = set(typing.get_args(hint)) or {hint}
    types = {typing.get_origin(t) or t for t in types}
    structured = types & {list, dict} and value.lstrip().startswith(("[", "{"))
    if str in types and not structured:  # `key` is a name, or a JSON list of names
        return value
    try:
        parsed = json.loads(value.lower() if bool in types else value)
    except ValueError:
        raise SourceConfigError(f"sources.{source}.{key}: {value!r} is not a {hint}") from None
    return parsed


def declared_source(name: str, **overrides: Any) -> Any:
    """The dlt source of a declared source, its options resolved, `overrides` on top."""
    kind, options, _ = source_options(name)
    return kind_function(kind)(name, **{**options, **overrides})
