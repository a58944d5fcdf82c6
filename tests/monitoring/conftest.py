"""Monitor fixtures: a temp DuckDB warehouse and dbt artifacts written in dbt 1.11's shape.

The manifest and run_results are minimal but keep the keys dbt-core 1.11.16
writes (learned from a throwaway project): model nodes with `config.meta`,
`columns.<c>.meta`, `fqn`, `alias`; test nodes with `test_metadata` and
`attached_node` (null for source tests, which point through `depends_on`);
sources with `identifier`, `loaded_at_field`, `freshness`. No dependency on the
project's models.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from monitoring.cli import main

PROJECT = "fixture_project"
NOW = "2026-01-10T12:00:00Z"
PROJECT_VARS = {
    "missing_rate_warn": 0.05,
    "duplicate_rate_error": 0.01,
    "outlier_rate_warn": 0.10,
    "outlier_iqr_factor": 1.5,
    "freshness_warn_hours": 24,
    "freshness_error_hours": 48,
}


def _column(name: str, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    meta = meta or {}
    return {
        "name": name,
        "description": "",
        "meta": meta,
        "data_type": None,
        "constraints": [],
        "quote": None,
        "config": {"meta": meta, "tags": []},
        "tags": [],
        "granularity": None,
        "doc_blocks": [],
    }


class Project:
    """A dbt project's artifacts plus its warehouse, as the monitor finds them after a build."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.target_dir = root / "target"
        self.warehouse = root / "warehouse.duckdb"
        self.vars: dict[str, Any] = dict(PROJECT_VARS)
        self.cli_vars: dict[str, Any] = {}
        self.nodes: dict[str, dict[str, Any]] = {}
        self.sources: dict[str, dict[str, Any]] = {}
        self.results: list[dict[str, Any]] = []
        self.invocation_id = str(uuid.uuid4())

    # --- warehouse -------------------------------------------------------------------
    def sql(self, *statements: str) -> None:
        with duckdb.connect(str(self.warehouse)) as con:
            for statement in statements:
                con.execute(statement)

    def query(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        with duckdb.connect(str(self.warehouse), read_only=True) as con:
            return con.execute(sql, params or []).fetchall()

    # --- dbt artifacts ---------------------------------------------------------------
    def model(
        self,
        name: str,
        schema: str = "marts",
        meta: dict[str, Any] | None = None,
        columns: dict[str, dict[str, Any]] | None = None,
        alias: str | None = None,
        folder: str = "marts",
        unique: list[str] | tuple[str, ...] = (),
        status: str = "success",
    ) -> str:
        """A table model; `unique` adds a `unique` test per column (passing unless told)."""
        uid = f"model.{PROJECT}.{name}"
        meta = meta or {}
        self.nodes[uid] = {
            "resource_type": "model",
            "name": name,
            "unique_id": uid,
            "package_name": PROJECT,
            "path": f"{folder}/{name}.sql",
            "original_file_path": f"models/{folder}/{name}.sql",
            "fqn": [PROJECT, folder, name],
            "database": "warehouse",
            "schema": schema,
            "alias": alias or name,
            "relation_name": f'"warehouse"."{schema}"."{alias or name}"',
            "meta": meta,
            "tags": [],
            "config": {
                "enabled": True,
                "materialized": "table",
                "schema": schema,
                "alias": alias,
                "meta": meta,
                "unique_key": None,
                "tags": [],
            },
            "columns": {c: _column(c, m) for c, m in (columns or {}).items()},
            "primary_key": [],
            "depends_on": {"macros": [], "nodes": []},
            "unrendered_config": {"materialized": "table", "schema": schema},
        }
        self.result(uid, status)
        for column in unique:
            self.test(uid, "unique", column)
        return uid

    def source(
        self,
        source_name: str,
        name: str,
        schema: str = "raw",
        meta: dict[str, Any] | None = None,
        loaded_at_field: str | None = None,
        freshness: dict[str, Any] | None | str = "default",
    ) -> str:
        uid = f"source.{PROJECT}.{source_name}.{name}"
        meta = meta or {}
        default_freshness = {
            "warn_after": {"count": None, "period": None},
            "error_after": {"count": None, "period": None},
            "filter": None,
        }
        fresh = default_freshness if freshness == "default" else freshness
        self.sources[uid] = {
            "database": "warehouse",
            "schema": schema,
            "name": name,
            "resource_type": "source",
            "package_name": PROJECT,
            "unique_id": uid,
            "fqn": [PROJECT, source_name, name],
            "source_name": source_name,
            "identifier": name,
            "loaded_at_field": loaded_at_field,
            "freshness": fresh,
            "columns": {},
            "meta": meta,
            "source_meta": {},
            "tags": [],
            "config": {
                "enabled": True,
                "meta": meta,
                "loaded_at_field": loaded_at_field,
                "freshness": fresh,
                "tags": [],
            },
            "relation_name": f'"warehouse"."{schema}"."{name}"',
        }
        return uid

    def test(
        self,
        owner: str,
        kind: str,
        column: str,
        status: str = "pass",
        failures: int = 0,
        after_build: bool = False,
        where: str | None = None,
        stored: str | None = None,
    ) -> str:
        """A test's node and result; by default it ran alongside its model's build.

        `after_build` runs it after the model's build finished, as `dbt build`
        orders a model's tests; `where` is the test's `where` config; `stored` the
        relation its failing rows are kept in (store_failures).
        """
        name = f"{kind}_{owner.split('.')[-1]}_{column}".replace(" ", "_").replace('"', "")
        uid = f"test.{PROJECT}.{name}.{uuid.uuid4().hex[:10]}"
        is_source = owner.startswith("source.")
        self.nodes[uid] = {
            "resource_type": "test",
            "name": name,
            "unique_id": uid,
            "package_name": PROJECT,
            "database": "warehouse",
            "schema": "main_dbt_test__audit",
            "alias": name,
            "relation_name": stored,
            "column_name": column,
            "attached_node": None if is_source else owner,
            "test_metadata": {
                "name": kind,
                "kwargs": {"column_name": column, "model": "{{ get_where_subquery(ref('x')) }}"},
                "namespace": None,
            },
            "depends_on": {"macros": [f"macro.dbt.test_{kind}"], "nodes": [owner]},
            "config": {
                "enabled": True,
                "materialized": "test",
                "severity": "ERROR",
                "meta": {},
                "where": where,
                "store_failures": stored is not None,
            },
            "meta": {},
            "columns": {},
            "tags": [],
        }
        message = (
            None if status == "pass" else f"Got {failures} results, configured to fail if != 0"
        )
        self.result(uid, status, failures=failures, message=message, after_build=after_build)
        return uid

    def result(
        self,
        uid: str,
        status: str,
        failures: int | None = None,
        message: str | None = "OK",
        after_build: bool = False,
    ) -> None:
        # a build's execute step ends at 11:59:01; a test after it starts at 11:59:01.2
        second = "01.2" if after_build else "00.1"
        self.results.append(
            {
                "status": status,
                "timing": [
                    {
                        "name": "compile",
                        "started_at": "2026-01-10T11:59:00.000000Z",
                        "completed_at": "2026-01-10T11:59:00.100000Z",
                    },
                    {
                        "name": "execute",
                        "started_at": f"2026-01-10T11:59:{second}00000Z",
                        "completed_at": "2026-01-10T11:59:01.000000Z"
                        if not after_build
                        else "2026-01-10T11:59:01.500000Z",
                    },
                ],
                "thread_id": "Thread-1 (worker)",
                "execution_time": 0.9,
                "adapter_response": {"_message": "OK"},
                "message": message,
                "failures": failures,
                "unique_id": uid,
                "compiled": True,
                "compiled_code": "select 1",
                "relation_name": None,
                "batch_results": None,
            }
        )

    def write(self) -> None:
        self.target_dir.mkdir(parents=True, exist_ok=True)
        lines = [f"name: {PROJECT}", 'version: "0.1.0"', "config-version: 2", "vars:"]
        lines += [f"  {k}: {json.dumps(v)}" for k, v in self.vars.items()]
        (self.root / "dbt_project.yml").write_text("\n".join(lines) + "\n", encoding="utf-8")
        metadata = {
            "dbt_version": "1.11.16",
            "generated_at": "2026-01-10T11:59:02.000000Z",
            "invocation_id": self.invocation_id,
            "invocation_started_at": "2026-01-10T11:58:59.000000Z",
            "env": {},
        }
        manifest = {
            "metadata": {
                **metadata,
                "dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json",
                "project_name": PROJECT,
                "adapter_type": "duckdb",
            },
            "nodes": self.nodes,
            "sources": self.sources,
            **{
                key: {}
                for key in (
                    "macros",
                    "docs",
                    "exposures",
                    "metrics",
                    "groups",
                    "selectors",
                    "disabled",
                    "parent_map",
                    "child_map",
                    "group_map",
                    "saved_queries",
                    "semantic_models",
                    "unit_tests",
                    "functions",
                )
            },
        }
        run_results = {
            "metadata": {
                **metadata,
                "dbt_schema_version": "https://schemas.getdbt.com/dbt/run-results/v6.json",
            },
            "results": self.results,
            "elapsed_time": 3.0,
            "args": {"which": "build", "vars": self.cli_vars},
        }
        (self.target_dir / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
        (self.target_dir / "run_results.json").write_text(json.dumps(run_results), encoding="utf-8")

    # --- the monitor -----------------------------------------------------------------
    def args(self, *extra: str, now: str | None = NOW) -> list[str]:
        base = ["--target-dir", str(self.target_dir), "--project-dir", str(self.root)]
        return base + (["--now", now] if now else []) + list(extra)

    def run(self, *extra: str, now: str | None = NOW) -> int:
        self.write()
        return main(self.args(*extra, now=now))

    def alerts(self) -> list[dict[str, Any]]:
        document = json.loads((self.target_dir / "quality_alerts.json").read_text("utf-8"))
        return document["alerts"]

    def metrics(self, model: str, run: int = -1) -> dict[tuple[str | None, str], float | None]:
        """{(column, metric): value} of one model in one run (default the latest)."""
        runs = [
            r
            for (r,) in self.query("select run_id from monitoring.quality_runs order by started_at")
        ]
        rows = self.query(
            "select column_name, metric, value from monitoring.quality_metrics "
            "where run_id = ? and model = ?",
            [runs[run], model],
        )
        return {(c, m): v for c, m, v in rows}

    def statuses(self, model: str) -> dict[tuple[str | None, str], str]:
        rows = self.query(
            "select column_name, metric, status from monitoring.quality_metrics m "
            "where model = ? and run_id = (select run_id from monitoring.quality_runs "
            "order by started_at desc limit 1)",
            [model],
        )
        return {(c, m): s for c, m, s in rows}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    monkeypatch.setenv("WAREHOUSE_PATH", str(tmp_path / "warehouse.duckdb"))
    monkeypatch.delenv("MONITORING_WEBHOOK_URL", raising=False)
    yield Project(tmp_path)
