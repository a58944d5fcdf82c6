"""Pipeline test sites: the session's sample, run once through `python -m pipeline run`.

`published` is that baseline (a clean run on the sample: its analytics file is
what every other run on the same inputs must publish). Tests that change
anything take a `clone` of it: the warehouse, dlt's folder, dbt's target (for
partial parsing) and the analytics file, copied into their own tmp_path.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import duckdb
from project_env import (
    PII_HASH_KEY,
    ROOT,
    SAMPLE_TOKEN,
    SITE_FILES,
    VARS,
    copy_state,
    warehouse_env,
)

from demo.api import serve
from privacy import masking


@dataclass(frozen=True)
class Site:
    """A warehouse folder with its inbox and the env that points every command at it."""

    root: Path
    inbox: Path
    env: dict[str, str]

    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse.duckdb"

    @property
    def analytics(self) -> Path:
        return self.root / "analytics.duckdb"

    @property
    def lock(self) -> Path:
        return self.root / "warehouse.duckdb.lock"

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "pipeline", *args]

    def start(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        """`python -m pipeline ...` in the background (the caller serves the API if needed)."""
        return subprocess.Popen(
            self.command(*args),
            cwd=ROOT,
            env={**self.env, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def pipeline(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess:
        process = self.start(*args, env=env)
        out, err = process.communicate(timeout=600)
        return subprocess.CompletedProcess(process.args, process.returncode, out, err)

    def run(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """`python -m pipeline run` on this site's inbox, with the demo orders API up."""
        with serve(self.inbox, token=SAMPLE_TOKEN) as url:
            return self.pipeline(*self.run_args(url, *args), env=env)

    def run_args(self, url: str, *args: str) -> list[str]:
        return ["run", "--inbox", str(self.inbox), "--api-url", url, "--vars", VARS, *args]

    def ledger(self) -> list[dict[str, Any]]:
        con = duckdb.connect(str(self.warehouse), read_only=True)
        try:
            cursor = con.execute("select * from monitoring.pipeline_runs order by started_at")
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        finally:
            con.close()

    def full_check_done_now(self) -> None:
        """Date the last full check now: the daily one is not due during the test, even
        when the session crossed midnight UTC since the published run."""
        con = duckdb.connect(str(self.warehouse))
        try:
            con.execute(
                "update monitoring.pipeline_runs set started_at = now() where run_id = ("
                " select run_id from monitoring.pipeline_runs where check_kind = 'full'"
                " order by started_at desc limit 1)"
            )
        finally:
            con.close()

    def holder(self) -> dict[str, Any]:
        try:
            return json.loads(self.lock.read_text() or "{}")
        except (OSError, json.JSONDecodeError):
            return {}


def site_env(root: Path) -> dict[str, str]:
    # One masking key for every site, so that their published files compare equal.
    env = warehouse_env(root, **{masking.HASH_KEY_ENV: PII_HASH_KEY})
    env.pop("ANALYTICS_PATH", None)
    return env


def clone(site: Site, dest: Path, with_inbox: bool = False) -> Site:
    copy_state(site.root, dest, SITE_FILES)
    inbox = site.inbox
    if with_inbox:
        shutil.copytree(site.inbox, dest / "inbox", copy_function=shutil.copy2)
        inbox = dest / "inbox"
    return replace(site, root=dest, inbox=inbox, env=site_env(dest))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def marts(path: Path, as_published: bool = False) -> dict[str, list[tuple[Any, ...]]]:
    """Every mart's rows, sorted: equal dicts = no duplicated or missing rows anywhere.

    Floats are compared to 10 significant digits (aggregation order varies between runs).
    `as_published`: a warehouse's marts with PII masked the way publish masks them.
    """
    con = duckdb.connect(str(path), read_only=True)
    try:
        names = [
            r[0]
            for r in con.execute(
                "select table_name from information_schema.tables "
                "where table_schema = 'marts' order by 1"
            ).fetchall()
        ]
        rules = _masking(con) if as_published else {}
        out = {}
        for n in names:
            select = f"select * from marts.{n}"
            if n in rules:
                columns = [(r[0], r[1]) for r in con.execute(f"describe marts.{n}").fetchall()]
                select = masking.masked_select(f"marts.{n}", columns, rules[n]).select
            out[n] = sorted(map(_stable, con.execute(select).fetchall()), key=repr)
        return out
    finally:
        con.close()


def _masking(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, masking.PiiColumn]]:
    """The PII rules, with the sites' masking key set on `con` (privacy/masking.py)."""
    masking.set_hash_key(con, PII_HASH_KEY.encode())
    return masking.pii_columns(ROOT)


def _stable(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """Floats to 10 significant digits: DuckDB's parallel sums differ in the last bits."""
    return tuple(float(f"{v:.10g}") if isinstance(v, float) else v for v in row)


def wait_for(
    predicate: Any,
    timeout: float,
    what: str,
    process: subprocess.Popen[str] | None = None,
    interval: float = 0.05,
) -> None:
    """Poll until `predicate()` holds. The timeout is a safety net; a `process` that ends
    first fails the wait at once (it can no longer get there), with its output."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if process is not None and process.poll() is not None:
            out, err = process.communicate()
            raise AssertionError(
                f"{what}: the process ended first (exit {process.returncode})\n"
                f"{out[-3000:]}\n{err[-3000:]}"
            )
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def kill9(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=600)
