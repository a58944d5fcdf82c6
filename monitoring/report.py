"""The HTML quality report: one self-contained file, no scripts, no network.

It leads with what failed or warned (each alert with its table, column, rule,
value and threshold), then one section per table: its dbt tests with their
status and, for a failing test that stores its rows, a sample of them and the
query for all; charts over dated runs with the threshold's band; every metric.
Tables with nothing to say are collapsed. Charts are inline SVG drawn here, so
the report opens offline and needs no plotting library.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from .history import Point
from .manifest import TestOutcome
from .metrics import ERROR, OK, REUSED, WARN, Measurement, Metric

CHART_METRICS = ("row_count", "column_count", "missing_rate", "duplicate_rate", "freshness_hours")
COLORS = {OK: "#2e7d32", WARN: "#ef6c00", ERROR: "#c62828"}
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#222}
h1{margin-bottom:.2rem} .sub{color:#666;margin-top:0}
section.model{border:1px solid #ddd;border-radius:6px;padding:1rem;margin:1.2rem 0}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
td,th{border-bottom:1px solid #eee;padding:.2rem .6rem;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:0 .5rem;border-radius:3px;color:#fff;font-size:.8rem}
.ok{background:#2e7d32}.warn{background:#ef6c00}.error{background:#c62828}
.charts{display:flex;flex-wrap:wrap;gap:.8rem}
figure{margin:0} figcaption{font-size:.8rem;color:#444}
section.attention{border:2px solid #c62828;border-radius:6px;padding:.6rem 1rem}
section.attention.warnings{border-color:#ef6c00} section.attention.clear{border-color:#2e7d32}
section.attention table{width:100%} td.why{overflow-wrap:anywhere;max-width:40rem}
details>summary{cursor:pointer} details>summary h2{display:inline;font-size:1.2rem}
pre{background:#f5f5f5;padding:.4rem .6rem;overflow-x:auto;font-size:.8rem}
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _num(value: float | None) -> str:
    if value is None:
        return "–"
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:.4g}"


def human_hours(hours: float | None) -> str:
    """An age in the unit a person reads it in: 40 s, 12 min, 5.5 h, 3.2 days."""
    if hours is None:
        return "–"
    seconds = hours * 3600
    if abs(seconds) < 90:
        return f"{seconds:.0f} s"
    if abs(hours) < 1.5:
        return f"{seconds / 60:.0f} min"
    if abs(hours) < 48:
        return f"{hours:.1f} h"
    return f"{hours / 24:.1f} days"


def _value(metric: str, value: float | None) -> str:
    return human_hours(value) if metric == "freshness_hours" else _num(value)


@dataclass(frozen=True)
class Sample:
    """Some failing rows of a dbt test that stores them, and the query for all of them."""

    sql: str
    columns: list[str]
    rows: list[tuple[Any, ...]]
    total: int


def failing_rows(
    con: duckdb.DuckDBPyConnection, measurements: list[Measurement], limit: int = 5
) -> dict[str, Sample]:
    """{test name: its first failing rows} for each failed or warned test whose rows dbt
    stored (store_failures: the audit schema); a table that is gone is left out."""
    samples = {}
    for m in measurements:
        for test in m.target.tests:
            if test.stored is None or test.status not in {"fail", "warn", "error"}:
                continue
            sql = f"select * from {test.stored}"
            try:
                cursor = con.execute(f"{sql} limit {limit}")
                columns = [d[0] for d in cursor.description]
                rows = cursor.fetchall()
                total = con.execute(f"select count(*) from {test.stored}").fetchone()[0]  # type: ignore[index]
            except duckdb.Error:
                continue
            samples[test.name] = Sample(sql, columns, rows, int(total))
    return samples


def svg_chart(
    title: str,
    points: list[tuple[datetime, float]],
    width: int = 300,
    threshold: float | None = None,
) -> str:
    """A polyline of one metric over runs, oldest left; one point is a dot."""
    height, pad = 110, 28
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{_e(title)}">',
        f"<title>{_e(title)}</title>",
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#fafafa" stroke="#ddd"/>',
    ]
    if not points:
        parts.append(
            f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" font-size="11" '
            f'fill="#888">no data yet</text></svg>'
        )
        return "".join(parts)
    values = [v for _, v in points]
    low, high = min(values), max(values)
    if threshold is not None:  # the band beyond the threshold is always in view
        low, high = min(low, threshold), max(high, threshold * 1.2 or 1.0)
    span = (high - low) or (abs(high) or 1.0)
    base = low if high != low else low - span / 2

    def xy(i: int, v: float) -> tuple[float, float]:
        x = pad + (width - 2 * pad) * (i / (len(points) - 1) if len(points) > 1 else 0.5)
        y = height - pad + 6 - (height - 2 * pad) * ((v - base) / span)
        return round(x, 1), round(y, 1)

    if threshold is not None:  # above the threshold: the alerting band
        top = xy(0, high)[1] - 6
        y = xy(0, threshold)[1]
        parts.append(
            f'<rect x="{pad}" y="{top}" width="{width - 2 * pad}" height="{max(y - top, 0)}" '
            f'fill="#c62828" fill-opacity="0.08"/><line x1="{pad}" x2="{width - pad}" '
            f'y1="{y}" y2="{y}" stroke="#c62828" stroke-dasharray="4 3"/>'
        )
    coords = [xy(i, v) for i, (_, v) in enumerate(points)]
    if len(coords) > 1:
        line = " ".join(f"{x},{y}" for x, y in coords)
        parts.append(f'<polyline fill="none" stroke="#1565c0" stroke-width="2" points="{line}"/>')
    for (x, y), (when, v) in zip(coords, points, strict=True):
        parts.append(
            f'<circle cx="{x}" cy="{y}" r="3" fill="#1565c0">'
            f"<title>{_e(f'{when:%Y-%m-%d %H:%M}: {_num(v)}')}</title></circle>"
        )
    first, last = points[0][0], points[-1][0]
    parts += [
        f'<text x="4" y="12" font-size="10" fill="#555">max {_e(_num(max(values)))}</text>',
        f'<text x="{width - 4}" y="12" font-size="10" fill="#555" text-anchor="end">'
        f"min {_e(_num(min(values)))} · {len(points)} run(s)</text>",
        f'<text x="{pad}" y="{height - 4}" font-size="10" fill="#555">'
        f"{first:%Y-%m-%d %H:%M}</text>",
        f'<text x="{width - pad}" y="{height - 4}" font-size="10" fill="#555" '
        f'text-anchor="end">{last:%Y-%m-%d %H:%M}</text>'
        if len(points) > 1
        else "",
        "</svg>",
    ]
    return "".join(parts)


def _metrics_table(metrics: list[Metric]) -> str:
    rows = [
        "<table><thead><tr><th>metric</th><th>column</th><th>value</th><th>threshold</th>"
        "<th>status</th></tr></thead><tbody>"
    ]
    for m in metrics:
        rows.append(
            f"<tr><td>{_e(m.metric)}</td><td>{_e(m.column or '')}</td>"
            f'<td class="num">{_e(_value(m.metric, m.value))}</td>'
            f'<td class="num">{_e(_value(m.metric, m.threshold))}</td>'
            f'<td><span class="badge {_e(m.status)}">{_e(m.status)}</span></td></tr>'
        )
    rows.append("</tbody></table>")
    return "".join(rows)


def _attention(alerts: list[Metric], tables: int, tests: int) -> str:
    """The first screen: every error and warning with where, what, the figure and the limit."""
    if not alerts:
        return (
            '<section class="attention clear" id="attention"><h2>Nothing failed or warned</h2>'
            f"<p>{tables} tables measured, {tests} dbt tests passed.</p></section>"
        )
    rows = "".join(
        f'<tr class="alert"><td><span class="badge {_e(a.status)}">{_e(a.status)}</span></td>'
        f"<td>{_e(a.model)}</td><td>{_e(a.column or '')}</td><td>{_e(a.metric)}</td>"
        f'<td class="num">{_e(_value(a.metric, a.value))}</td>'
        f'<td class="num">{_e(_value(a.metric, a.threshold))}</td>'
        f'<td class="why">{_e(a.message)}</td></tr>'
        for a in alerts
    )
    errors = sum(a.status == ERROR for a in alerts)
    return (
        f'<section class="attention{"" if errors else " warnings"}" id="attention">'
        f"<h2>Needs attention: {errors} errors, {len(alerts) - errors} warnings</h2>"
        "<table><thead><tr><th>status</th><th>table</th><th>column</th><th>rule</th>"
        "<th>value</th><th>threshold</th><th>raised by</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></section>"
    )


def _tests_table(tests: list[TestOutcome], samples: dict[str, Sample]) -> str:
    """Every dbt test of the table with its status; a failing one's stored rows beneath."""
    if not tests:
        return "<p>no dbt tests on this table</p>"
    badge = {"pass": OK, "warn": WARN, "fail": ERROR, "error": ERROR}
    rows = []
    for test in sorted(tests, key=lambda x: (x.status == "pass", x.name)):
        status = badge.get(test.status, WARN)
        rows.append(
            f'<tr class="test" data-status="{_e(test.status)}"><td>{_e(test.name)}</td>'
            f"<td>{_e(test.column or '')}</td>"
            f'<td><span class="badge {status}">{_e(test.status)}</span></td>'
            f'<td class="num">{_e(_num(test.failures))}</td></tr>'
        )
        sample = samples.get(test.name)
        if sample is not None:
            head = "".join(f"<th>{_e(c)}</th>" for c in sample.columns)
            body = "".join(
                "<tr>" + "".join(f"<td>{_e(v)}</td>" for v in row) + "</tr>" for row in sample.rows
            )
            rows.append(
                f'<tr><td colspan="4"><details class="failing-rows" open><summary>'
                f"{len(sample.rows)} of {sample.total} failing rows; all of them: "
                f"<code>{_e(sample.sql)}</code></summary><table><thead><tr>{head}</tr></thead>"
                f"<tbody>{body}</tbody></table></details></td></tr>"
            )
    return (
        '<table class="tests"><thead><tr><th>dbt test</th><th>column</th><th>status</th>'
        f"<th>failures</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def render(
    run: dict[str, Any],
    measurements: list[Measurement],
    alerts: list[Metric],
    history: list[Point],
    samples: dict[str, Sample] | None = None,
) -> str:
    """The whole report: what needs attention first, a summary table, then one section per
    monitored table (open when it has alerts)."""
    samples = samples or {}
    by_series: dict[tuple[str, str | None, str], list[tuple[datetime, float]]] = {}
    for p in history:
        if p.value is not None:
            by_series.setdefault((p.model, p.column, p.metric), []).append((p.measured_at, p.value))
    pipeline_run = run.get("pipeline_run_id")
    tests = sum(len(m.target.tests) for m in measurements)
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>Data quality report</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>Data quality report</h1>",
        f'<p class="sub">{f"pipeline run {_e(pipeline_run)} · " if pipeline_run else ""}'
        f"measured {run['started_at']:%Y-%m-%d %H:%M:%S} UTC · "
        f"as of {run['as_of']:%Y-%m-%d %H:%M:%S} UTC · dbt invocation "
        f"{_e(run['dbt_invocation_id'] or '–')} · monitor run {_e(run['run_id'])}</p>",
        f'<p class="sub" id="check">check {_e(run["check"])}</p>',
        _attention(alerts, len(measurements), tests),
        "<h2>Tables</h2>",
        "<table><thead><tr><th>table</th><th>kind</th><th>rows</th><th>dbt tests</th>"
        "<th>status</th></tr></thead><tbody>",
    ]
    for i, m in enumerate(measurements):
        status = _status(m, alerts)
        passed = sum(x.status == "pass" for x in m.target.tests)
        tested = f"{passed} of {len(m.target.tests)} passed" if m.target.tests else "none"
        out.append(
            f'<tr><td><a href="#model-{i}">{_e(m.target.name)}</a></td><td>{_e(m.target.kind)}'
            f'</td><td class="num">{_e(_num(m.value("row_count")))}</td>'
            f'<td class="num">{tested}</td>'
            f'<td><span class="badge {status}">{status}</span></td></tr>'
        )
    out.append("</tbody></table>")
    for i, m in enumerate(measurements):
        name = m.target.name
        charts = []
        for metric_name in CHART_METRICS:
            current = next((x for x in m.metrics if x.metric == metric_name), None)
            if current is None and metric_name != "row_count":
                continue
            column = current.column if current else None
            points = by_series.get((name, column, metric_name), [])
            caption = metric_name + (f" ({column})" if column else "")
            limit = (
                current.threshold if current is not None and metric_name != "row_count" else None
            )
            charts.append(
                f'<figure class="chart" data-metric="{_e(metric_name)}">'
                f"{svg_chart(f'{name} {caption}', points, threshold=limit)}"
                f"<figcaption>{_e(caption)}</figcaption></figure>"
            )
        status = _status(m, alerts)
        out += [
            f'<section class="model" id="model-{i}" data-model="{_e(name)}">',
            f"<details{' open' if status != OK else ''}><summary>"
            f'<h2>{_e(name)} <span class="badge {status}">{status}</span></h2></summary>',
            f"<p>{_e(m.target.kind)} · key: {_e(', '.join(m.target.unique_key or ['whole row']))}"
            f" · {_e(_how(m))}</p>",
            _tests_table(m.target.tests, samples),
            f'<div class="charts">{"".join(charts)}</div>',
            _metrics_table(m.metrics),
            "</details></section>",
        ]
    out.append("</body></html>")
    return "\n".join(out)


def _how(m: Measurement) -> str:
    """How the table's figures were had, and how old its outlier fences are."""
    if m.how == REUSED and m.stored is not None:
        at = m.stored.aggregates.measured_at[:19].replace("T", " ")
        return f"unchanged since it was measured at {at} UTC: not read"
    fenced = sorted(set((m.stored.aggregates.fences_at if m.stored else {}).values()))
    ages = ", ".join(f"{at[:19].replace('T', ' ')} UTC" for at in fenced)
    return f"measured in {m.scans} scan(s), {m.seconds:.3f} s" + (
        f"; outlier fences computed at {ages}" if fenced else ""
    )


def _status(measurement: Measurement, alerts: list[Metric]) -> str:
    levels = {a.status for a in alerts if a.model == measurement.target.name}
    return ERROR if ERROR in levels else WARN if WARN in levels else OK


def write(path: Path, document: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(document, encoding="utf-8")
    tmp.replace(path)
