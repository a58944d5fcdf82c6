"""The same dbt project on PostgreSQL: dlt loads raw straight into the server,
`dbt build --target postgres` passes, and every mart equals the DuckDB build."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from engine_compare import Table, base_env, compare, dbt_build, ingest, make_table, read_all
from project_env import loads_with_new_states

from scale.pg_cluster import Cluster, running_cluster

pytestmark = pytest.mark.postgres


@contextmanager
def cursor_of(cluster: Cluster, database: str | None = None) -> Iterator[Any]:
    """A cursor on the cluster's database (or `database`), committed on success."""
    import psycopg2

    with (
        psycopg2.connect(
            host=cluster.host,
            port=cluster.port,
            user=cluster.user,
            dbname=database or cluster.database,
        ) as con,
        con.cursor() as cursor,
    ):
        yield cursor


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with running_cluster() as running:
        yield running


@pytest.fixture(scope="module")
def postgres_marts(engine_inbox: Path, cluster: Cluster) -> dict[str, Table]:
    env = {
        **base_env(engine_inbox.parent / "postgres"),
        **cluster.env,
        "WAREHOUSE_DESTINATION": "postgres",
    }
    ingest(engine_inbox, env)
    dbt_build("postgres", env)
    # Again: the incremental model takes its merge path (watermark, MERGE on a 3-column key).
    dbt_build("postgres", env)
    with cursor_of(cluster) as cursor:

        def tables(schema: str) -> list[str]:
            cursor.execute(
                "select table_name from information_schema.tables"
                " where table_schema = %s",  # views too: fct_events is one
                [schema],
            )
            return [row[0] for row in cursor.fetchall()]

        def read(name: str) -> Table:
            cursor.execute(f"select * from {name}")
            return make_table([d[0] for d in cursor.description], cursor.fetchall())

        return read_all(tables, read)


def test_raw_lands_in_postgres(cluster: Cluster, postgres_marts: dict[str, Table]) -> None:
    with cursor_of(cluster) as cursor:
        cursor.execute(
            "select table_name from information_schema.tables where table_schema = 'raw'"
        )
        tables = {row[0] for row in cursor.fetchall()}
    assert {"users", "events", "orders", "products", "_rejected_rows"} <= tables


def test_marts_equal_the_duckdb_build(
    duckdb_marts: dict[str, Table], postgres_marts: dict[str, Table]
) -> None:
    assert len(duckdb_marts) == 8
    assert all(table.rows for table in duckdb_marts.values())
    problems = compare(duckdb_marts, postgres_marts)
    assert not problems, "\n".join(problems[:30])


# Schemas the production targets write (raw is ingestion's, shared by every target).
PRODUCTION_SCHEMAS = {"staging", "intermediate", "marts", "quarantine", "audit"}


def test_a_dev_target_writes_its_own_schemas_not_production(
    engine_inbox: Path, cluster: Cluster
) -> None:
    """`dbt build --target postgres_dev` on a database holding only raw: every model
    lands in dev_<user>_<schema>, and no production schema is created."""
    import psycopg2

    # Not `with connect(...)`: psycopg2 opens a transaction there, which create database refuses.
    admin = psycopg2.connect(
        host=cluster.host, port=cluster.port, user=cluster.user, dbname=cluster.database
    )
    try:
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute("create database devcheck")
    finally:
        admin.close()
    env = {
        **base_env(engine_inbox.parent / "postgres-dev"),
        **cluster.env,
        "PGDATABASE": "devcheck",
        "USER": "Alice",
        "WAREHOUSE_DESTINATION": "postgres",
    }
    ingest(engine_inbox, env)
    dbt_build("postgres_dev", env)
    with cursor_of(cluster, "devcheck") as cursor:
        cursor.execute("select schema_name from information_schema.schemata")
        schemas = {row[0] for row in cursor.fetchall()}
        cursor.execute("select count(*) from dev_alice_marts.dim_users")
        dev_users = cursor.fetchone()[0]
    assert schemas & PRODUCTION_SCHEMAS == set()
    assert {f"dev_alice_{s}" for s in PRODUCTION_SCHEMAS} <= schemas
    assert dev_users > 0


def test_only_the_newest_loads_keep_their_states_in_postgres(
    cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same pruning as on DuckDB (tests/ingestion/test_destination.py), in SQL the
    server runs: the states of the older loads go, every load and row stays."""
    from ingestion.destination import make_pipeline, prune_load_history

    for name, value in {**cluster.env, "WAREHOUSE_DESTINATION": "postgres"}.items():
        monkeypatch.setenv(name, value)
    pipeline = make_pipeline("prune_probe", tmp_path / "warehouse.duckdb")
    loads = loads_with_new_states(pipeline, 4)
    prune_load_history(pipeline, keep=2)

    with cursor_of(cluster) as cursor:
        cursor.execute(
            "select (select count(*) from raw.probe), (select count(*) from raw._dlt_loads"
            " where schema_name = %s), (select array_agg(_dlt_load_id order by _dlt_load_id)"
            " from raw._dlt_pipeline_state where pipeline_name = %s)",
            [pipeline.default_schema_name, pipeline.pipeline_name],
        )
        assert cursor.fetchall() == [(4, 4, loads[2:])]
