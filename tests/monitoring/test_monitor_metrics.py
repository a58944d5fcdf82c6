"""Exact metric values, threshold edges and discovery, on fixture tables with known rates."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pytest

from monitoring.cli import main
from monitoring.config import Thresholds
from monitoring.manifest import Target
from monitoring.metrics import Measurement, measure_table

if TYPE_CHECKING:
    from conftest import Project

# id, name, amount, flag, created_at (naive = UTC)
ROWS = [
    (1, "a", 1.0, True, "2026-01-08 00:00:00"),
    (2, None, 2.0, False, "2026-01-08 01:00:00"),
    (3, "c", 3.0, True, "2026-01-08 02:00:00"),
    (4, None, 4.0, True, "2026-01-08 03:00:00"),
    (5, "e", 5.0, True, "2026-01-08 04:00:00"),
    (6, "f", 6.0, True, "2026-01-09 00:00:00"),
    (7, "g", 7.0, True, None),
    (8, "h", 8.0, True, "2026-01-09 02:00:00"),
    (9, "i", 100.0, True, "2026-01-09 03:00:00"),
    (9, "i", None, True, "2026-01-09 06:00:00"),
]


def sql_value(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return str(value).lower() if isinstance(value, bool) else str(value)


def create(project: Project, table: str, columns: str, rows: list[tuple[object, ...]]) -> None:
    values = ", ".join("(" + ", ".join(sql_value(v) for v in row) + ")" for row in rows)
    project.sql(
        "create schema if not exists marts",
        "create schema if not exists raw",
        f"create or replace table {table} ({columns})",
        *([f"insert into {table} values {values}"] if rows else []),
    )


def quantile_cont(values: list[float], p: float) -> float:
    """Linear interpolation between closest ranks (DuckDB's quantile_cont)."""
    ordered = sorted(values)
    position = p * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def test_exact_metrics_on_a_fixture_table(project: Project) -> None:
    create(
        project,
        "marts.measured",
        "id integer, name varchar, amount double, flag boolean, created_at timestamp",
        ROWS,
    )
    project.model("measured", meta={"monitor_timestamp_column": "created_at"}, unique=["id"])
    code = project.run()

    m = project.metrics("marts.measured")
    rows = len(ROWS)
    assert m[(None, "row_count")] == 10
    assert m[(None, "column_count")] == 5
    # missing per column: name 2, amount 1, created_at 1 of 10 rows
    assert m[("id", "missing_rate")] == 0
    assert m[("name", "missing_rate")] == 2 / rows
    assert m[("amount", "missing_rate")] == 1 / rows
    assert m[("flag", "missing_rate")] == 0
    assert m[("created_at", "missing_rate")] == 1 / rows
    assert m[(None, "missing_rate")] == 4 / (rows * 5)
    # duplicates by the unique-tested key: 10 rows, 9 distinct ids
    assert m[("id", "duplicate_rate")] == 1 / rows
    # IQR outliers: amounts 1..8 and 100 -> q1 3, q3 7, bounds [-3, 13] -> one of nine
    amounts = [r[2] for r in ROWS if r[2] is not None]
    q1, q3 = quantile_cont(amounts, 0.25), quantile_cont(amounts, 0.75)
    assert (q1, q3) == (3.0, 7.0)
    low, high = q1 - 1.5 * (q3 - q1), q3 + 1.5 * (q3 - q1)
    assert m[("amount", "outlier_rate")] == sum(a < low or a > high for a in amounts) / 9 == 1 / 9
    # the key and the boolean are not measured for outliers
    assert ("id", "outlier_rate") not in m and ("flag", "outlier_rate") not in m
    # freshness: newest 2026-01-09 06:00 against the fixed clock 2026-01-10 12:00
    assert m[("created_at", "freshness_hours")] == 30.0

    statuses = project.statuses("marts.measured")
    assert statuses[("name", "missing_rate")] == "warn"
    assert statuses[("id", "duplicate_rate")] == "error"
    assert statuses[("amount", "outlier_rate")] == "warn"
    assert statuses[("created_at", "freshness_hours")] == "warn"
    assert code == 1  # the duplicate rate is error-level
    alerts = {(a["column"], a["metric"]): a for a in project.alerts()}
    duplicate = alerts[("id", "duplicate_rate")]
    assert duplicate["severity"] == "error"
    assert duplicate["model"] == "marts.measured"
    assert duplicate["value"] == 0.1 and duplicate["threshold"] == 0.01
    assert "duplicate_rate of marts.measured.id is 10.00%" in duplicate["message"]
    assert set(alerts) == {
        ("name", "missing_rate"),
        ("amount", "missing_rate"),
        ("created_at", "missing_rate"),
        (None, "missing_rate"),
        ("id", "duplicate_rate"),
        ("amount", "outlier_rate"),
        ("created_at", "freshness_hours"),
    }


def test_a_unique_test_that_passed_on_this_build_stands_for_the_duplicate_count(
    project: Project,
) -> None:
    # Every table holds 10 rows with one duplicated id (a 10% duplicate rate). Only
    # "proven" is reported at 0: its `unique` test passed after this build, so the
    # monitor takes dbt's count instead of recounting (the artifact is made to
    # contradict the table here precisely to show which count was used).
    dup_rows = [(i,) for i in range(9)] + [(0,)]
    for name in ("proven", "stale", "filtered", "failed"):
        create(project, f"marts.{name}", "id integer", dup_rows)
    create(project, "raw.things", "id integer", dup_rows)
    for name in ("proven", "stale", "filtered", "failed"):
        project.model(name, meta={"unique_key": "id"})
    project.test("model.fixture_project.proven", "unique", "id", after_build=True)
    project.test("model.fixture_project.stale", "unique", "id")  # ran alongside the build
    project.test("model.fixture_project.filtered", "unique", "id", after_build=True, where="id > 0")
    project.test(
        "model.fixture_project.failed", "unique", "id", "fail", failures=1, after_build=True
    )
    source = project.source("things", "things", meta={"unique_key": "id"})
    project.test(source, "unique", "id", after_build=True)  # a load may follow dbt
    project.run()

    assert project.metrics("marts.proven")[("id", "duplicate_rate")] == 0
    for model in ("marts.stale", "marts.filtered", "marts.failed", "raw.things"):
        assert project.metrics(model)[("id", "duplicate_rate")] == 1 / 10, model


def test_integer_columns_get_exact_quartiles_by_value_counts_or_quantile_cont(
    project: Project,
) -> None:
    # hour: 0..23 spans 24 steps (counted per value); cents: 0..10^6 (quantile_cont)
    hours = [h % 24 for h in range(97)] + [None, 90, 91]
    cents = [(i * 7919) % 1_000_003 for i in range(97)] + [None, 50_000_000, 60_000_000]
    create(
        project, "marts.ints", "hour integer, cents bigint", list(zip(hours, cents, strict=True))
    )
    project.model("ints")
    project.run()

    m = project.metrics("marts.ints")
    for column, values in (("hour", hours), ("cents", cents)):
        present = [v for v in values if v is not None]
        q1, q3 = quantile_cont(present, 0.25), quantile_cont(present, 0.75)
        low, high = q1 - 1.5 * (q3 - q1), q3 + 1.5 * (q3 - q1)
        outliers = sum(v < low or v > high for v in present)
        assert outliers == 2, column  # the two planted values, nothing else
        assert m[(column, "outlier_rate")] == outliers / len(present), column


def test_quartiles_from_value_counts_equal_duckdb_quantile_cont() -> None:
    import random

    from monitoring.metrics import _interpolated_quartiles

    rng = random.Random(11)
    with duckdb.connect() as con:
        for size in (1, 2, 3, 4, 5, 8, 13, 100, 1001):
            values = [rng.randint(-5, 30) for _ in range(size)]
            counts = {v: values.count(v) for v in set(values)}
            expected = con.execute(
                "select quantile_cont(v::double, [0.25, 0.75]) from unnest(?) as t(v)", [values]
            ).fetchone()[0]
            assert _interpolated_quartiles(counts) == pytest.approx(expected, abs=1e-12), values


def test_duplicates_without_a_key_use_the_whole_row(project: Project) -> None:
    create(
        project,
        "marts.no_key",
        "a integer, b varchar",
        [(1, "x"), (1, "x"), (2, None), (2, None), (3, "y")],
    )
    project.model("no_key")
    project.run()
    m = project.metrics("marts.no_key")
    assert m[(None, "duplicate_rate")] == 2 / 5  # identical rows, nulls included


def test_meta_unique_key_list_is_used(project: Project) -> None:
    create(
        project, "marts.pairs", "a integer, b integer, c integer", [(1, 1, 1), (1, 1, 2), (1, 2, 3)]
    )
    project.model("pairs", meta={"unique_key": ["a", "b"]})
    project.run()
    assert project.metrics("marts.pairs")[("a, b", "duplicate_rate")] == 1 / 3


@pytest.mark.parametrize(
    ("newest", "expected"),
    [
        ("2026-01-09 12:00:00", "ok"),  # exactly 24 h: at the warn threshold passes
        ("2026-01-09 11:59:59", "warn"),  # 24 h + 1 s
        ("2026-01-08 12:00:00", "warn"),  # exactly 48 h: at the error threshold is a warning
        ("2026-01-08 11:59:59", "error"),  # 48 h + 1 s
    ],
)
def test_freshness_edges(project: Project, newest: str, expected: str) -> None:
    create(project, "marts.fresh", "seen_at timestamp", [(newest,)])
    project.model("fresh", meta={"monitor_timestamp_column": "seen_at"})
    code = project.run()
    assert project.statuses("marts.fresh")[("seen_at", "freshness_hours")] == expected
    assert code == (1 if expected == "error" else 0)


def test_rate_edges_with_the_project_config(project: Project) -> None:
    # missing: 1/20 = 5% passes (at the threshold), 2/20 = 10% warns
    create(
        project,
        "marts.edges",
        "id integer, at_edge varchar, above varchar, loose varchar, strict varchar",
        [
            (
                i,
                None if i < 1 else "x",
                None if i < 2 else "x",
                None if i < 2 else "x",
                None if i < 1 else "x",
            )
            for i in range(20)
        ],
    )
    project.model(
        "edges",
        columns={"loose": {"missing_rate_warn": 0.1}, "strict": {"missing_rate_warn": 0.01}},
        unique=["id"],
    )
    # duplicates: 1 of 100 rows (1%) passes, 2 of 100 fails
    create(project, "marts.dup_edge", "id integer", [(i,) for i in range(99)] + [(0,)])
    create(project, "marts.dup_over", "id integer", [(i,) for i in range(98)] + [(0,), (1,)])
    project.model("dup_edge", unique=["id"])
    project.model("dup_over", unique=["id"])
    # outliers: 1..9 and 1000 -> q1 3.25, q3 7.75, upper bound 14.5: 1 of 10 = 10% passes
    create(project, "marts.out_edge", "v double", [(float(v),) for v in [*range(1, 10), 1000]])
    project.model("out_edge")
    # a model override: missing_rate_warn 0.1 in meta lets 10% pass
    create(project, "marts.loose_model", "v varchar", [(None,)] + [("x",)] * 9)
    project.model("loose_model", meta={"missing_rate_warn": 0.1})
    code = project.run()

    edges = project.statuses("marts.edges")
    assert edges[("at_edge", "missing_rate")] == "ok"
    assert edges[("above", "missing_rate")] == "warn"
    assert edges[("loose", "missing_rate")] == "ok"  # column meta 10%
    assert edges[("strict", "missing_rate")] == "warn"  # column meta 1%
    assert project.statuses("marts.dup_edge")[("id", "duplicate_rate")] == "ok"
    assert project.statuses("marts.dup_over")[("id", "duplicate_rate")] == "error"
    assert project.metrics("marts.out_edge")[("v", "outlier_rate")] == 0.1
    assert project.statuses("marts.out_edge")[("v", "outlier_rate")] == "ok"
    assert project.statuses("marts.loose_model")[("v", "missing_rate")] == "ok"
    assert code == 1


def test_vars_from_the_command_line_override_the_project(project: Project) -> None:
    create(project, "marts.t", "v varchar", [(None,)] + [("x",)] * 9)
    project.model("t")
    project.vars["missing_rate_warn"] = 0.5
    project.run()
    assert project.statuses("marts.t")[("v", "missing_rate")] == "ok"
    project.cli_vars = {"missing_rate_warn": 0.05}  # `dbt build --vars ...`
    project.run()
    assert project.statuses("marts.t")[("v", "missing_rate")] == "warn"


def test_quality_now_var_is_the_clock(project: Project) -> None:
    create(project, "marts.t", "seen_at timestamp", [("2026-01-10 00:00:00",)])
    project.model("t", meta={"monitor_timestamp_column": "seen_at"})
    project.vars["quality_now"] = "2026-01-10T06:00:00Z"
    project.run(now=None)
    assert project.metrics("marts.t")[("seen_at", "freshness_hours")] == 6.0


def test_empty_table_has_no_rates(project: Project) -> None:
    create(project, "marts.empty", "id integer, v double", [])
    project.model("empty", unique=["id"])
    assert project.run() == 0
    m = project.metrics("marts.empty")
    assert m[(None, "row_count")] == 0
    assert m[("id", "duplicate_rate")] is None
    assert m[("v", "outlier_rate")] is None
    assert set(project.statuses("marts.empty").values()) == {"ok"}


def test_quoted_and_spaced_names_are_measured(project: Project) -> None:
    table = 'marts."we""ird tab"'
    create(
        project,
        table,
        '"my id" integer, "col ""q""" varchar, "amt x" double',
        [(1, None, 1.0), (2, "it's", 2.0), (2, "b", 3.0), (3, "c", 4.0), (4, "d", 50.0)],
    )
    project.model("weird", alias='we"ird tab', unique=["my id"])
    project.run()
    m = project.metrics('marts.we"ird tab')
    assert m[(None, "row_count")] == 5
    assert m[('col "q"', "missing_rate")] == 1 / 5
    assert m[("my id", "duplicate_rate")] == 1 / 5
    # amounts 1, 2, 3, 4, 50: q1 2, q3 4, bounds [-1, 7] -> 50 is the one outlier of five
    assert m[("amt x", "outlier_rate")] == 1 / 5


def test_sources_dlt_status_and_load_time(project: Project) -> None:
    project.sql(
        "create schema if not exists raw",
        "create table raw._dlt_loads (load_id varchar, schema_name varchar, status bigint, "
        "inserted_at timestamptz, schema_version_hash varchar)",
        "insert into raw._dlt_loads values "
        "('1767950000.1', 'things_source', 0, '2026-01-10 02:00:00+00', 'h'), "
        "('1767990000.2', 'things_source', 0, '2026-01-10 10:00:00+00', 'h')",
        "create table raw.things (id bigint, note varchar, _loaded_at timestamptz, "
        "_dlt_load_id varchar, _dlt_id varchar)",
        "insert into raw.things values (1, 'a', '2026-01-10 09:00:00+00', '1767990000.2', null), "
        "(2, null, '2026-01-10 08:00:00+00', '1767950000.1', null)",
        "create table raw.no_load_time (id bigint, _dlt_load_id varchar, _dlt_id varchar)",
        "insert into raw.no_load_time values (1, '1767950000.1', 'x')",
        "create table raw._rejected_rows (reason varchar, rejected_at timestamptz)",
    )
    project.source("things", "things", loaded_at_field="_loaded_at")
    project.source("things", "no_load_time")
    project.source("ingestion", "_rejected_rows", loaded_at_field="rejected_at", freshness=None)
    project.test("source.fixture_project.things.things", "unique", "id")
    code = project.run()

    things = project.metrics("raw.things")
    assert things[("_loaded_at", "freshness_hours")] == 3.0
    assert things[(None, "dlt_load_status")] == 0
    assert things[("id", "duplicate_rate")] == 0  # the source's unique test is the key
    assert ("_dlt_id", "missing_rate") not in things  # dlt bookkeeping is not data
    assert things[(None, "missing_rate")] == 1 / 6  # id, note, _loaded_at over 2 rows
    no_load_time = project.metrics("raw.no_load_time")
    # no timestamp column: the dlt load's inserted_at (2026-01-10 02:00) is the load time
    assert no_load_time[("_dlt_loads.inserted_at", "freshness_hours")] == 10.0
    rejected = project.metrics("raw._rejected_rows")
    assert not [k for k in rejected if k[1] == "freshness_hours"]  # freshness: null opts out
    assert code == 0


def test_discovery_marts_sources_and_opt_outs(project: Project) -> None:
    for name in ("kept", "opted_out", "stg_thing", "int_watched"):
        create(project, f"marts.{name}", "id integer", [(1,)])
    project.model("kept")
    project.model("opted_out", meta={"monitor": False})
    project.model("stg_thing", schema="marts", folder="staging")
    project.nodes["model.fixture_project.stg_thing"]["schema"] = "staging"
    project.nodes["model.fixture_project.stg_thing"]["config"]["schema"] = "staging"
    project.model("int_watched", folder="intermediate", meta={"monitor": True})
    project.run()
    models = {m for (m,) in project.query("select distinct model from monitoring.quality_metrics")}
    assert models == {"marts.kept", "marts.int_watched"}


def test_missing_table_is_an_error_for_a_model(project: Project) -> None:
    project.sql("create schema marts")
    project.model("never_built")
    assert project.run() == 1
    [alert] = project.alerts()
    assert (alert["model"], alert["metric"], alert["severity"]) == (
        "marts.never_built",
        "table_exists",
        "error",
    )


def test_dbt_test_outcomes(project: Project) -> None:
    create(project, "marts.tested", "id integer, v integer", [(1, 1), (1, None)])
    uid = project.model("tested", meta={"duplicate_rate_error": 1.0, "missing_rate_warn": 1.0})
    project.test(uid, "not_null", "v", status="warn", failures=1)
    assert project.run() == 0  # a warned test is a warning
    m = project.metrics("marts.tested")
    assert (m[(None, "dbt_tests_total")], m[(None, "dbt_tests_warned")]) == (1, 1)
    [alert] = project.alerts()
    assert (alert["metric"], alert["column"], alert["severity"], alert["value"]) == (
        "dbt_test",
        "v",
        "warn",
        1,
    )
    project.test(uid, "unique", "id", status="fail", failures=1)
    assert project.run() == 1
    assert project.metrics("marts.tested")[(None, "dbt_tests_failed")] == 1
    assert {(a["metric"], a["column"], a["severity"]) for a in project.alerts()} == {
        ("dbt_test", "v", "warn"),
        ("dbt_test", "id", "error"),
    }


def test_a_failed_upstream_test_and_the_marts_it_skipped_are_errors(project: Project) -> None:
    """The mart still holds last run's rows and looks healthy; the build says otherwise."""
    create(project, "marts.stale", "id integer", [(1,), (2,)])
    staging = project.model("stg_things", schema="staging", folder="staging")
    project.test(staging, "not_null", "id", status="fail", failures=3)
    project.model("stale", status="skipped")
    assert project.run() == 1
    assert {(a["model"], a["metric"], a["severity"]) for a in project.alerts()} == {
        ("dbt.not_null_stg_things_id", "dbt_test", "error"),
        ("dbt.stale", "dbt_model", "error"),
    }


def test_usage_errors_exit_2(project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(project.args()) == 2
    assert "run `dbt build` first" in capsys.readouterr().err
    project.model("x")
    project.write()
    assert main(project.args()) == 2  # no warehouse file yet
    assert "no warehouse" in capsys.readouterr().err
    create(project, "marts.x", "id integer", [(1,)])
    assert main(project.args("--since", "soon")) == 2
    assert "--since 'soon'" in capsys.readouterr().err
    assert main(project.args("--now", "yesterday")) == 2
    assert main(["--no-such-option"]) == 2


def test_outlier_fences_per_group_from_column_meta(tmp_path: Path) -> None:
    """Two categories on different scales: global fences would flag all of `big`."""
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute("create schema marts")
    con.execute(
        "create table marts.t as select * from (values "
        "('small', 1.0), ('small', 1.1), ('small', 0.9), ('small', 1.0), ('small', 9.0), "
        "('big', 100.0), ('big', 110.0), ('big', 95.0), ('big', 100.0), ('big', 105.0)"
        ") as v(category, value)"
    )
    target = Target(
        unique_id="model.x.t",
        kind="model",
        schema="marts",
        identifier="t",
        column_meta={"value": {"outlier_group_by": "category"}},
    )
    grouped = measure_table(con, target, Thresholds({}), datetime(2026, 1, 1, tzinfo=UTC))
    global_target = Target(unique_id="model.x.t", kind="model", schema="marts", identifier="t")
    ungrouped = measure_table(con, global_target, Thresholds({}), datetime(2026, 1, 1, tzinfo=UTC))

    def outliers(measurement: Measurement) -> float | None:
        (metric,) = [m for m in measurement.metrics if m.metric == "outlier_rate"]
        return metric.value

    assert outliers(grouped) == 1 / 10  # only small's 9.0
    assert outliers(ungrouped) == 0.0  # one global fence spans both scales


def test_identifier_columns_are_not_measured_for_outliers(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute("create schema marts")
    con.execute("create table marts.t as select i as user_id, 1.0 as v from range(10) r(i)")
    target = Target(unique_id="model.x.t", kind="model", schema="marts", identifier="t")
    measured = measure_table(con, target, Thresholds({}), datetime(2026, 1, 1, tzinfo=UTC))
    outlier_columns = {m.column for m in measured.metrics if m.metric == "outlier_rate"}
    assert outlier_columns == {"v"}
