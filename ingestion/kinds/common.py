"""What every kind of source shares: config errors, schema contracts, run counters."""

from __future__ import annotations

from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import dlt

LOADED_AT_COLUMN = "_loaded_at"
STATE_LAST_RUN = "last_run"

# `schema_contract` setting -> dlt schema contract. "freeze" still lets a raw table be
# created on the first load; after that a new column or a type change fails the load.
SCHEMA_CONTRACTS: dict[str, Any] = {
    "evolve": "evolve",
    "freeze": {"tables": "evolve", "columns": "freeze", "data_type": "freeze"},
}


class SourceConfigError(ValueError):
    """A source option that cannot work: the message names `sources.<name>.<option>`."""


def option(source: str, name: str) -> str:
    """How a user finds an option: its config key and its env var."""
    return f"sources.{source}.{name} (env SOURCES__{source.upper()}__{name.upper()})"


def folder_files(folder: Path, glob: str, setting: str) -> list[Path]:
    """The files matching `glob` in the folder, in name order (the order they were written).

    A missing folder is a configuration error, not an empty source: the message
    names `setting`, where the folder came from (the option or the --inbox flag).
    """
    if not folder.is_dir():
        raise FileNotFoundError(f"folder not found: {folder} (set by {setting})")
    return sorted((p for p in folder.glob(glob) if p.is_file()), key=lambda p: p.name)


def contract_for(source: str, setting: str) -> Any:
    """The dlt schema contract for a source's `schema_contract` setting."""
    try:
        return SCHEMA_CONTRACTS[setting]
    except KeyError:
        choices = ", ".join(f'"{k}"' for k in SCHEMA_CONTRACTS)
        raise SourceConfigError(
            f"sources.{source}.schema_contract is {setting!r}; expected one of {choices}"
        ) from None


def start_run(state: MutableMapping[str, Any], **extra: Any) -> dict[str, Any]:
    """Fresh per-run counters in a resource's state: the CLI summary reads them."""
    run: dict[str, Any] = {"rows_read": 0, "rows_rejected": 0, "rows_collapsed": 0, **extra}
    state[STATE_LAST_RUN] = run
    return run


def make_source(name: str, schema_contract: str, *resources: Any) -> Any:
    """A dlt source named after the declared source (its schema and its state key), under
    the contract its `schema_contract` setting names."""

    @dlt.source(name=name, section=name, schema_contract=contract_for(name, schema_contract))
    def declared() -> Any:
        return list(resources)

    return declared()


def current_pipeline() -> dlt.Pipeline | None:
    """The pipeline running this source, if any (a bare iteration has none)."""
    try:
        return dlt.current.pipeline()
    except Exception:  # noqa: BLE001 - no active pipeline is a normal case
        return None
