"""What the code location reads from the project: its declared sources, dbt's manifest and
the run schedule. Nothing here knows the sample domain.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dagster_dbt import DbtProject, DbtProjectPreparer
from dagster_shared.record import replace

from pipeline.scope import pipeline_setting, project_fingerprint
from pipeline.steps import Context, dbt_command, run_command
from warehouse.sources import undeclared_dbt_sources

SCHEDULE_ENV = "PIPELINE__SCHEDULE"
DEFAULT_SCHEDULE = "0 * * * *"  # hourly, UTC


@dataclass(frozen=True)
class Source:
    """A declared source: the raw tables it loads, and the folder a file source reads."""

    name: str
    kind: str
    tables: tuple[str, ...]
    folder: Path | None = None
    glob: str = ""


def sources(ctx: Context, inbox: str | None) -> list[Source]:
    """Every declared source as its kind describes it (`python -m ingestion describe`, a
    child process like every ingestion step): its raw tables and the folder and glob a
    file sensor watches. The location never branches on a kind's name."""
    command = [ctx.python, "-m", "ingestion", "describe", *(["--inbox", inbox] if inbox else [])]
    done = run_command(command, ctx, capture_stdout=True)
    if done.returncode != 0:
        raise RuntimeError(f"python -m ingestion describe failed (exit {done.returncode})")
    found = []
    for name, source in json.loads(done.stdout).items():
        folder, glob = source["watch"] or (None, "")
        found.append(
            Source(
                name,
                source["kind"],
                tuple(sorted(source["tables"])),
                Path(folder) if folder else None,
                glob,
            )
        )
    return found


def dbt_exclude(project_dir: Path) -> str | None:
    """The models of undeclared sources stay out, as in `python -m pipeline run`."""
    names = undeclared_dbt_sources(project_dir)
    return " ".join(f"source:{name}+" for name in names) or None


MANIFEST_TARGET = Path("dagster")  # under the project's target folder: a run's artifacts stay


def dbt_project(ctx: Context) -> DbtProject:
    """The project as dagster-dbt's DbtProject, its manifest prepared by `Preparer`."""
    project = DbtProject(
        ctx.project_dir,
        target_path=ctx.target_dir / MANIFEST_TARGET,
        profiles_dir=ctx.env["DBT_PROFILES_DIR"],
    )
    return replace(project, preparer=Preparer(ctx))  # DbtProject is a frozen record


class Preparer(DbtProjectPreparer):
    """`dbt parse` when the manifest is missing or older than the project.

    dagster-dbt's own preparer parses on every load under `dg dev` and never elsewhere,
    and runs `dbt deps`. Here the tool's dbt package is linked, not installed, and parsing
    is keyed on what the manifest depends on (the project's dbt files, the tool's
    package, the profile and the dbt settings in the environment, which decide the
    relations' names), so a load with nothing changed reads the manifest as it is, under
    `dg dev` and in a deployment alike."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def prepare_if_dev(self, project: DbtProject) -> None:
        stamp = stamp_path(project)
        prepared = project.manifest_path.is_file() and stamp.is_file()
        if not prepared or stamp.read_text(encoding="utf-8").strip() != manifest_state(self.ctx):
            self.prepare(project)

    def prepare(self, project: DbtProject) -> None:
        state = manifest_state(self.ctx)
        target = project.manifest_path.parent
        command = dbt_command(self.ctx, "parse", "--quiet", "--target-path", str(target))
        done = run_command(command, self.ctx, capture_stdout=True)
        if done.returncode != 0:
            raise RuntimeError(f"dbt parse failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
        stamp_path(project).write_text(state + "\n", encoding="utf-8")


def stamp_path(project: DbtProject) -> Path:
    return project.manifest_path.with_name("manifest.state")


def manifest_state(ctx: Context) -> str:
    """What the manifest depends on, as one digest."""
    profiles = Path(ctx.env["DBT_PROFILES_DIR"]) / "profiles.yml"
    settings = sorted((k, v) for k, v in ctx.env.items() if k.startswith(("DBT_", "WAREHOUSE_")))
    digest = hashlib.sha256(project_fingerprint(ctx.project_dir, None).encode())
    digest.update(json.dumps(settings).encode())
    if profiles.is_file():
        digest.update(profiles.read_bytes())
    return digest.hexdigest()


def read_manifest(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def marts(manifest: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """(manifest node, its relation `schema.table` as the monitor names it) of every mart."""
    return [
        (props, f"{props['schema']}.{props['alias']}")
        for props in manifest.get("nodes", {}).values()
        if props["resource_type"] == "model" and props["fqn"][1:2] == ["marts"]
    ]


def raw_tables(manifest: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """(manifest source, its relation `schema.table` as the monitor names it) of every raw table."""
    return [
        (props, f"{props['schema']}.{props.get('identifier') or props['name']}")
        for props in manifest.get("sources", {}).values()
        if props["schema"] == "raw"
    ]


class ScheduleError(ValueError):
    """`[pipeline] schedule` is no cron expression."""


def run_schedule() -> str:
    """The runs' cron schedule (UTC): env PIPELINE__SCHEDULE, else `[pipeline] schedule`."""
    return pipeline_setting("schedule") or DEFAULT_SCHEDULE
