"""Serving test helpers: small published files made directly with DuckDB, and a real server.

`write_analytics` writes what `pipeline publish` writes (marts.user_features
with the columns and types of the real contract in `_ml__models.yml`, plus
meta.publication), beside the target and renamed over it, as publish does.
The server itself (`start_server`, `Server`) is in tests/api_server.py.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import yaml
from api_server import Server, start_server

__all__ = ["MODELS_YML", "Server", "direct", "start_server", "write_analytics"]

ROOT = Path(__file__).resolve().parents[2]
MODELS_YML = ROOT / "models" / "marts" / "ml" / "_ml__models.yml"


def contract() -> list[tuple[str, str]]:
    """(name, data_type) of every user_features column, from the dbt contract."""
    doc = yaml.safe_load(MODELS_YML.read_text(encoding="utf-8"))
    model = next(m for m in doc["models"] if m["name"] == "user_features")
    return [(c["name"], c["data_type"]) for c in model["columns"]]


def _expression(name: str, data_type: str, salt: int) -> str:
    """A deterministic value per row `i` (with nulls and awkward floats/strings) by type."""
    if name == "user_id":
        return "i * 3 + 1"  # gaps: i * 3 + 2 is always unknown
    kind = data_type.lower()
    if kind == "double":
        return f"case when (i + {salt}) % 7 = 0 then null else ((i * 37 + {salt}) % 1000) / 7.0 end"
    if kind == "bigint":
        return f"case when (i + {salt}) % 11 = 0 then null else (i * 13 + {salt}) % 50 end"
    if kind == "boolean":
        return f"case when (i + {salt}) % 5 = 0 then null else (i + {salt}) % 2 = 0 end"
    if kind == "timestamp":
        return f"timestamp '2026-02-02 00:00:00' + to_hours({salt}) + to_microseconds(i)"
    if kind == "varchar":
        return (
            f"case when (i + {salt}) % 9 = 0 then null "
            f"else 'v' || ((i + {salt}) % 5) || ' é\"''' end"
        )
    raise AssertionError(f"no test values for {name} {data_type}")


def write_analytics(path: Path, run_id: str, users: int, salt: int = 0) -> Path:
    """Publish a file of `users` users (ids 1, 4, 7, ... stored shuffled) as run `run_id`."""
    temp = path.with_name(f".{path.name}.{run_id}.tmp")
    temp.unlink(missing_ok=True)
    columns = contract()
    con = duckdb.connect(str(temp))
    try:
        con.execute("create schema marts")
        con.execute(
            "create table marts.user_features ("
            + ", ".join(f"{name} {data_type}" for name, data_type in columns)
            + ")"
        )
        con.execute(
            "insert into marts.user_features select "
            + ", ".join(_expression(n, t, salt) for n, t in columns)
            + f" from range({users}) as r(i) order by hash(i + {salt})"
        )
        con.execute("create schema meta")
        con.execute(
            """create table meta.publication as select
                ? as run_id, ?::timestamptz as published_at, ? as dbt_invocation_id,
                ?::varchar[] as dlt_load_ids, ? as tables""",
            [
                run_id,
                datetime(2026, 2, 3, 4, 5, 6, tzinfo=UTC),
                "dbt-" + run_id,
                ["load-1"],
                json.dumps({"dim_users": users + 5, "user_features": users}),
            ],
        )
        con.execute("checkpoint")
    finally:
        con.close()
    os.replace(temp, path)
    return path


def direct(path: Path, ids: list[int]) -> list[dict[str, Any] | None]:
    """What DuckDB itself returns for these ids, in order, as JSON would carry it."""
    with duckdb.connect(str(path), read_only=True) as con:
        cursor = con.execute(
            "select r.pos, f.* from unnest(?) with ordinality as r(id, pos) "
            "left join marts.user_features as f on f.user_id = r.id order by r.pos",
            [ids],
        )
        names = [d[0] for d in cursor.description][1:]
        rows = cursor.fetchall()
    return [
        None if row[1] is None else {n: _jsonable(v) for n, v in zip(names, row[1:], strict=True)}
        for row in rows
    ]


def _jsonable(value: Any) -> Any:
    """A naive (UTC) timestamp as the API writes it: ISO 8601 with `Z`."""
    return value.isoformat() + "Z" if isinstance(value, datetime) else value
