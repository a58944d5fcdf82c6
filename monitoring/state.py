"""What the monitor keeps of each table between runs, and how it knows a table changed.

`monitoring.quality_table_state` holds each table's last aggregates with the
version of the table they were measured on. A version is read from the
warehouse, not from the run that is asking:
- a dbt model or seed: its row in `monitoring.dbt_model_builds`, which a
  post-hook writes in the same transaction as every build (warehouse/dbt/macros/model_builds.sql),
  whoever runs dbt; a view adds the versions of everything it reads, down to
  the tables; a table adds its row count;
- a source: its newest `_dlt_load_id` and its row count (a load, a merge or an
  erasure changes one of them).
A table without a version (no build row, a source without `_dlt_load_id`) is
always measured.
"""

from __future__ import annotations

import json
from typing import Any

import duckdb

from warehouse.sql import insert_rows, quote, relation

from .manifest import Target
from .metrics import Aggregates, Measurement, Stored, table_columns

SCHEMA = "monitoring"
STATE_TABLE = f"{SCHEMA}.quality_table_state"
BUILDS_TABLE = f"{SCHEMA}.dbt_model_builds"  # written by dbt: record_build()
DDL = f"""create table if not exists {STATE_TABLE} (
    relation varchar primary key,
    version varchar,
    fingerprint varchar not null,
    aggregates varchar not null,
    measured_at timestamptz not null
)"""
STATE_COLUMNS = ("relation", "version", "fingerprint", "aggregates", "measured_at")
VIEW_LIKE = {"view", "ephemeral"}  # hold no rows of their own: read what they select from


def read(con: duckdb.DuckDBPyConnection) -> dict[str, Stored]:
    if not table_columns(con, SCHEMA, "quality_table_state"):
        return {}
    rows = con.execute(
        f"select relation, version, fingerprint, aggregates from {STATE_TABLE}"
    ).fetchall()
    return {
        name: Stored(version, fingerprint, Aggregates.from_json(aggregates))
        for name, version, fingerprint, aggregates in rows
    }


def write(con: duckdb.DuckDBPyConnection, measurements: list[Measurement]) -> None:
    """Keep what this run measured (inside the caller's transaction)."""
    con.execute(DDL)
    rows = [
        [
            m.target.name,
            m.stored.version,
            m.stored.fingerprint,
            m.stored.aggregates.to_json(),
            m.stored.aggregates.measured_at,
        ]
        for m in measurements
        if m.stored is not None
    ]
    insert_rows(con, STATE_TABLE, STATE_COLUMNS, rows, verb="insert or replace")


class Versions:
    """The version of each monitored table, as the warehouse shows it now."""

    def __init__(self, con: duckdb.DuckDBPyConnection, manifest: dict[str, Any]) -> None:
        self.con = con
        self.nodes = {**(manifest.get("nodes") or {}), **(manifest.get("sources") or {})}
        self.builds: dict[str, str] = {}
        if table_columns(con, SCHEMA, "dbt_model_builds"):
            self.builds = {
                name: f"{invocation} {built_at.isoformat()}"
                for name, invocation, built_at in con.execute(
                    f"select relation, invocation_id, built_at from {BUILDS_TABLE}"
                ).fetchall()
            }
        self._known: dict[str, Any] = {}

    def of(self, target: Target) -> str | None:
        version = self._node(target.unique_id)
        if version is None:
            return None
        node = self.nodes.get(target.unique_id) or {}
        if target.kind == "model" and _materialized(node) not in VIEW_LIKE:
            (rows,) = self.con.execute(  # a table's count is in its metadata: no scan
                f"select count(*) from {relation(target.schema, target.identifier)}"
            ).fetchone() or (None,)
            version = [version, rows]
        return json.dumps(version)

    def _node(self, uid: str) -> Any:
        if uid not in self._known:
            self._known[uid] = self._read(uid)
        return self._known[uid]

    def _read(self, uid: str) -> Any:
        node = self.nodes.get(uid)
        if node is None:
            return None
        if node.get("resource_type") == "source":
            return self._source(node)
        materialized = _materialized(node)
        parts: list[Any] = []
        if materialized != "ephemeral":
            name = f"{node['schema']}.{node.get('alias') or node['name']}"
            if name not in self.builds:
                return None
            parts.append([name, self.builds[name]])
        if materialized in VIEW_LIKE:
            for parent in (node.get("depends_on") or {}).get("nodes") or []:
                version = self._node(parent)
                if version is None:
                    return None
                parts.append(version)
        return parts

    def _source(self, node: dict[str, Any]) -> Any:
        """[newest load id, rows] of a dlt-loaded table; None without `_dlt_load_id`."""
        schema, table = node["schema"], node.get("identifier") or node["name"]
        if "_dlt_load_id" not in {c for c, _ in table_columns(self.con, schema, table)}:
            return None
        load_id, rows = self.con.execute(
            f"select max({quote('_dlt_load_id')}), count(*) from {relation(schema, table)}"
        ).fetchone() or (None, None)
        return [f"{schema}.{table}", load_id, rows]


def _materialized(node: dict[str, Any]) -> str:
    if node.get("resource_type") == "seed":
        return "seed"
    return str((node.get("config") or {}).get("materialized") or "view")
