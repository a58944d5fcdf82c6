"""The same dbt project on PostgreSQL: dlt loads raw straight into the server,
`dbt build --target postgres` passes, and every mart equals the DuckDB build."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from engine_compare import Table, base_env, compare, dbt_build, ingest, make_table, read_all

from scale.pg_cluster import Cluster, running_cluster

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with running_cluster() as running:
        yield running


@pytest.fixture(scope="module")
def postgres_marts(engine_inbox: Path, cluster: Cluster) -> dict[str, Table]:
    import psycopg2

    env = {
        **base_env(engine_inbox.parent / "postgres"),
        **cluster.env,
        "WAREHOUSE_DESTINATION": "postgres",
    }
    ingest(engine_inbox, env)
    dbt_build("postgres", env)
    # Again: the incremental model takes its merge path (watermark, MERGE on a 3-column key).
    dbt_build("postgres", env)
    with (
        psycopg2.connect(
            host=cluster.host, port=cluster.port, user=cluster.user, dbname=cluster.database
        ) as con,
        con.cursor() as cursor,
    ):

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
    import psycopg2

    with (
        psycopg2.connect(
            host=cluster.host, port=cluster.port, user=cluster.user, dbname=cluster.database
        ) as con,
        con.cursor() as cursor,
    ):
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
