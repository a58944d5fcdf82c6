"""The Dagster definitions, built from the project as it is configured (no `from __future__
import annotations` here: Dagster reads the parameters' type hints at definition time).

- one multi-asset per declared source: its raw tables, keyed like dagster-dbt
  keys dbt sources (`[source, table]`), so each staging model depends on them;
- the dbt models and seeds from dbt's manifest (dagster-dbt), their tests as
  asset checks; models of undeclared sources left out as the pipeline does;
- `quality_monitor` checks on the marts (blocking: an error alert stops publish) and on
  the raw tables (shown there, as the report shows them), dbt's source tests too;
- `analytics`: the published file, downstream of every mart;
- a job of everything, its schedule (`[pipeline] schedule`, cron, UTC) and one
  sensor per file source that requests a run when new files arrive.
"""

import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AssetSelection,
    AssetSpec,
    DagsterInvalidDefinitionError,
    Definitions,
    Failure,
    MaterializeResult,
    MetadataValue,
    RunRequest,
    ScheduleDefinition,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    asset,
    define_asset_job,
    in_process_executor,
    multi_asset,
    multi_asset_check,
    sensor,
)
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliResource,
    DbtProject,
    dbt_assets,
)
from dagster_shared.record import replace

from pipeline.steps import make_context
from warehouse.settings import warehouse_path
from warehouse.sources import BOOKKEEPING_SOURCE

from . import project
from .metadata import describe_test, raw_table_rows
from .project import Source
from .resources import Warehouse

JOB = "warehouse"
MONITOR_CHECK = "quality_monitor"
PUBLISHED = AssetKey("analytics")
REJECTED_ROWS = AssetKey([BOOKKEEPING_SOURCE, "_rejected_rows"])


class Translator(DagsterDbtTranslator):
    """dagster-dbt's keys; groups by layer (staging, intermediate, marts, ...). dbt's tests on
    sources are checks of the source assets, so Dagster shows what the report shows."""

    def __init__(self) -> None:
        super().__init__(DagsterDbtTranslatorSettings(enable_source_tests_as_checks=True))

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        fqn = dbt_resource_props.get("fqn") or []
        return fqn[1] if len(fqn) > 2 else dbt_resource_props.get("resource_type")

    def get_asset_check_spec(
        self,
        asset_spec: AssetSpec,
        manifest: Mapping[str, Any],
        unique_id: str,
        project: DbtProject | None,
    ) -> AssetCheckSpec | None:
        """dagster-dbt's check, described: the test, its column and arguments. The name
        stays dbt's: it is what `dbt build --select` takes and how dagster-dbt matches
        the test's result to the check."""
        spec = super().get_asset_check_spec(asset_spec, manifest, unique_id, project)
        if spec is None or spec.description:
            return spec
        return replace(spec, description=describe_test(manifest["nodes"][unique_id]))


def source_asset(source: Source) -> AssetsDefinition:
    specs = [
        AssetSpec(
            [source.name, table],
            group_name="sources",
            kinds={"dlt", "duckdb"},
            description=f"raw.{table}, loaded by `python -m ingestion {source.name}` "
            f"({source.kind}; unparsable rows go to raw._rejected_rows)",
        )
        for table in source.tables
    ]

    @multi_asset(name=f"ingest_{source.name}", specs=specs)
    def ingest(warehouse: Warehouse) -> Iterator[MaterializeResult]:
        result = warehouse.ingest(source.name)
        rows = raw_table_rows(
            warehouse.run.ctx.warehouse,
            source.name,
            source.tables,
            result.data.get("dlt_load_ids") or [],
        )
        for spec in specs:
            table = spec.key.path[-1]
            yield MaterializeResult(
                asset_key=spec.key, metadata={**rows.get(table, {}), "source run": result.detail}
            )

    return ingest


def dbt_models(dbt_project: DbtProject, exclude: str | None) -> AssetsDefinition:
    @dbt_assets(
        manifest=dbt_project.manifest_path,
        project=dbt_project,
        exclude=exclude,
        dagster_dbt_translator=Translator(),
    )
    def dbt_models(
        context: AssetExecutionContext, dbt: DbtCliResource, warehouse: Warehouse
    ) -> Iterator[Any]:
        everything = not context.is_subset
        yield from warehouse.build(dbt, context, everything)

    return dbt_models


def monitor_checks(
    mart_relations: dict[AssetKey, str], source_relations: dict[AssetKey, str]
) -> Any:
    """The monitor's verdict on each mart (blocking: an error alert stops publish) and on
    each source table (a warning or an error shown on the source, as in the report)."""
    described = (
        "python -m monitoring: thresholds, anomalies and dbt test results of this table "
        "(error alerts fail, warnings warn)"
    )
    specs = [
        AssetCheckSpec(MONITOR_CHECK, asset=key, blocking=True, description=described)
        for key in mart_relations
    ] + [
        AssetCheckSpec(MONITOR_CHECK, asset=key, blocking=False, description=described)
        for key in source_relations
    ]
    relations = {**mart_relations, **source_relations}

    @multi_asset_check(specs=specs, name=MONITOR_CHECK, can_subset=True)
    def quality_monitor(
        context: AssetCheckExecutionContext, warehouse: Warehouse
    ) -> Iterator[AssetCheckResult]:
        result, alerts = warehouse.monitor()  # measures everything: one run of the monitor
        if not alerts and result.status != "ok":  # the monitor did not measure
            raise Failure(description=result.error)
        selected = {check.asset_key for check in context.selected_asset_check_keys}
        for key, relation in relations.items():
            if key not in selected:
                continue
            mine = [a for a in alerts if a.get("model") == relation]
            errors = [a for a in mine if a.get("severity") == "error"]
            yield AssetCheckResult(
                asset_key=key,
                check_name=MONITOR_CHECK,
                passed=not mine,
                severity=AssetCheckSeverity.ERROR if errors else AssetCheckSeverity.WARN,
                metadata={
                    "errors": len(errors),
                    "warnings": len(mine) - len(errors),
                    "alerts": MetadataValue.md(alert_table(mine)),
                },
            )
        if result.status != "ok":  # an error alert on a table that is no mart also blocks
            raise Failure(description=result.error)

    return quality_monitor


def alert_table(alerts: list[dict[str, Any]]) -> str:
    if not alerts:
        return "no alerts"
    rows = ["| severity | column | metric | value | message |", "|---|---|---|---|---|"]
    for a in alerts:
        message = str(a.get("message", "")).replace("|", "/")
        rows.append(
            f"| {a['severity']} | {a.get('column') or ''} | {a['metric']} "
            f"| {a.get('value')} | {message} |"
        )
    return "\n".join(rows)


def published_asset(mart_keys: list[AssetKey]) -> AssetsDefinition:
    @asset(
        key=PUBLISHED,
        deps=mart_keys,
        group_name="publish",
        kinds={"duckdb"},
        description="analytics.duckdb: every mart, PII masked, swapped in atomically; "
        "materialized only when every blocking check of the run passed",
    )
    def analytics(warehouse: Warehouse) -> MaterializeResult:
        result = warehouse.publish()
        tables = result.data["tables"]
        return MaterializeResult(
            metadata={
                "path": str(warehouse.run.ctx.analytics),
                "tables": len(tables),
                "rows": sum(tables.values()),
                "detail": result.detail,
            }
        )

    return analytics


def file_signatures(source: Source) -> list[str]:
    """`name|size|mtime` of each file the source would read: new or changed files differ."""
    if source.folder is None or not source.folder.is_dir():
        return []
    found = []
    for path in sorted(source.folder.glob(source.glob)):
        if path.is_file() and not path.name.startswith("."):
            stat = path.stat()
            found.append(f"{path.name}|{stat.st_size}|{stat.st_mtime_ns}")
    return found


def new_files_sensor(source: Source, interval: int) -> SensorDefinition:
    """A run of the source and what is downstream of it when its folder has new files."""
    selection = AssetSelection.assets(*(AssetKey([source.name, t]) for t in source.tables))

    @sensor(
        name=f"new_files_{source.name}",
        target=selection.downstream(),
        minimum_interval_seconds=interval,
        description=f"new or changed {source.glob} files in {source.folder}",
    )
    def new_files(context: SensorEvaluationContext) -> RunRequest | SkipReason:
        seen = set(json.loads(context.cursor)) if context.cursor else set()
        now = file_signatures(source)
        new = [s for s in now if s not in seen]
        context.update_cursor(json.dumps(now))
        if not new:
            return SkipReason(f"no new files in {source.folder}")
        key = hashlib.sha256("\n".join(new).encode()).hexdigest()[:16]
        names = ", ".join(s.split("|", 1)[0] for s in new)
        return RunRequest(run_key=f"{source.name}:{key}", tags={"new_files": names[:200]})

    return new_files


def build_definitions(
    project_dir: Path | None = None,
    inbox: str | None = None,
    api_url: str | None = None,
    dbt_vars: str | None = None,
    sensor_interval: int = 30,
) -> Definitions:
    """Everything from the project in `project_dir` (default $DBT_PROJECT_DIR or .)."""
    project_dir = project_dir or Path(os.environ.get("DBT_PROJECT_DIR", "."))
    job = define_asset_job(JOB, selection=AssetSelection.all())
    cron = project.run_schedule()
    try:
        schedule = ScheduleDefinition(
            name=f"{JOB}_schedule",
            job=job,
            cron_schedule=cron,
            execution_timezone="UTC",
            description="[pipeline] schedule in .dlt/config.toml (cron, UTC)",
        )
    except DagsterInvalidDefinitionError:
        raise project.ScheduleError(
            f"pipeline.schedule is {cron!r} (.dlt/config.toml or {project.SCHEDULE_ENV}); "
            "expected a cron expression such as '0 * * * *'"
        ) from None
    ctx = make_context(warehouse_path(), project_dir)
    dbt_project = project.dbt_project(ctx)
    dbt_project.prepare_if_dev()
    manifest = project.read_manifest(dbt_project.manifest_path)
    sources = project.sources(ctx, inbox)
    models = dbt_models(dbt_project, project.dbt_exclude(project_dir))
    translator = Translator()
    mart_relations = {
        key: relation
        for props, relation in project.marts(manifest)
        if (key := translator.get_asset_key(props)) in models.keys
    }
    measured = {relation for _, relation in project.raw_tables(manifest)}  # the monitor's
    raw = {AssetKey([s.name, table]): f"raw.{table}" for s in sources for table in s.tables}
    source_relations = {key: relation for key, relation in raw.items() if relation in measured}
    rejected = AssetSpec(
        REJECTED_ROWS,
        group_name="sources",
        description="raw._rejected_rows: what no source could parse, with location and reason "
        "(written by every source's ingestion)",
    )
    return Definitions(
        assets=[
            *(source_asset(s) for s in sources),
            rejected,
            models,
            published_asset(list(mart_relations)),
        ],
        asset_checks=[monitor_checks(mart_relations, source_relations)]
        if mart_relations or source_relations
        else [],
        jobs=[job],
        schedules=[schedule],
        sensors=[new_files_sensor(s, sensor_interval) for s in sources if s.folder],
        resources={
            "warehouse": Warehouse(
                project_dir=str(project_dir), inbox=inbox, api_url=api_url, dbt_vars=dbt_vars
            ),
            "dbt": DbtCliResource(project_dir=dbt_project, dbt_executable=ctx.dbt),
        },
        executor=in_process_executor,
    )
