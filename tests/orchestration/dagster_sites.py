"""Dagster test sites: a warehouse folder, its env, and the pipeline materialized in-process.

`materialize` builds the code location the way `dg dev` does (from the
project and the environment), with the env of one site, and runs the job of
every asset in this process on an ephemeral Dagster instance.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import duckdb
from dagster import AssetKey, DagsterInstance, Definitions, ExecuteInProcessResult
from project_env import ROOT, warehouse_env

from orchestration.location import JOB, build_definitions

PII_HASH_KEY = "dagster-tests-pii-key"
# A fixed as-of keeps user_features identical between runs (else it is the run's start).
VARS = '{features_as_of: "2026-02-02T00:00:00Z"}'


@dataclass(frozen=True)
class Site:
    root: Path
    inbox: Path

    @property
    def env(self) -> dict[str, str]:
        return warehouse_env(self.root, PII_HASH_KEY=PII_HASH_KEY)

    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse.duckdb"

    @property
    def analytics(self) -> Path:
        return self.root / "analytics.duckdb"

    @contextmanager
    def environment(self, extra: dict[str, str] | None = None) -> Iterator[None]:
        """This site's env in os.environ (Dagster's dbt child reads it), from the project."""
        with mock.patch.dict(os.environ, {**self.env, **(extra or {})}, clear=True):
            assert Path.cwd() == ROOT, "run the tests from the project root"
            yield

    def definitions(
        self, api_url: str | None = None, env: dict[str, str] | None = None, **options: Any
    ) -> Definitions:
        with self.environment(env):
            return build_definitions(
                ROOT, inbox=str(self.inbox), api_url=api_url, dbt_vars=VARS, **options
            )

    def materialize(
        self,
        api_url: str,
        env: dict[str, str] | None = None,
        selection: set[AssetKey] | None = None,
        instance: DagsterInstance | None = None,
    ) -> ExecuteInProcessResult:
        """The job of every asset (or of `selection`), run in this process."""
        with self.environment(env):
            job = self.definitions(api_url).resolve_job_def(JOB)
            return job.execute_in_process(
                instance=instance or DagsterInstance.ephemeral(),
                raise_on_error=False,
                asset_selection=list(selection) if selection else None,
            )

    def pipeline_run(self, api_url: str) -> subprocess.CompletedProcess[str]:
        """`python -m pipeline run` on this site, as a user types it."""
        args = ["run", "--inbox", str(self.inbox), "--api-url", api_url, "--vars", VARS]
        return subprocess.run(
            [sys.executable, "-m", "pipeline", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=900,
        )

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        with duckdb.connect(str(self.warehouse), read_only=True) as con:
            return con.execute(sql).fetchall()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# When the extract that brought a row ran: wall clock, different in every load by design.
LOAD_TIME = "loaded_at"


def published_marts(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every published table's rows but their load time, sorted (floats to 10 significant
    digits): two warehouses loaded from the same inbox hold the same rows."""
    with duckdb.connect(str(path), read_only=True) as con:
        columns: dict[str, list[str]] = {}
        for table, column in con.execute(
            "select table_name, column_name from information_schema.columns "
            "where table_schema = 'marts' order by table_name, ordinal_position"
        ).fetchall():
            columns.setdefault(table, [])
            if column != LOAD_TIME:
                columns[table].append(f'"{column}"')
        tables = {}
        for name, selected in columns.items():
            rows = con.execute(f'select {", ".join(selected)} from marts."{name}"').fetchall()
            tables[name] = sorted(
                (
                    tuple(float(f"{v:.10g}") if isinstance(v, float) else v for v in row)
                    for row in rows
                ),
                key=repr,
            )
        return tables


def materialized(result: ExecuteInProcessResult) -> set[str]:
    return {
        event.asset_key.to_user_string()
        for event in result.get_asset_materialization_events()
        if event.asset_key
    }


def check_results(result: ExecuteInProcessResult) -> dict[tuple[str, str], Any]:
    """(asset, check) -> its evaluation, for every check the run evaluated."""
    found = {}
    for event in result.all_events:
        if event.event_type_value == "ASSET_CHECK_EVALUATION":
            evaluation = event.event_specific_data
            key = (evaluation.asset_key.to_user_string(), evaluation.check_name)
            found[key] = evaluation
    return found


def failure_text(result: ExecuteInProcessResult) -> str:
    """Every error message of the run's events (resource, step and run failures), with the
    output a failed step attached."""
    found = []
    for event in result.all_events:
        error = getattr(event.event_specific_data, "error", None)
        if error is not None:
            found.append(error.to_string())
        failure = getattr(event.event_specific_data, "user_failure_data", None)
        if failure is not None:
            found += [str(value.value) for value in failure.metadata.values()]
    return "\n".join(found)
