"""The security tests' site: a published warehouse folder with a known masking key.

Helpers live here, not in conftest.py, so test modules import them by a name
no other test folder uses.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
from project_env import PII_HASH_KEY as HASH_KEY
from project_env import ROOT, SAMPLE_TOKEN, warehouse_env

from demo.api import serve


@dataclass(frozen=True)
class Secured:
    root: Path
    inbox: Path
    env: dict[str, str]

    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse.duckdb"

    @property
    def analytics(self) -> Path:
        return self.root / "analytics.duckdb"

    def run(
        self, *args: str, env: dict[str, str] | None = None, api: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """`python <args>` from the project root; `api`: with the demo orders API up."""
        full = {**self.env, **(env or {})}

        def call(extra: list[str]) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, *args, *extra],
                cwd=ROOT,
                env=full,
                capture_output=True,
                text=True,
                timeout=600,
            )

        if not api:
            return call([])
        with serve(self.inbox, token=SAMPLE_TOKEN) as url:
            return call(["--api-url", url])

    def query(self, path: Path, sql: str) -> list[tuple[Any, ...]]:
        con = duckdb.connect(str(path), read_only=True)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()


def secured_env(root: Path) -> dict[str, str]:
    env = warehouse_env(root, PII_HASH_KEY=HASH_KEY)
    for name in ("ANALYTICS_PATH", "ANALYTICS_ENCRYPTION_KEY", "ANALYTICS_FILE_MODE"):
        env.pop(name, None)
    return env


def sample_email(warehouse: Path) -> tuple[int, str]:
    """A user with a valid email, events and orders (the user the tests look for)."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        row = con.execute(
            """select u.user_id, u.email from marts.dim_users as u
            where u.email is not null
              and exists (select 1 from marts.fct_events as e where e.user_id = u.user_id)
              and exists (select 1 from marts.fct_orders as o where o.user_id = u.user_id)
            order by u.user_id limit 1"""
        ).fetchone()
    finally:
        con.close()
    assert row is not None
    return int(row[0]), str(row[1])


def text_values(path: Path, key: str | None = None) -> list[tuple[str, str, str]]:
    """(table, column, value) for every text value in every table of a DuckDB file."""
    con = duckdb.connect()
    try:
        if key:
            con.execute(f"attach '{path}' as db (read_only, encryption_key '{key}')")
        else:
            con.execute(f"attach '{path}' as db (read_only)")
        columns = con.execute(
            "select table_schema, table_name, column_name from information_schema.columns "
            "where table_catalog = 'db' and data_type = 'VARCHAR' "
            "and table_name in (select table_name from information_schema.tables "
            "where table_catalog = 'db' and table_type = 'BASE TABLE')"
        ).fetchall()
        out = []
        for schema, table, column in columns:
            rows = con.execute(
                f'select distinct "{column}" from db."{schema}"."{table}" '
                f'where "{column}" is not null'
            ).fetchall()
            out += [(f"{schema}.{table}", column, r[0]) for r in rows]
        return out
    finally:
        con.close()
