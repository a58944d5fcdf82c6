"""Metric history in the warehouse (`monitoring.*`) and anomalies against it."""

from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb

from warehouse.sql import insert_rows

from . import state
from .config import Thresholds
from .manifest import UsageError
from .metrics import OK, WARN, Measurement, Metric

SCHEMA = "monitoring"
DDL = [
    f"create schema if not exists {SCHEMA}",
    f"""create table if not exists {SCHEMA}.quality_runs (
        run_id varchar primary key,
        started_at timestamptz not null,
        finished_at timestamptz not null,
        as_of timestamptz not null,
        dbt_invocation_id varchar,
        models integer not null,
        alerts_warn integer not null,
        alerts_error integer not null,
        exit_code integer not null
    )""",
    f"""create table if not exists {SCHEMA}.quality_metrics (
        run_id varchar not null,
        measured_at timestamptz not null,
        model varchar not null,
        column_name varchar,
        metric varchar not null,
        value double,
        threshold double,
        status varchar not null,
        dbt_invocation_id varchar
    )""",
    f"""create table if not exists {SCHEMA}.quality_alerts (
        run_id varchar not null,
        measured_at timestamptz not null,
        model varchar not null,
        column_name varchar,
        metric varchar not null,
        value double,
        threshold double,
        severity varchar not null,
        message varchar not null,
        dbt_invocation_id varchar
    )""",
]
# Metrics whose history is tested for anomalies (freshness grows by design; test
# counts and load status have their own thresholds).
ANOMALY_METRICS = ("row_count", "column_count", "missing_rate", "duplicate_rate", "outlier_rate")


@dataclass
class Point:
    run_id: str
    measured_at: datetime
    model: str
    column: str | None
    metric: str
    value: float | None


def parse_since(text: str) -> timedelta:
    """`7d`, `12h`, `30m`, `2w` as a timedelta."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([mhdw])\s*", text or "")
    if not match:
        raise UsageError(f"--since {text!r}: use a number and a unit, e.g. 7d, 12h, 30m, 2w")
    unit = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[match.group(2)]
    return timedelta(**{unit: float(match.group(1))})


def has_history(con: duckdb.DuckDBPyConnection) -> bool:
    return bool(
        con.execute(
            "select 1 from information_schema.tables where table_catalog = current_database() "
            "and table_schema = ? and table_name = 'quality_metrics'",
            [SCHEMA],
        ).fetchall()
    )


def read_history(
    con: duckdb.DuckDBPyConnection,
    since: datetime,
    model: str | None = None,
    metric: str | None = None,
) -> list[Point]:
    """Stored points since a time, oldest first (small: a few hundred rows per run)."""
    if not has_history(con):
        return []
    sql = (
        f"select run_id, measured_at, model, column_name, metric, value "
        f"from {SCHEMA}.quality_metrics where measured_at >= ?"
    )
    params: list[Any] = [since]
    if model:
        sql += " and model = ?"
        params.append(model)
    if metric:
        sql += " and metric = ?"
        params.append(metric)
    rows = con.execute(sql + " order by measured_at, model, metric, column_name", params).fetchall()
    return [
        Point(r[0], r[1] if r[1].tzinfo else r[1].replace(tzinfo=UTC), r[2], r[3], r[4], r[5])
        for r in rows
    ]


def series(points: list[Point]) -> dict[tuple[str, str | None, str], list[Point]]:
    out: dict[tuple[str, str | None, str], list[Point]] = {}
    for p in points:
        out.setdefault((p.model, p.column, p.metric), []).append(p)
    return out


def anomalies(
    measurements: list[Measurement], history: list[Point], thresholds: Thresholds
) -> list[Metric]:
    """Row-count jumps against the previous run, and |z| beyond the limit on long series.

    A static history has no spread, so it never raises a z alert (and an
    unchanged row count never raises a change alert).
    """
    past = series(history)
    out: list[Metric] = []
    for m in measurements:
        meta = m.target.meta
        change_limit = thresholds.get("row_count_change_warn", meta)
        z_limit = thresholds.get("anomaly_z_threshold", meta)
        min_points = int(thresholds.get("anomaly_min_points", meta))
        for metric in m.metrics:
            if metric.metric not in ANOMALY_METRICS or metric.value is None:
                continue
            previous = [
                p.value
                for p in past.get((metric.model, metric.column, metric.metric), [])
                if p.value is not None
            ]
            if not previous:
                continue
            where = f"{metric.model}.{metric.column}" if metric.column else metric.model
            if metric.metric == "row_count" and previous[-1] > 0:
                change = (metric.value - previous[-1]) / previous[-1]
                if abs(change) > change_limit:
                    out.append(
                        Metric(
                            metric.model,
                            None,
                            "row_count_change",
                            change,
                            change_limit,
                            WARN,
                            f"row count of {where} changed {change:+.1%} "
                            f"({previous[-1]:g} -> {metric.value:g}), limit ±{change_limit:.0%}",
                        )
                    )
            if len(previous) >= min_points:
                spread = statistics.stdev(previous)
                if spread > 0 and math.isfinite(spread):
                    z = (metric.value - statistics.fmean(previous)) / spread
                    if abs(z) > z_limit:
                        out.append(
                            Metric(
                                metric.model,
                                metric.column,
                                f"{metric.metric}_zscore",
                                z,
                                z_limit,
                                WARN,
                                f"{metric.metric} of {where} is {metric.value:g}, z={z:+.1f} "
                                f"against {len(previous)} runs (mean "
                                f"{statistics.fmean(previous):g}), limit {z_limit:g}",
                            )
                        )
    return out


def write_run(
    con: duckdb.DuckDBPyConnection,
    run: dict[str, Any],
    metrics: list[Metric],
    alerts: list[Metric],
    measurements: list[Measurement],
) -> None:
    """Append one run's metrics and alerts, and keep its tables' aggregates, in one transaction."""
    con.execute("begin transaction")
    try:
        for statement in DDL:
            con.execute(statement)
        state.write(con, measurements)
        common = [run["run_id"], run["started_at"]]
        metric_rows = [
            [
                *common,
                m.model,
                m.column,
                m.metric,
                m.value,
                m.threshold,
                m.status,
                run["dbt_invocation_id"],
            ]
            for m in metrics
        ]
        alert_rows = [
            [
                *common,
                a.model,
                a.column,
                a.metric,
                a.value,
                a.threshold,
                a.status,
                a.message,
                run["dbt_invocation_id"],
            ]
            for a in alerts
        ]
        insert_rows(
            con,
            f"{SCHEMA}.quality_metrics",
            ("run_id", "measured_at", "model", "column_name", "metric", "value", "threshold")
            + ("status", "dbt_invocation_id"),
            metric_rows,
        )
        insert_rows(
            con,
            f"{SCHEMA}.quality_alerts",
            ("run_id", "measured_at", "model", "column_name", "metric", "value", "threshold")
            + ("severity", "message", "dbt_invocation_id"),
            alert_rows,
        )
        con.execute(
            f"insert into {SCHEMA}.quality_runs (run_id, started_at, finished_at, as_of, "
            "dbt_invocation_id, models, alerts_warn, alerts_error, exit_code) "
            "values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                run["run_id"],
                run["started_at"],
                run["finished_at"],
                run["as_of"],
                run["dbt_invocation_id"],
                run["models"],
                sum(a.status == WARN for a in alerts),
                sum(a.status != WARN and a.status != OK for a in alerts),
                run["exit_code"],
            ],
        )
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise
