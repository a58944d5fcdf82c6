"""The products source against a real SQLite file and a real DuckDB warehouse."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dlt
import duckdb
import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from ingestion.destination import make_pipeline
from ingestion.kinds import declared_source
from ingestion.kinds.common import SourceConfigError

ROOT = Path(__file__).resolve().parents[2]


def products_source(table: str = "products", raw_table: str | None = None, **options: Any) -> Any:
    """The declared products source, on `table` (keyed and tracked as the sample's)."""
    tables = [{"table": table, "primary_key": "product_id", "cursor": "updated_at"}]
    if raw_table:
        tables[0]["raw_table"] = raw_table
    return declared_source("products", tables=tables, **options)


N_PRODUCTS = 20
START = datetime(2026, 1, 1, tzinfo=UTC)
RAW_COLUMNS = "product_id, name, category, price, updated_at, _loaded_at, _dlt_load_id, _dlt_id"


def _sqlite_ts(ts: datetime) -> str:
    """How SQLAlchemy's SQLite DATETIME stores a (UTC) timestamp, as the sample does."""
    return ts.strftime("%Y-%m-%d %H:%M:%S.%f")


def _make_db(path: Path, table: str = "products", n: int = N_PRODUCTS) -> Path:
    with sqlite3.connect(path) as con:
        con.execute(
            f"create table {table} (product_id integer primary key, name text not null,"
            " category text not null, price real not null, updated_at datetime not null)"
        )
        con.executemany(
            f"insert into {table} values (?, ?, ?, ?, ?)",
            [
                (
                    i,
                    f"product {i}",
                    ("books", "games", "tools")[i % 3],
                    1.25 * i,
                    _sqlite_ts(START + timedelta(hours=i)),
                )
                for i in range(1, n + 1)
            ],
        )
    con.close()
    return path


@pytest.fixture
def warehouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh warehouse file; cwd at the repo root so .dlt/config.toml resolves."""
    path = tmp_path / "wh" / "warehouse.duckdb"
    monkeypatch.setenv("WAREHOUSE_PATH", str(path))
    monkeypatch.chdir(ROOT)
    return path


@pytest.fixture
def products_db(tmp_path: Path) -> Path:
    return _make_db(tmp_path / "products.db")


def _run(db: Path, table: str = "products", **kwargs: Any) -> dlt.Pipeline:
    pipeline = make_pipeline("products")
    pipeline.run(products_source(credentials=f"sqlite:///{db}", table=table, **kwargs))
    return pipeline


def _query(warehouse: Path, sql: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _raw_rows(warehouse: Path) -> list[tuple[Any, ...]]:
    return _query(warehouse, f"select {RAW_COLUMNS} from raw.products order by product_id")


def _raw_types(warehouse: Path) -> dict[str, str]:
    rows = _query(
        warehouse,
        "select column_name, data_type from information_schema.columns"
        " where table_schema = 'raw' and table_name = 'products'",
    )
    return dict(rows)


def _last_run(pipeline: dlt.Pipeline) -> dict[str, int]:
    return pipeline.state["sources"]["products"]["resources"]["products"]["last_run"]


def _loaded_rows(pipeline: dlt.Pipeline) -> int:
    return pipeline.last_trace.last_normalize_info.row_counts.get("products", 0)


def test_first_run_loads_every_product_with_raw_types(warehouse: Path, products_db: Path) -> None:
    pipeline = _run(products_db)

    assert _loaded_rows(pipeline) == N_PRODUCTS
    assert _last_run(pipeline) == {
        "rows_read": N_PRODUCTS,
        "rows_rejected": 0,
        "rows_collapsed": 0,
        "rows_unchanged": 0,
    }
    types = _raw_types(warehouse)
    assert {k: v for k, v in types.items() if not k.startswith("_dlt")} == {
        "product_id": "BIGINT",
        "name": "VARCHAR",
        "category": "VARCHAR",
        "price": "DOUBLE",
        "updated_at": "TIMESTAMP WITH TIME ZONE",
        "_loaded_at": "TIMESTAMP WITH TIME ZONE",
        "_row_digest": "VARCHAR",  # what a row read again unchanged is known by
    }
    assert {"_dlt_load_id", "_dlt_id"} <= set(types)
    rows = _query(
        warehouse,
        "select product_id, name, category, price, updated_at from raw.products"
        " where product_id = 7",
    )
    assert rows == [(7, "product 7", "games", 8.75, START + timedelta(hours=7))]
    assert _query(warehouse, "select count(*) from raw.products") == [(N_PRODUCTS,)]
    assert _query(warehouse, "select count(distinct _loaded_at) from raw.products") == [(1,)]


def test_second_run_loads_nothing_and_leaves_raw_unchanged(
    warehouse: Path, products_db: Path
) -> None:
    _run(products_db)
    before = _raw_rows(warehouse)

    pipeline = _run(products_db)

    assert _loaded_rows(pipeline) == 0
    assert _last_run(pipeline) == {
        "rows_read": 0,
        "rows_rejected": 0,
        "rows_collapsed": 0,
        "rows_unchanged": 0,
    }
    assert _raw_rows(warehouse) == before
    assert len(before) == N_PRODUCTS


def test_updates_and_inserts_are_merged_on_product_id(warehouse: Path, products_db: Path) -> None:
    _run(products_db)
    later = START + timedelta(days=10)
    with sqlite3.connect(products_db) as con:
        con.execute(
            "update products set price = 99.5, updated_at = ? where product_id in (3, 11)",
            (_sqlite_ts(later),),
        )
        con.execute(
            "insert into products values (?, ?, ?, ?, ?)",
            (N_PRODUCTS + 1, "new product", "games", 5.0, _sqlite_ts(later)),
        )
    con.close()

    pipeline = _run(products_db)

    assert _loaded_rows(pipeline) == 3
    assert _last_run(pipeline) == {
        "rows_read": 3,
        "rows_rejected": 0,
        "rows_collapsed": 0,
        "rows_unchanged": 0,
    }
    assert _query(warehouse, "select count(*), count(distinct product_id) from raw.products") == [
        (N_PRODUCTS + 1, N_PRODUCTS + 1)
    ]
    assert _query(
        warehouse,
        "select product_id, price, updated_at from raw.products"
        " where updated_at = (select max(updated_at) from raw.products) order by product_id",
    ) == [(3, 99.5, later), (11, 99.5, later), (N_PRODUCTS + 1, 5.0, later)]
    assert _query(warehouse, "select price from raw.products where product_id = 4") == [(5.0,)]


def test_a_source_table_loads_into_the_raw_table_declared(warehouse: Path, tmp_path: Path) -> None:
    db = _make_db(tmp_path / "shop.db", table="catalog_items", n=4)

    pipeline = _run(db, table="catalog_items", raw_table="products")

    assert list(pipeline.default_schema.data_table_names()) == ["products"]
    assert _query(warehouse, "select count(*) from raw.products") == [(4,)]
    assert _last_run(pipeline)["rows_read"] == 4


def test_config_comes_from_dlt_config_and_env(
    warehouse: Path, products_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # table and schema_contract from the committed .dlt/config.toml, the URL from the env
    monkeypatch.setenv("SOURCES__PRODUCTS__CREDENTIALS", f"sqlite:///{products_db}")

    pipeline = make_pipeline("products")
    pipeline.run(declared_source("products"))

    assert _loaded_rows(pipeline) == N_PRODUCTS


def test_new_source_column_evolves_into_raw(warehouse: Path, products_db: Path) -> None:
    _run(products_db, schema_contract="evolve")
    later = START + timedelta(days=10)
    with sqlite3.connect(products_db) as con:
        con.execute("alter table products add column weight_kg real")
        con.execute(
            "update products set weight_kg = 2.5, updated_at = ? where product_id = 5",
            (_sqlite_ts(later),),
        )
    con.close()

    pipeline = make_pipeline("products")
    info = pipeline.run(
        products_source(
            credentials=f"sqlite:///{products_db}", table="products", schema_contract="evolve"
        )
    )

    assert _loaded_rows(pipeline) == 1
    new_columns = info.load_packages[0].schema_update["products"]["columns"]
    assert list(new_columns) == ["weight_kg"]
    assert _raw_types(warehouse)["weight_kg"] == "DOUBLE"
    assert _query(
        warehouse, "select count(*), count(weight_kg), max(weight_kg) from raw.products"
    ) == [(N_PRODUCTS, 1, 2.5)]


def test_frozen_contract_fails_on_new_column_and_keeps_raw(
    warehouse: Path, products_db: Path
) -> None:
    _run(products_db, schema_contract="freeze")
    before = _raw_rows(warehouse)
    later = START + timedelta(days=10)
    with sqlite3.connect(products_db) as con:
        con.execute("alter table products add column weight_kg real")
        con.execute(
            "update products set weight_kg = 2.5, updated_at = ? where product_id = 5",
            (_sqlite_ts(later),),
        )
    con.close()

    with pytest.raises(PipelineStepFailed) as failed:
        _run(products_db, schema_contract="freeze")

    assert "weight_kg" in str(failed.value)
    assert "freeze" in str(failed.value)
    assert _raw_rows(warehouse) == before
    assert "weight_kg" not in _raw_types(warehouse)
    # the cursor did not move: switching to evolve picks the change up
    assert _loaded_rows(_run(products_db, schema_contract="evolve")) == 1


def test_missing_sqlite_file_is_a_clear_error_and_creates_nothing(
    warehouse: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere" / "products.db"

    with pytest.raises(FileNotFoundError) as error:
        products_source(credentials=f"sqlite:///{missing}", table="products")

    assert str(missing) in str(error.value)
    assert "sources.products.credentials" in str(error.value)
    assert not missing.exists()
    assert not missing.parent.exists()


def test_missing_table_is_a_clear_error(warehouse: Path, products_db: Path) -> None:
    with pytest.raises(SourceConfigError, match=r"'no_such_table'.*sources\.products"):
        products_source(credentials=f"sqlite:///{products_db}", table="no_such_table")


def test_bad_url_error_does_not_echo_the_url(warehouse: Path) -> None:
    with pytest.raises(SourceConfigError) as error:
        products_source(credentials="not a url with s3cret", table="products")

    assert "sources.products.credentials" in str(error.value)
    assert "s3cret" not in str(error.value)


def test_unknown_schema_contract_is_a_clear_error(warehouse: Path, products_db: Path) -> None:
    with pytest.raises(SourceConfigError, match="sources.products.schema_contract"):
        products_source(
            credentials=f"sqlite:///{products_db}", table="products", schema_contract="lax"
        )
