"""One Dagster run is one pipeline run: the lock, the ledger row and the audit log.

The resource starts a `PipelineRun` (pipeline/runner.py) when the Dagster run
starts and finishes it when the run ends, so a Dagster run and `python -m
pipeline run` never write the warehouse together, and both land in
`monitoring.pipeline_runs` and `monitoring.audit_log`. The steps are the
pipeline's own: `python -m ingestion`, dbt build (through dagster-dbt, for its
events), `python -m monitoring` and publish. This needs every step in one
process (the location's executor is `in_process_executor`): the lock is held
by the process that runs them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dagster import ConfigurableResource, Failure, InitResourceContext, MetadataValue
from dagster_dbt import DbtCliResource
from pydantic import Field, PrivateAttr

from pipeline import ledger, scope
from pipeline.runner import PipelineRun
from pipeline.steps import StepResult, dbt_outcome, make_context
from warehouse.settings import warehouse_path

from .metadata import with_table_metadata

COMMAND = "dagster"


def failure(result: StepResult, what: str) -> Failure:
    """A failed step as Dagster's Failure: the one-line reason, the step's own words below."""
    shown = "\n".join(x for x in (result.output, result.errors) if x.strip())
    metadata = {"output": MetadataValue.text(shown[-5000:])} if shown else {}
    return Failure(description=f"{what}: {result.error or 'failed'}", metadata=metadata)


class Warehouse(ConfigurableResource):
    """The warehouse a run writes, and the options `python -m pipeline run` would take."""

    project_dir: str = Field(default=".", description="the dbt project (and .dlt/) folder")
    inbox: str | None = Field(
        default=None, description="root folder, one subfolder per file source (--inbox)"
    )
    api_url: str | None = Field(default=None, description="base URL of rest_api sources")
    dbt_vars: str | None = Field(default=None, description="dbt --vars (YAML)")
    wait_seconds: float = Field(
        default=0.0, description="wait this long for another run to release the warehouse"
    )

    _run: PipelineRun | None = PrivateAttr(default=None)

    @contextmanager
    def yield_for_execution(self, context: InitResourceContext) -> Iterator[Warehouse]:
        ctx = make_context(warehouse_path(), Path(self.project_dir))
        dagster_run = context.run_id or "?"
        run = PipelineRun(
            COMMAND,
            ["--dagster-run", dagster_run],
            ctx,
            self.wait_seconds,
            holder=f"dagster run {dagster_run}",
        )
        problem = run.begin()
        if problem:  # nothing was written: the lock is taken before the ledger row
            raise Failure(description=problem)
        self._run = run
        interrupted = None
        try:
            yield self
        except BaseException as exc:
            interrupted = f"interrupted ({type(exc).__name__})"
            raise
        finally:
            error = interrupted or run.first_failure()
            ran = {r.name for r in run.results}
            run.skip(*(step for step in ledger.STEPS if step not in ran))
            run.finish(error)

    @property
    def run(self) -> PipelineRun:
        assert self._run is not None, "the warehouse resource is used outside a run"
        return self._run

    def ingest(self, source: str) -> StepResult:
        """`python -m ingestion <source>`; a load the CLI fails fails the asset."""
        result = self.run.ingest_step([source], self.inbox, self.api_url)
        if result.status != "ok":
            raise failure(result, f"ingest {source}")
        return result

    def build(self, dbt: DbtCliResource, context: Any, everything: bool) -> Iterator[Any]:
        """dbt build of the selected models through dagster-dbt: its events, our gate."""
        run, ctx = self.run, self.run.ctx
        events: list[Any] = []
        manifest: dict[str, Any] = {}
        run.record.check_kind = "full" if everything else "selected"
        # What `python -m pipeline run` records of a build, so that the next one builds
        # only what is new since this one did everything (pipeline/scope.py).
        recorded: dict[str, Any] = {
            "built_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f"),
            "check": run.record.check_kind,
        }

        def action() -> StepResult:
            args = ["build", *(["--vars", self.dbt_vars] if self.dbt_vars else [])]
            started = time.time()
            invocation = dbt.cli(
                args, context=context, target_path=ctx.target_dir, raise_on_error=False
            )
            events.extend(invocation.stream())
            manifest.update(invocation.manifest)
            code = invocation.process.wait()
            if everything:
                recorded.update(scope.state_now(ctx, self.dbt_vars))
            return dbt_outcome("build", ctx, list(invocation.process.args), code, started, "")

        result = run.step("build", action)
        run.record.dbt_invocation_id = result.data.get("dbt_invocation_id")
        run.record.detail["build_scope"] = recorded
        yield from with_table_metadata(events, ctx.warehouse, manifest)
        if result.status != "ok":
            raise failure(result, "build")

    def monitor(self) -> tuple[StepResult, list[dict[str, Any]]]:
        """`python -m monitoring`, and the alerts it wrote."""
        result = self.run.monitor_step()
        alerts: list[dict[str, Any]] = []
        if result.data.get("alerts_error") is not None:
            path = self.run.ctx.target_dir / "quality_alerts.json"
            alerts = json.loads(path.read_text(encoding="utf-8")).get("alerts", [])
        return result, alerts

    def publish(self) -> StepResult:
        """Publish when every gate of this run passed; a run without a build or monitor step
        checks the last build and monitors first, as `python -m pipeline publish` does."""
        run = self.run
        if problem := run.first_failure():
            raise Failure(description=f"not published: {problem}")
        ran = {r.name for r in run.results}
        if "build" not in ran and (result := run.last_build_step()).status != "ok":
            raise failure(result, "not published")
        if "monitor" not in ran and (result := run.monitor_step()).status != "ok":
            raise failure(result, "not published")
        result = run.publish_step()
        if result.status != "ok":
            raise failure(result, "publish")
        return result
