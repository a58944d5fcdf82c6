"""Session fixtures for the engine comparisons: one sample inbox and its DuckDB build.

These tests need the engines' extras (`make test-postgres` / `make test-spark`
install them in .venv-postgres / .venv-spark); plain `make test` deselects
them by marker and runs only the portability check.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from engine_compare import Table, base_env, dbt_build, ingest, make_table, read_all

from demo.generator import generate

SAMPLE_USERS = 200
SAMPLE_SEED = 11
SAMPLE_SEGMENT_SIZE = 1000


@pytest.fixture(scope="session")
def engine_inbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One generated inbox that every engine loads."""
    inbox = tmp_path_factory.mktemp("engines") / "inbox"
    generate(inbox, users=SAMPLE_USERS, seed=SAMPLE_SEED, segment_size=SAMPLE_SEGMENT_SIZE)
    return inbox


@pytest.fixture(scope="session")
def duckdb_marts(engine_inbox: Path) -> dict[str, Table]:
    """The reference: the sample ingested into DuckDB and built with the default target."""
    env = base_env(engine_inbox.parent / "duckdb")
    ingest(engine_inbox, env)
    dbt_build("duckdb", env)
    with duckdb.connect(env["WAREHOUSE_PATH"], read_only=True) as con:

        def tables(schema: str) -> list[str]:
            return [
                row[0]
                for row in con.execute(
                    "select table_name from information_schema.tables"
                    " where table_schema = ?",  # views too: fct_events is one
                    [schema],
                ).fetchall()
            ]

        def read(name: str) -> Table:
            cursor = con.execute(f"select * from {name}")
            return make_table([d[0] for d in cursor.description], cursor.fetchall())

        return read_all(tables, read)
