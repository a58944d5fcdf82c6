"""Which sources the project declares: the `[sources.<name>]` tables of `.dlt/config.toml`
that have a `kind`.

This is the one list every command agrees on: `python -m ingestion` loads these
sources, `python -m pipeline run` builds the dbt models of these sources only.
The options of each source are read by ingestion through dlt's config (so env
vars and `.dlt/secrets.toml` override them); this module only needs the names,
kinds and raw tables, and reads the file itself so that it stays light.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

KINDS = ("csv", "jsonl", "rest_api", "sql_table")


class SourceDeclarationError(ValueError):
    """A `[sources.<name>]` table that cannot be used: the message names the key to fix."""


def config_file() -> Path:
    """dlt's config file: `.dlt/config.toml` in the project dir (`DLT_PROJECT_DIR`, default .)."""
    return Path(os.environ.get("DLT_PROJECT_DIR", ".")) / ".dlt" / "config.toml"


def declared_sources(path: Path | None = None) -> dict[str, dict[str, Any]]:
    """{name: its config table} for every declared source, in the file's order."""
    path = path or config_file()
    if not path.is_file():
        return {}
    with path.open("rb") as handle:
        try:
            config = tomllib.load(handle)
        except tomllib.TOMLDecodeError as error:
            raise SourceDeclarationError(f"{path} is not valid TOML: {error}") from None
    sources = config.get("sources", {})
    declared = {}
    for name, table in sources.items():
        if not isinstance(table, dict):
            continue
        if "kind" not in table:
            raise SourceDeclarationError(
                f"[sources.{name}] in {path} has no kind: add kind = one of {', '.join(KINDS)}"
            )
        if table["kind"] not in KINDS:
            raise SourceDeclarationError(
                f"sources.{name}.kind is {table['kind']!r}; expected one of {', '.join(KINDS)}"
            )
        declared[name] = table
    return declared


def declared_source_names(path: Path | None = None) -> list[str]:
    return list(declared_sources(path))


# The dbt source over ingestion's own tables (raw._rejected_rows): always there.
BOOKKEEPING_SOURCE = "ingestion"


def undeclared_dbt_sources(project_dir: Path, declared: list[str] | None = None) -> list[str]:
    """The dbt sources of the project that no `[sources.<name>]` declares.

    A dbt source is named after the declared source that loads it. The models
    (and tests) downstream of an undeclared one are not built: the pipeline
    excludes `source:<name>+`, and the monitor does not expect their tables.
    So the demo's models stay in the project and a project that declares only
    its own sources still builds, monitors and publishes.
    """
    import yaml  # dbt's own dependency; imported here to keep this module light

    # libyaml's loader when PyYAML has it: every pipeline build and monitor reads these
    # (0.16 s for the sample's 14 files with the pure-Python one, 0.01 s with it)
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    declared = declared_source_names() if declared is None else declared
    names: list[str] = []
    for path in sorted((project_dir / "models").rglob("*.yml")):
        text = path.read_text(encoding="utf-8")
        if "sources" not in text:  # no `sources:` key can be in it
            continue
        document = yaml.load(text, Loader=loader) or {}
        for source in document.get("sources", []) or []:
            name = source.get("name")
            if name and name != BOOKKEEPING_SOURCE and name not in declared and name not in names:
                names.append(name)
    return names


def exclude_undeclared(project_dir: Path) -> list[str]:
    """dbt arguments that leave out the models of undeclared sources (none when all are)."""
    names = undeclared_dbt_sources(project_dir)
    return ["--exclude", *(f"source:{name}+" for name in names)] if names else []
