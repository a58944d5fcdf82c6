"""`python -m ingestion scaffold NAME`: the dbt files of a loaded source, from what raw holds.

For each raw table of the source it writes, under models/staging/<name>/:
- `_<name>__sources.yml`: the dbt source (schema raw, `_loaded_at` as
  loaded_at_field, freshness from the project's vars), and on each table the
  `rows_accounted_for` test;
- `stg_<name>__<table>.sql`: every raw row, each column cast to the type its
  values have (text that is all integers becomes bigint, ...), with
  `is_current` (the latest version of its key) and `_invalid_reason` (null, or
  why the row belongs in quarantine: a missing key, a value not of its type);
- `_<name>__models.yml`: not_null and unique on the key of the current, valid rows.
An existing file is never overwritten: it is reported and left as it is.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb

from warehouse.settings import RAW_DATASET, warehouse_path

from .kinds import source_options
from .kinds.common import LOADED_AT_COLUMN

# Candidate types for a text column, narrowest first: (DuckDB type to try, dbt expression).
CANDIDATES = (
    ("bigint", "dbt.type_bigint()"),
    ("double", "type_double()"),
    ("date", "'date'"),
    ("timestamptz", None),  # to_utc_timestamp
    ("boolean", "dbt.type_boolean()"),
)
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


def raw_tables(name: str) -> list[RawTable]:
    """The raw tables a declared source loads, from its configuration."""
    kind, options, _ = source_options(name)
    if kind == "csv":
        if not options.get("key"):
            raise ValueError(f"sources.{name}.key is not set: the scaffold needs a key column")
        return [RawTable(options.get("table") or name, options["key"], versioned=True)]
    if kind == "jsonl":
        return [RawTable(options.get("table") or name, options["key"], versioned=False)]
    if kind == "rest_api":
        return [
            RawTable(r.get("table", r["name"]), r["primary_key"], versioned=False)
            for r in options["resources"]
        ]
    return [
        RawTable(t.get("raw_table", t["table"]), t["primary_key"], versioned=False)
        for t in options["tables"]
    ]


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
    value = f"nullif(trim({_quote(column)}), '')"
    counts = ", ".join(f"count(try_cast({value} as {kind}))" for kind, _ in CANDIDATES)
    sent, *cast = con.execute(
        f"select count({value}), {counts} from {RAW_DATASET}.{_quote(table)}"
    ).fetchone()
    if not sent:
        return None
    fits = (
        kind for (kind, _), n in zip(CANDIDATES, cast, strict=True) if n >= INFER_MIN_SHARE * sent
    )
    return next(fits, None)


def cast_expression(column: str, inferred: str | None) -> str:
    """The dbt SQL that casts a text column to its inferred type (null when it does not fit)."""
    value = f"nullif(trim({column}), '')"
    if inferred is None:
        return value
    if inferred == "timestamptz":
        return '{{ to_utc_timestamp("' + value + '") }}'
    return '{{ safe_cast("' + value + '", ' + dict(CANDIDATES)[inferred] + ") }}"


def staging_sql(
    source: str, table: RawTable, types: dict[str, str], inferred: dict[str, str | None]
) -> str:
    """The staging model: typed columns, lineage, is_current and _invalid_reason.

    Column names are dlt's (snake_case), so the SQL needs no quoting on any engine.
    """
    data = [c for c in types if c not in LINEAGE]
    lineage = [c for c in types if c in LINEAGE]
    typed = [f"{cast_expression(c, inferred[c]) if c in inferred else c} as {c}" for c in data]
    sent = [f"nullif(trim({c}), '') as {c}__sent" for c in inferred]
    key_sent = f"{table.key}__sent" if table.key in inferred else table.key
    checks = [f"when {key_sent} is null then 'missing_key'"] + [
        f"when {c}__sent is not null and {c} is null then 'invalid_{c}'" for c in inferred
    ]
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
    source: str, kind: str, tables: list[RawTable], types: dict[str, dict[str, str]]
) -> str:
    lines = [
        "version: 2",
        "",
        "sources:",
        f"  - name: {source}",
        f"    description: Loaded by `python -m ingestion {source}` (kind {kind}).",
        f"    schema: {RAW_DATASET}",
        "    config:",
        f"      loaded_at_field: {LOADED_AT_COLUMN}",
        "      freshness:",
        "        warn_after: {count: \"{{ var('freshness_warn_hours') }}\", period: hour}",
        "        error_after: {count: \"{{ var('freshness_error_hours') }}\", period: hour}",
        "    tables:",
    ]
    for table in tables:
        model = f"ref('{model_name(source, table)}')"
        lines += [
            f"      - name: {table.name}",
            "        data_tests:",
            "          # Every raw row is current and valid, an older version, or quarantined.",
            "          # Point mart and quarantine at your own models as you add them.",
            "          - rows_accounted_for:",
            "              arguments:",
            f"                mart: {model}",
            f"                mart_where: {MART_WHERE}",
            f"                superseded: {model}",
            "                superseded_where: not is_current",
            f"                quarantine: {model}",
            f"                quarantine_where: {QUARANTINE_WHERE}",
            "        columns:",
        ]
        lines += [f"          - name: {column}" for column in types[table.name]]
    return "\n".join(lines) + "\n"


def models_yml(source: str, tables: list[RawTable]) -> str:
    lines = ["version: 2", "", "models:"]
    for table in tables:
        lines += [
            f"  - name: {model_name(source, table)}",
            f"    description: Every row of raw.{table.name}, typed and classified.",
            "    columns:",
            f"      - name: {table.key}",
            "        data_tests:",
            "          - not_null:",
            f'              config: {{where: "{"is_current and _invalid_reason is null"}"}}',
            "          - unique:",
            f'              config: {{where: "{MART_WHERE}"}}',
            "      - name: is_current",
            "        data_tests: [not_null]",
        ]
    return "\n".join(lines) + "\n"


def model_name(source: str, table: RawTable) -> str:
    return f"stg_{source}__{table.name}"


def scaffold(name: str, project_dir: Path, warehouse: Path) -> list[tuple[Path, bool]]:
    """Write the files (never over existing ones); [(path, written)]."""
    kind, _, _ = source_options(name)
    tables = raw_tables(name)
    if not warehouse.exists():
        raise FileNotFoundError(
            f"no warehouse at {warehouse}: load first (python -m ingestion {name})"
        )
    files: dict[Path, str] = {}
    folder = project_dir / "models" / "staging" / name
    all_types = {}
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
                column: infer_type(con, table.name, column)
                for column, kind_ in types.items()
                if kind_ == "VARCHAR" and column not in LINEAGE
            }
            all_types[table.name] = types
            files[folder / f"{model_name(name, table)}.sql"] = staging_sql(
                name, table, types, inferred
            )
    files[folder / f"_{name}__sources.yml"] = sources_yml(name, kind, tables, all_types)
    files[folder / f"_{name}__models.yml"] = models_yml(name, tables)
    written = []
    folder.mkdir(parents=True, exist_ok=True)
    for path, text in files.items():
        if path.exists():
            written.append((path, False))
            continue
        path.write_text(text, encoding="utf-8")
        written.append((path, True))
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


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
