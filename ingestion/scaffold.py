"""`python -m ingestion scaffold NAME`: the dbt files of a loaded source, from what raw holds.

For each raw table of the source it writes, under models/staging/<name>/:
- `_<name>__sources.yml`: the dbt source (schema raw, `_loaded_at` as
  loaded_at_field, freshness from the project's vars), and on each table the
  `rows_accounted_for` test;
- `stg_<name>__<table>.sql`: every raw row, each column cast to the type its
  values have (text that is all integers becomes bigint, ...), with
  `is_current` (the latest version of its key) and `_invalid_reason` (null, or
  why the row belongs in quarantine: a missing key, a value not of its type, a
  missing or invalid time of a jsonl source's `cursor_field`, always a timestamp);
- `_<name>__models.yml`: not_null and unique on the key of the current, valid rows.
An existing file is never overwritten: it is reported and left as it is.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import yaml

from warehouse.settings import RAW_DATASET, warehouse_path
from warehouse.sql import literal, quote

from .kinds import source_options, source_timezone
from .kinds.common import LOADED_AT_COLUMN

# Candidate types for a text column, narrowest first: (DuckDB type to try, dbt expression).
CANDIDATES = (
    ("bigint", "dbt.type_bigint()"),
    ("double", "type_double()"),
    ("date", "'date'"),
    ("timestamptz", None),  # to_utc_timestamp
    ("boolean", "dbt.type_boolean()"),
)
# What the staging model's safe_cast takes as a number (macros/cross_db.sql,
# safe_cast_pattern); DuckDB's own cast is laxer ("4.5" as bigint is 5).
NUMBER_PATTERNS = {
    "bigint": r"^\s*[-+]?[0-9]{1,18}\s*$",
    "double": r"^\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?\s*$",
}
# A column takes a type when at least this share of the values sent cast to it; the
# others are quarantined as invalid_<column> (one stray "n/a" does not make it text).
INFER_MIN_SHARE = 0.99
# Lineage columns each kind adds, passed through as they are.
LINEAGE = ("_source_file", "_source_line", "_row_key", "_segment", "_line", LOADED_AT_COLUMN)
MART_WHERE = "is_current and _invalid_reason is null"
QUARANTINE_WHERE = "is_current and _invalid_reason is not null"


@dataclass
class RawTable:
    """A raw table of the source, with its key and whether it keeps several versions of one."""

    name: str
    key: str
    versioned: bool  # csv: raw keeps every line of every file; the others merge on the key
    time: str | None = None  # jsonl's cursor_field: the records' own time, required


def raw_tables(name: str, kind: str, options: dict[str, Any]) -> list[RawTable]:
    """The raw tables a declared source loads, from its configuration."""
    if kind == "csv" and not options["key"]:
        raise ValueError(f"sources.{name}.key is not set: the scaffold needs a key column")
    if kind in ("csv", "jsonl"):
        time = options.get("cursor_field")
        return [RawTable(options["table"] or name, options["key"], kind == "csv", time)]
    if kind == "rest_api":
        entries = [(r.get("table", r["name"]), r["primary_key"]) for r in options["resources"]]
    else:
        entries = [(t.get("raw_table", t["table"]), t["primary_key"]) for t in options["tables"]]
    return [RawTable(table, key, versioned=False) for table, key in entries]


def column_types(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    """{column: DuckDB type} of a raw table, without dlt's bookkeeping columns."""
    rows = con.execute(
        "select column_name, data_type from information_schema.columns"
        " where table_schema = ? and table_name = ? order by ordinal_position",
        [RAW_DATASET, table],
    ).fetchall()
    return {column: kind for column, kind in rows if not column.startswith("_dlt_")}


def infer_type(con: duckdb.DuckDBPyConnection, table: str, column: str) -> str | None:
    """The narrowest candidate type (nearly) every non-empty value of a text column casts to."""
    value = f"nullif(trim({quote(column)}), '')"
    fits = {kind: f"try_cast({value} as {kind}) is not null" for kind, _ in CANDIDATES}
    fits.update(
        {kind: f"regexp_matches({value}, {literal(p)})" for kind, p in NUMBER_PATTERNS.items()}
    )
    counts = ", ".join(f"count(*) filter (where {fits[kind]})" for kind, _ in CANDIDATES)
    sent, *cast = con.execute(
        f"select count({value}), {counts} from {RAW_DATASET}.{quote(table)}"
    ).fetchone()
    if not sent:
        return None
    fitting = (
        kind for (kind, _), n in zip(CANDIDATES, cast, strict=True) if n >= INFER_MIN_SHARE * sent
    )
    return next(fitting, None)


def cast_expression(column: str, inferred: str | None, timezone: str = "UTC") -> str:
    """The dbt SQL that casts a text column to its inferred type (null when it does not fit).

    A time without an offset is read in the source's `timezone`.
    """
    value = f"nullif(trim({column}), '')"
    if inferred is None:
        return value
    if inferred == "timestamptz":
        zone = "" if timezone == "UTC" else f", tz='{timezone}'"
        return '{{ to_utc_timestamp("' + value + '"' + zone + ") }}"
    return '{{ safe_cast("' + value + '", ' + dict(CANDIDATES)[inferred] + ") }}"


def staging_sql(
    source: str,
    table: RawTable,
    types: dict[str, str],
    inferred: dict[str, str | None],
    timezone: str = "UTC",
) -> str:
    """The staging model: typed columns, lineage, is_current and _invalid_reason.

    Column names are dlt's (snake_case), so the SQL needs no quoting on any engine.
    """
    data = [c for c in types if c not in LINEAGE]
    lineage = [c for c in types if c in LINEAGE]
    typed = [
        f"{cast_expression(c, inferred[c], timezone) if c in inferred else c} as {c}" for c in data
    ]
    cast = [c for c, kind in inferred.items() if kind]  # a cast may turn what was sent to null
    sent = [f"nullif(trim({c}), '') as {c}__sent" for c in cast]

    def given(column: str) -> str:
        return f"{column}__sent" if column in cast else column

    checks = [f"when {given(table.key)} is null then 'missing_key'"]
    if table.time in inferred:
        checks.append(f"when {given(table.time)} is null then 'missing_{table.time}'")
    checks += [f"when {c}__sent is not null and {c} is null then 'invalid_{c}'" for c in cast]
    current = "true"
    if table.versioned:
        newest = (LOADED_AT_COLUMN, "_source_file", "_source_line")
        order = ", ".join(f"{c} desc" for c in newest if c in types)
        current = (
            f"{table.key} is null\n            or row_number() over (\n"
            f"                partition by {table.key} order by {order}\n"
            "            ) = 1"
        )
    typed_list = ",\n".join(f"        {line}" for line in [*typed, *sent, *lineage])
    columns = ",\n".join(f"        {c}" for c in [*data, *lineage])
    cases = "\n".join(f"            {line}" for line in checks)
    return f"""{{#
    Scaffolded by `python -m ingestion scaffold {source}` from the values in
    raw.{table.name}: every raw row, each column cast to the type its values had;
    is_current marks the latest version of a key, _invalid_reason why a row
    belongs in quarantine. Yours to edit: the scaffold never overwrites it.
#}}

with

source as (

    select * from {{{{ source('{source}', '{table.name}') }}}}

),

typed as (

    select
{typed_list}

    from source

),

classified as (

    select
{columns},
        (
            {current}
        ) as is_current,
        case
{cases}
        end as _invalid_reason

    from typed

)

select * from classified
"""


def sources_yml(
    source: str, kind: str, tables: list[RawTable], columns: dict[str, list[str]]
) -> str:
    """The dbt source, with freshness and, on each table, the row-accounting test."""

    def table(raw: RawTable) -> dict[str, Any]:
        model = f"ref('{model_name(source, raw)}')"
        accounted = {
            "mart": model,
            "mart_where": MART_WHERE,
            "superseded": model,
            "superseded_where": "not is_current",
            "quarantine": model,
            "quarantine_where": QUARANTINE_WHERE,
        }
        return {
            "name": raw.name,
            "data_tests": [{"rows_accounted_for": {"arguments": accounted}}],
            "columns": [{"name": column} for column in columns[raw.name]],
        }

    freshness = {
        f"{level}_after": {"count": f"{{{{ var('freshness_{level}_hours') }}}}", "period": "hour"}
        for level in ("warn", "error")
    }
    dbt_source = {
        "name": source,
        "description": f"Loaded by `python -m ingestion {source}` (kind {kind}). The "
        "rows_accounted_for test checks every raw row is current and valid, an older "
        "version, or quarantined: point it at your own models as you add them.",
        "schema": RAW_DATASET,
        "config": {"loaded_at_field": LOADED_AT_COLUMN, "freshness": freshness},
        "tables": [table(raw) for raw in tables],
    }
    return _yaml({"version": 2, "sources": [dbt_source]})


def models_yml(source: str, tables: list[RawTable]) -> str:
    """not_null and unique on the key of the current, valid rows."""
    where = {"config": {"where": MART_WHERE}}
    models = [
        {
            "name": model_name(source, raw),
            "description": f"Every row of raw.{raw.name}, typed and classified.",
            "columns": [
                {"name": raw.key, "data_tests": [{"not_null": where}, {"unique": where}]},
                {"name": "is_current", "data_tests": ["not_null"]},
            ],
        }
        for raw in tables
    ]
    return _yaml({"version": 2, "models": models})


class _Dumper(yaml.SafeDumper):
    """YAML as dbt projects write it: lists indented under their key, no anchors."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _yaml(document: dict[str, Any]) -> str:
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, width=100)


def model_name(source: str, table: RawTable) -> str:
    return f"stg_{source}__{table.name}"


def scaffold(name: str, project_dir: Path, warehouse: Path) -> list[tuple[Path, bool]]:
    """Write the files (never over existing ones); [(path, written)]."""
    kind, options, _ = source_options(name)
    tables = raw_tables(name, kind, options)
    if not warehouse.exists():
        raise FileNotFoundError(
            f"no warehouse at {warehouse}: load first (python -m ingestion {name})"
        )
    folder = project_dir / "models" / "staging" / name
    files: dict[Path, str] = {}
    columns = {}
    with duckdb.connect(str(warehouse), read_only=True) as con:
        for table in tables:
            types = column_types(con, table.name)
            if not types:
                raise FileNotFoundError(
                    f"raw.{table.name} is not in {warehouse}: load it first "
                    f"(python -m ingestion {name})"
                )
            if table.key not in types:
                raise ValueError(f"raw.{table.name} has no column {table.key} (the declared key)")
            inferred = {
                column: "timestamptz"
                if column == table.time
                else infer_type(con, table.name, column)
                for column, type_ in types.items()
                if type_ == "VARCHAR" and column not in LINEAGE
            }
            columns[table.name] = list(types)
            sql = staging_sql(name, table, types, inferred, source_timezone(name))
            files[folder / f"{model_name(name, table)}.sql"] = sql
    files[folder / f"_{name}__sources.yml"] = sources_yml(name, kind, tables, columns)
    files[folder / f"_{name}__models.yml"] = models_yml(name, tables)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for path, text in files.items():
        written.append((path, not path.exists()))
        if written[-1][1]:
            path.write_text(text, encoding="utf-8")
    return written


def main(argv: list[str], out: Callable[[str], None] = print) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ingestion scaffold",
        description="Write the dbt sources YAML, staging model and tests of a loaded source.",
    )
    parser.add_argument("name", help="a declared source, loaded at least once")
    parser.add_argument("--project-dir", type=Path, default=Path("."), help="dbt project folder")
    args = parser.parse_args(argv)
    try:
        written = scaffold(args.name, args.project_dir, warehouse_path())
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for path, done in written:
        out(
            f"{'wrote' if done else 'kept '} {path}"
            + ("" if done else " (exists: not overwritten)")
        )
    out(f"next: dbt build --select source:{args.name}+")
    return 0
