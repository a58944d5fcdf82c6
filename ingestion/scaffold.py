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
from pathlib import Path
from typing import Any

import duckdb
import yaml

from warehouse.settings import RAW_DATASET, warehouse_path
from warehouse.sql import literal, quote

from .kinds import check_declarations, source_options, source_timezone
from .kinds.common import DIGEST_COLUMN, LOADED_AT_COLUMN, RawTable, SourceConfigError

# Candidate types for a text column, narrowest first: (DuckDB type to try, dbt expression).
# A date is text with no time of day (DuckDB would cast "2013-01-01T10:00Z" to a date and
# lose the hour), so an ISO time is a timestamp; both come before the other formats.
CANDIDATES = (
    ("bigint", "dbt.type_bigint()"),
    ("double", "ml_warehouse.type_double()"),
    ("date", "'date'"),
    ("timestamptz", None),  # to_utc_timestamp
    ("boolean", "dbt.type_boolean()"),
)
# What the staging model's safe_cast takes as a number (the dbt package's cross_db.sql,
# safe_cast_pattern); DuckDB's own cast is laxer ("4.5" as bigint is 5).
NUMBER_PATTERNS = {
    "bigint": r"^\s*[-+]?[0-9]{1,18}\s*$",
    "double": r"^\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?\s*$",
}
ISO_DATE = r"^\s*[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}\s*$"
# Dates and times as other systems write them (strptime formats), tried in this order
# after the ISO forms; the first that (nearly) every value parses with is the column's
# (a month-first date is taken over a day-first one when both fit). Any other format:
# declare it per column (`formats = { day = "%d-%b-%y" }` on the source).
DATE_FORMATS = (
    "%b %d %Y",  # Jan 1 2000
    "%B %d %Y",
    "%b %d, %Y",
    "%B %d, %Y",
    "%d %b %Y",
    "%d %B %Y",
    "%Y/%m/%d",
    "%m/%d/%Y",
    "%d/%m/%Y",
    "%d.%m.%Y",
)
TIMESTAMP_FORMATS = (
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d %H:%M",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M",
    "%d/%m/%Y %H:%M:%S",
    "%d/%m/%Y %H:%M",
    "%d.%m.%Y %H:%M:%S",
    "%d.%m.%Y %H:%M",
    "%b %d %Y %H:%M:%S",
    "%d %b %Y %H:%M:%S",
)
# A column takes a type when at least this share of the values sent cast to it; the
# others are quarantined as invalid_<column> (one stray "n/a" does not make it text).
INFER_MIN_SHARE = 0.99
# Lineage columns each kind adds, passed through as they are.
LINEAGE = (
    "_source_file",
    "_source_line",
    "_row_key",
    "_segment",
    "_line",
    LOADED_AT_COLUMN,
    DIGEST_COLUMN,
)
MART_WHERE = "is_current and _invalid_reason is null"
QUARANTINE_WHERE = "is_current and _invalid_reason is not null"


def column_types(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    """{column: DuckDB type} of a raw table, without dlt's bookkeeping columns."""
    rows = con.execute(
        "select column_name, data_type from information_schema.columns"
        " where table_schema = ? and table_name = ? order by ordinal_position",
        [RAW_DATASET, table],
    ).fetchall()
    return {column: kind for column, kind in rows if not column.startswith("_dlt_")}


Inferred = tuple[str, str | None]  # (type, the strptime format of a date or time) or None


def infer_type(
    con: duckdb.DuckDBPyConnection, table: str, column: str, declared: str | None = None
) -> Inferred | None:
    """The narrowest candidate type (nearly) every non-empty value of a text column casts
    to, with the format of a date or time not written in ISO form. A `declared` format
    (the source's `formats`) is the column's, a date or a time by what it holds."""
    value = f"nullif(trim({quote(column)}), '')"
    if declared is not None:
        kind = "timestamptz" if any(c in declared for c in "HIMSp") else "date"
        return kind, declared
    candidates: list[tuple[str, str | None, str]] = [
        (kind, None, f"try_cast({value} as {kind}) is not null") for kind, _ in CANDIDATES
    ]
    patterns = {**NUMBER_PATTERNS, "date": ISO_DATE}
    for index, (kind, _, fits) in enumerate(candidates):
        if kind in patterns:
            pattern = f"regexp_matches({value}, {literal(patterns[kind])})"
            candidates[index] = (kind, None, f"{pattern} and {fits}")
    formats = [("date", f) for f in DATE_FORMATS] + [("timestamptz", f) for f in TIMESTAMP_FORMATS]
    at = len(candidates) - 1  # after the ISO forms, before boolean
    candidates[at:at] = [
        (kind, f, f"try_strptime({value}, {literal(f)}) is not null") for kind, f in formats
    ]
    counts = ", ".join(f"count(*) filter (where {fits})" for _, _, fits in candidates)
    sent, *cast = con.execute(
        f"select count({value}), {counts} from {RAW_DATASET}.{quote(table)}"
    ).fetchone()
    if not sent:
        return None
    fitting = (
        (kind, fmt)
        for (kind, fmt, _), n in zip(candidates, cast, strict=True)
        if n >= INFER_MIN_SHARE * sent
    )
    return next(fitting, None)


def needs_quotes(con: duckdb.DuckDBPyConnection) -> Callable[[str], bool]:
    """Whether a raw column name must be quoted in SQL: a keyword (`select`, `order`,
    `when`) that is not free to be a column name. Raw names are otherwise plain."""
    keywords = {
        word
        for (word,) in con.execute(
            "select keyword_name from duckdb_keywords() where keyword_category != 'unreserved'"
        ).fetchall()
    }
    return lambda name: name.lower() in keywords


def ident(column: str, quoted: Callable[[str], bool]) -> str:
    """A column in the generated SQL: quoted by the engine's adapter where needed."""
    return "{{ adapter.quote('" + column + "') }}" if quoted(column) else column


def cast_expression(
    column: str, inferred: Inferred | None, timezone: str = "UTC", quoted: bool = False
) -> str:
    """The dbt SQL that casts a text column to its inferred type (null when it does not fit).

    A time without an offset is read in the source's `timezone`. A `quoted` column
    is passed to the macros as the adapter's quoting of it.
    """
    inner = f"\" ~ adapter.quote('{column}') ~ \"" if quoted else column
    if inferred is None:
        return f"nullif(trim({ident(column, lambda _: quoted)}), '')"
    kind, fmt = inferred
    value = f"\"nullif(trim({inner}), '')\""
    zone = "" if timezone == "UTC" else f", tz='{timezone}'"
    if fmt is not None:
        macro = "parse_timestamp" if kind == "timestamptz" else "parse_date"
        zone = zone if kind == "timestamptz" else ""
        return "{{ ml_warehouse." + macro + "(" + value + ", " + literal(fmt) + zone + ") }}"
    if kind == "timestamptz":
        return "{{ ml_warehouse.to_utc_timestamp(" + value + zone + ") }}"
    return "{{ ml_warehouse.safe_cast(" + value + ", " + dict(CANDIDATES)[kind] + ") }}"


def staging_sql(
    source: str,
    table: RawTable,
    types: dict[str, str],
    inferred: dict[str, Inferred | None],
    timezone: str = "UTC",
    quoted: Callable[[str], bool] = lambda _: False,
) -> str:
    """The staging model: typed columns, lineage, is_current and _invalid_reason.

    Column names are dlt's (snake_case); a keyword among them is quoted by the
    engine's adapter, so the SQL runs on every engine.
    """
    data = [c for c in types if c not in LINEAGE]
    lineage = [c for c in types if c in LINEAGE]

    def q(column: str) -> str:
        return ident(column, quoted)

    typed = [
        f"{cast_expression(c, inferred[c], timezone, quoted(c)) if c in inferred else q(c)}"
        f" as {q(c)}"
        for c in data
    ]
    cast = [c for c, kind in inferred.items() if kind]  # a cast may turn what was sent to null
    sent = [f"nullif(trim({q(c)}), '') as {c}__sent" for c in cast]

    def given(column: str) -> str:
        return f"{column}__sent" if column in cast else q(column)

    checks = []
    if table.key:
        missing = " or ".join(f"{given(k)} is null" for k in table.key)
        checks.append(f"when {missing} then 'missing_key'")
    if table.time in inferred:
        checks.append(f"when {given(table.time)} is null then 'missing_{table.time}'")
    checks += [f"when {c}__sent is not null and {q(c)} is null then 'invalid_{c}'" for c in cast]
    current = "true"  # without a key, every row is its own (csv: its file's latest reading)
    if table.versioned and table.key:
        newest = (LOADED_AT_COLUMN, "_source_file", "_source_line")
        order = ", ".join(f"{c} desc" for c in newest if c in types)
        any_missing = " or ".join(f"{q(k)} is null" for k in table.key)
        current = (
            f"{any_missing}\n            or row_number() over (\n"
            f"                partition by {', '.join(q(k) for k in table.key)}"
            f" order by {order}\n"
            "            ) = 1"
        )
    typed_list = ",\n".join(f"        {line}" for line in [*typed, *sent, *lineage])
    columns = ",\n".join(f"        {c}" for c in [*(q(c) for c in data), *lineage])
    cases = (
        "\n".join(f"            {line}" for line in checks) or "            when false then null"
    )
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


def column_entry(column: str, quoted: Callable[[str], bool], **more: Any) -> dict[str, Any]:
    """A column in dbt YAML; a keyword is marked `quote: true`, so dbt's tests quote it."""
    return {"name": column, **({"quote": True} if quoted(column) else {}), **more}


def sources_yml(
    source: str,
    kind: str,
    tables: list[RawTable],
    columns: dict[str, list[str]],
    quoted: Callable[[str], bool] = lambda _: False,
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
            "data_tests": [{"ml_warehouse.rows_accounted_for": {"arguments": accounted}}],
            "columns": [column_entry(column, quoted) for column in columns[raw.name]],
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


def models_yml(
    source: str, tables: list[RawTable], quoted: Callable[[str], bool] = lambda _: False
) -> str:
    """The key of the current, valid rows is present and unique: `unique` on a one-column
    key, `duplicate_rate` at 0 over a composite one (its columns the monitor's
    `unique_key` too); without a key, each row's lineage is unique."""
    where = {"config": {"where": MART_WHERE}}
    models = []
    for raw in tables:
        model: dict[str, Any] = {
            "name": model_name(source, raw),
            "description": f"Every row of raw.{raw.name}, typed and classified.",
        }
        columns = [column_entry(k, quoted, data_tests=[{"not_null": where}]) for k in raw.key]
        if len(raw.key) == 1:
            columns[0]["data_tests"].append({"unique": where})
        else:
            unique = list(raw.key) or list(raw.lineage)
            model["config"] = {"meta": {"unique_key": unique}}
            test_config = where if raw.key else {}
            model["data_tests"] = [
                {
                    "ml_warehouse.duplicate_rate": {
                        "arguments": {"columns": unique, "threshold": 0},
                        **test_config,
                    }
                }
            ]
        columns.append({"name": "is_current", "data_tests": ["not_null"]})
        model["columns"] = columns
        models.append(model)
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
    declared = check_declarations()  # a declaration error is named before anything is read
    kind, options, _ = source_options(name)  # an undeclared name is named here
    tables = declared[name]
    if not warehouse.exists():
        raise FileNotFoundError(
            f"no warehouse at {warehouse}: load first (python -m ingestion {name})"
        )
    folder = project_dir / "models" / "staging" / name
    files: dict[Path, str] = {}
    columns = {}
    with duckdb.connect(str(warehouse), read_only=True) as con:
        quoted = needs_quotes(con)
        for table in tables:
            types = column_types(con, table.name)
            if not types:
                raise FileNotFoundError(
                    f"raw.{table.name} is not in {warehouse}: load it first "
                    f"(python -m ingestion {name})"
                )
            missing = [k for k in table.key if k not in types]
            if missing:
                raise ValueError(
                    f"raw.{table.name} has no column {missing[0]} (of the declared key)"
                )
            formats = options.get("formats") or {}
            inferred = {
                column: ("timestamptz", None)
                if column == table.time and column not in formats
                else infer_type(con, table.name, column, formats.get(column))
                for column, type_ in types.items()
                if type_ == "VARCHAR" and column not in LINEAGE
            }
            columns[table.name] = list(types)
            sql = staging_sql(name, table, types, inferred, source_timezone(name), quoted)
            files[folder / f"{model_name(name, table)}.sql"] = sql
    files[folder / f"_{name}__sources.yml"] = sources_yml(name, kind, tables, columns, quoted)
    files[folder / f"_{name}__models.yml"] = models_yml(name, tables, quoted)
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
    except SourceConfigError as error:  # a declaration to fix: the usage exit code
        print(f"error: {error}", file=sys.stderr)
        return 2
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
