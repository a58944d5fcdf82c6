"""The same dbt project on Spark (in-process, `method: session`): dlt writes raw
as Parquet to a lake folder, dbt registers it as external tables on run start,
`dbt build --target spark` passes, and every mart equals the DuckDB build."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from engine_compare import Table, base_env, compare, dbt_build, ingest, make_table, read_all

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def spark_build(engine_inbox: Path) -> dict[str, str]:
    """The sample loaded into a Parquet lake and built by dbt-spark; its env."""
    work = engine_inbox.parent / "spark"
    env = {
        **base_env(work),
        "WAREHOUSE_DESTINATION": "filesystem",
        "WAREHOUSE_LAKE": str(work / "lake"),
        "SPARK_DIR": str(work / "spark"),
    }
    ingest(engine_inbox, env)
    dbt_build("spark", env)
    return env


@pytest.fixture(scope="module")
def spark(spark_build: dict[str, str]) -> Iterator[Any]:
    """A Spark session on the catalog dbt built (same settings as profiles.yml)."""
    from pyspark.sql import SparkSession

    home = spark_build["SPARK_DIR"]
    session = (
        SparkSession.builder.master("local[2]")
        .enableHiveSupport()
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.warehouse.dir", f"{home}/warehouse")
        .config(
            "spark.hadoop.javax.jdo.option.ConnectionURL",
            "jdbc:derby:;databaseName=metastore_db;create=true",
        )
        .config("spark.driver.extraJavaOptions", f"-Dderby.system.home={home}")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    yield session
    session.stop()
    # pyspark's JVM outlives a stopped session (until this process exits): stop it too,
    # so that no process a test started outlives the tests (tests/leftovers.py).
    from pyspark import SparkContext

    gateway = SparkContext._gateway
    if gateway is not None:
        gateway.shutdown()
        gateway.proc.terminate()
        gateway.proc.wait(timeout=600)
        SparkContext._gateway = SparkContext._jvm = None


@pytest.fixture(scope="module")
def spark_marts(spark: Any) -> dict[str, Table]:
    def tables(schema: str) -> list[str]:
        return [row.tableName for row in spark.sql(f"show tables in {schema}").collect()]

    def read(name: str) -> Table:
        arrow = spark.table(name).toArrow()
        return make_table(arrow.column_names, [tuple(r.values()) for r in arrow.to_pylist()])

    return read_all(tables, read)


def test_raw_is_a_parquet_lake_spark_can_read(spark_build: dict[str, str], spark: Any) -> None:
    lake = Path(spark_build["WAREHOUSE_LAKE"]) / "raw"
    for table in ("users", "events", "orders", "products"):
        files = sorted((lake / table).glob("*.parquet"))
        assert files, f"no Parquet files for {table}"
        # Types Spark reads: microsecond UTC timestamps, no UUID/TIME/INTERVAL.
        for field in pq.read_schema(files[0]):
            kind = str(field.type)
            assert not kind.startswith(("time32", "time64", "duration", "extension")), field
            if kind.startswith("timestamp"):
                assert kind == "timestamp[us, tz=UTC]", field
        raw_rows = spark.sql(f"select count(*) as n from raw.{table}").collect()[0].n
        assert raw_rows == pq.ParquetDataset(str(lake / table)).read().num_rows


def test_marts_equal_the_duckdb_build(
    duckdb_marts: dict[str, Table], spark_marts: dict[str, Table]
) -> None:
    assert len(duckdb_marts) == 8
    assert all(table.rows for table in duckdb_marts.values())
    problems = compare(duckdb_marts, spark_marts)
    assert not problems, "\n".join(problems[:30])
