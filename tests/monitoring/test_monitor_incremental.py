"""`python -m monitoring --incremental`: unchanged tables are not read, changed ones are
counted against the stored fences, and the result is what a full measurement gives.

A table's version comes from the warehouse: `monitoring.dbt_model_builds` (the
row dbt's post-hook writes with every build, written here as that hook does),
and a source's newest `_dlt_load_id` and row count.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

from tests.monitoring.conftest import Project

BUILDS = """create table if not exists monitoring.dbt_model_builds (
    relation varchar primary key, invocation_id varchar not null, built_at timestamptz not null
)"""
MEASURES = ("row_count", "missing_rate", "duplicate_rate", "outlier_rate")


def built(project: Project, relation: str, invocation: str) -> None:
    """What record_build() records when dbt builds `relation`."""
    project.sql(
        "create schema if not exists monitoring",
        BUILDS,
        f"insert or replace into monitoring.dbt_model_builds values "
        f"('{relation}', '{invocation}', now())",
    )


def measured(project: Project, *args: str) -> dict[str, str]:
    """Run the monitor; {table: full | scanned | reused} from its summary table."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert project.run(*args) in (0, 1)
    lines = [line for line in out.getvalue().splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = [
        dict(zip(header, (c.strip() for c in line.strip("|").split("|")), strict=True))
        for line in lines[1:]
    ]
    return {row["table"]: row["measured"] for row in rows}


def values(project: Project, model: str) -> dict[Any, Any]:
    return {k: v for k, v in project.metrics(model).items() if k[1] in MEASURES}


def test_incremental_run_reads_only_what_changed(project: Project) -> None:
    project.sql(
        "create schema raw",
        "create schema marts",
        "create table raw.events as select i as event_id, "
        "case when i % 10 = 0 then null else i % 7 end as value, '1000.1' as _dlt_load_id "
        "from range(1000) t(i)",
        "create table marts.totals as select 1 as id, 5.0 as amount",
        "create view marts.events_view as select event_id, value from raw.events",
    )
    project.source("events", "events")
    totals = project.model("totals")
    view = project.model("events_view")
    project.nodes[view]["config"]["materialized"] = "view"
    project.nodes[view]["depends_on"]["nodes"] = ["source.fixture_project.events.events", totals]
    built(project, "marts.totals", "inv-1")
    built(project, "marts.events_view", "inv-1")

    assert set(measured(project).values()) == {"full"}  # no flag: every table, afresh
    full = {m: values(project, m) for m in ("raw.events", "marts.totals", "marts.events_view")}

    # Nothing changed: nothing is read, and every figure is the one measured.
    assert set(measured(project, "--incremental").values()) == {"reused"}
    assert {m: values(project, m) for m in full} == full

    # A load appends values far above the fences: the source and the view over it are
    # scanned, their outliers counted against the first run's fences (fresh quartiles
    # would now centre on the new values); the table is not read.
    project.sql("insert into raw.events select 1000 + i, 100, '1000.2' from range(2000) t(i)")
    assert measured(project, "--incremental") == {
        "marts.events_view": "scanned",
        "marts.totals": "reused",
        "raw.events": "scanned",
    }
    events = project.metrics("raw.events")
    assert events[(None, "row_count")] == 3000
    assert events[("value", "missing_rate")] == 100 / 3000
    assert events[("value", "outlier_rate")] == 2000 / 2900
    report = (project.target_dir / "quality_report.html").read_text(encoding="utf-8")
    section = report[report.index('data-model="raw.events"') :]
    assert "outlier fences computed at" in section.split("</section>")[0]

    # A full measurement computes the fences afresh: the new values are the bulk now.
    assert set(measured(project).values()) == {"full"}
    assert project.metrics("raw.events")[("value", "outlier_rate")] == 0

    # dbt rebuilds the table (the hook's row changes): the table and the view are read.
    built(project, "marts.totals", "inv-2")
    assert measured(project, "--incremental") == {
        "marts.events_view": "scanned",
        "marts.totals": "scanned",
        "raw.events": "reused",
    }

    # Rows deleted in place (an erasure: same newest load id): the count gives it away.
    project.sql("delete from raw.events where event_id < 5")
    assert measured(project, "--incremental")["raw.events"] == "scanned"
    assert project.metrics("raw.events")[(None, "row_count")] == 2995

    # A new threshold changes what the stored aggregates mean: measured again.
    project.vars["outlier_iqr_factor"] = 3.0
    assert set(measured(project, "--incremental").values()) == {"full"}


def test_a_new_group_gets_fences_of_its_own(project: Project) -> None:
    """Fences per group are kept per group (here a date's); a new group gets its quartiles."""
    project.sql(
        "create schema raw",
        "create table raw.events as select i as event_id, "
        "case when i % 2 = 0 then date '2026-01-01' else date '2026-01-02' end as category, "
        "case when i % 2 = 0 then i % 10 else 1000 + i % 10 end as value, "
        "'1000.1' as _dlt_load_id from range(1000) t(i)",
    )
    uid = project.source("events", "events")
    project.sources[uid]["columns"] = {"value": {"meta": {"outlier_group_by": "category"}}}
    project.sources[uid]["columns"]["value"]["config"] = {"meta": {"outlier_group_by": "category"}}
    assert measured(project) == {"raw.events": "full"}
    assert project.metrics("raw.events")[("value", "outlier_rate")] == 0

    # New rows of both groups at the other group's scale: outliers against the stored
    # fences of their own group.
    project.sql(
        "insert into raw.events values "
        "(5000, '2026-01-01', 1005, '1000.2'), (5001, '2026-01-02', 5, '1000.2')"
    )
    assert measured(project, "--incremental") == {"raw.events": "scanned"}
    assert project.metrics("raw.events")[("value", "outlier_rate")] == 2 / 1002

    # A new category has no fence yet: the column's fences are computed afresh.
    project.sql(
        "insert into raw.events select 6000 + i, '2027-01-01', 10**6 + i, '1000.3' "
        "from range(10) t(i)"
    )
    assert measured(project, "--incremental") == {"raw.events": "scanned"}
    assert project.metrics("raw.events")[("value", "outlier_rate")] == 2 / 1012
    state = project.query("select aggregates from monitoring.quality_table_state")[0][0]
    assert '"2027-01-01"' in state
