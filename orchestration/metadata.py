"""What Dagster shows on an asset after a run, read from the warehouse once the step's
child process (dlt or dbt) has exited: rows per raw table, and each built model's row
count and columns. A warehouse that cannot answer (another engine's target) adds nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import duckdb
from dagster import AssetMaterialization, Output, TableColumn, TableSchema

RAW = "raw"
REJECTED = "_rejected_rows"


def raw_table_rows(
    warehouse: Path, source: str, tables: Iterable[str], load_ids: list[str]
) -> dict[str, dict[str, int]]:
    """{table: its rows loaded and rejected by these dlt loads, and its rows in all}."""
    found: dict[str, dict[str, int]] = {}
    try:
        with duckdb.connect(str(warehouse), read_only=True) as con:
            for table in tables:
                total, loaded = con.execute(
                    "select count(*), count(*) filter (where _dlt_load_id in (select unnest($1))) "
                    f'from {RAW}."{table}"',
                    [load_ids],
                ).fetchone() or (0, 0)
                rejected = con.execute(
                    f"select count(*) from {RAW}.{REJECTED} where source = $1 and resource = $2 "
                    "and _dlt_load_id in (select unnest($3))",
                    [source, table, load_ids],
                ).fetchone()
                found[table] = {
                    "rows_loaded": loaded,
                    "rows_rejected": rejected[0] if rejected else 0,
                    "dagster/row_count": total,
                }
    except duckdb.Error:
        return {}
    return found


def with_table_metadata(
    events: Iterable[Any], warehouse: Path, manifest: Mapping[str, Any]
) -> Iterator[Any]:
    """dagster-dbt's events, each model's materialization with its row count and its columns
    as built (name, type, and the comment on it, else the description in dbt's YAML)."""
    try:
        con = duckdb.connect(str(warehouse), read_only=True)
    except duckdb.Error:
        yield from events
        return
    try:
        for event in events:
            if isinstance(event, Output | AssetMaterialization):
                unique_id = event.metadata.get("unique_id")
                node = manifest["nodes"].get(getattr(unique_id, "value", None)) or {}
                if extra := table_metadata(con, node):
                    event = event.with_metadata({**event.metadata, **extra})
            yield event
    finally:
        con.close()


def table_metadata(con: duckdb.DuckDBPyConnection, node: Mapping[str, Any]) -> dict[str, Any]:
    if not node.get("relation_name"):  # ephemeral models, tests
        return {}
    where = [node["database"], node["schema"], node.get("alias") or node["name"]]
    try:
        columns = con.execute(
            "select column_name, data_type, comment from duckdb_columns() "
            "where database_name = $1 and schema_name = $2 and table_name = $3 "
            "order by column_index",
            where,
        ).fetchall()
        if not columns:
            return {}
        (rows,) = con.execute(f"select count(*) from {node['relation_name']}").fetchone() or (0,)
    except duckdb.Error:
        return {}
    documented = {
        name.lower(): column.get("description") or None
        for name, column in (node.get("columns") or {}).items()
    }
    return {
        "dagster/row_count": rows,
        "dagster/column_schema": TableSchema(
            columns=[
                TableColumn(name, str(type_), description=comment or documented.get(name.lower()))
                for name, type_, comment in columns
            ]
        ),
    }


def describe_test(props: Mapping[str, Any]) -> str:
    """A dbt test in a line: its own description, else the test, column and arguments
    (refs and vars by name), and what a failure does."""
    severity = str((props.get("config") or {}).get("severity") or "error").lower()
    effect = "a failure fails the build" if severity == "error" else "a failure warns"
    if props.get("description"):
        return f"{props['description']} ({effect})"
    meta = props.get("test_metadata") or {}
    if not meta:
        return f"dbt test {props['name']} (singular: its SQL returns the failing rows; {effect})"
    test = ".".join(x for x in (meta.get("namespace"), meta["name"]) if x)
    column = f" on `{props['column_name']}`" if props.get("column_name") else ""
    arguments = ", ".join(
        f"{key}={plain(value)}"
        for key, value in (meta.get("kwargs") or {}).items()
        if key not in ("model", "column_name")
    )
    return f"{test}{column}" + (f" ({arguments})" if arguments else "") + f"; {effect}"


def plain(value: Any) -> str:
    """An argument as written, Jinja reduced to what it names: ref('x') -> x, var('y') -> var y."""
    if isinstance(value, list):
        return "[" + ", ".join(plain(v) for v in value) + "]"
    text = str(value)
    text = re.sub(r"ref\(\s*['\"](\w+)['\"]\s*\)", r"\1", text)
    text = re.sub(r"var\(\s*['\"](\w+)['\"][^)]*\)", r"var \1", text)
    text = re.sub(r"\{\{\s*|\s*\}\}", "", text)
    return text if len(text) <= 80 else text[:77] + "..."
