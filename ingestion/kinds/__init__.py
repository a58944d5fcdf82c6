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
from typing import Any

import dlt

from warehouse.sources import declared_sources

from .common import SourceConfigError, source_timezone

KINDS = ("csv", "jsonl", "rest_api", "sql_table")
# Options every kind has, handled by the CLI rather than by the source.
COMMON_OPTIONS = ("kind", "max_rejected_rate", "timezone")
# Above this share of a run's records rejected, the source fails (per source:
# `max_rejected_rate`). A whole file rejected counts as one record.
DEFAULT_MAX_REJECTED_RATE = 0.05
# Arguments the CLI passes, never read from config.
_RUNTIME_ARGUMENTS = {"name", "stream_backend", "folder_setting", "max_batch"}
# Options that may hold a secret: read as secrets first (env, .dlt/secrets.toml), so
# dlt's trace and logs never keep their values.
SECRET_OPTIONS = {"api_token", "credentials", "redis_url"}


def kind_function(kind: str) -> Callable[..., Any]:
    """The source function of a kind: `<kind>_source` in its module, imported on demand
    (each kind pulls its own libraries)."""
    if kind not in KINDS:
        raise SourceConfigError(f"unknown kind {kind!r}; the kinds: {', '.join(KINDS)}")
    return getattr(importlib.import_module(f"{__name__}.{kind}"), f"{kind}_source")


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
        value = dlt.secrets.get(key) if parameter.name in SECRET_OPTIONS else None
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


def _coerce(source: str, key: str, value: Any, hint: Any) -> Any:
    """An env var's text as the option's type (config.toml values are typed already)."""
    if not isinstance(value, str):
        return value
    types = set(typing.get_args(hint)) or {hint}
    types = {typing.get_origin(t) or t for t in types}
    if str in types:
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
