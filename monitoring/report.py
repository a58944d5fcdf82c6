"""The HTML quality report: one self-contained file, no scripts, no network.

Charts are inline SVG polylines drawn here, so the report opens offline and
needs no plotting library.
"""

from __future__ import annotations

import html
from datetime import datetime
from pathlib import Path
from typing import Any

from .history import Point
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
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _num(value: float | None) -> str:
    if value is None:
        return "–"
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:.4g}"


def svg_chart(title: str, points: list[tuple[datetime, float]], width: int = 300) -> str:
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
    span = (high - low) or (abs(high) or 1.0)
    base = low if high != low else low - span / 2

    def xy(i: int, v: float) -> tuple[float, float]:
        x = pad + (width - 2 * pad) * (i / (len(points) - 1) if len(points) > 1 else 0.5)
        y = height - pad + 6 - (height - 2 * pad) * ((v - base) / span)
        return round(x, 1), round(y, 1)

    coords = [xy(i, v) for i, (_, v) in enumerate(points)]
    if len(coords) > 1:
        line = " ".join(f"{x},{y}" for x, y in coords)
        parts.append(f'<polyline fill="none" stroke="#1565c0" stroke-width="2" points="{line}"/>')
    for (x, y), (when, v) in zip(coords, points, strict=True):
        parts.append(
            f'<circle cx="{x}" cy="{y}" r="3" fill="#1565c0">'
            f"<title>{_e(f'{when:%Y-%m-%d %H:%M}: {_num(v)}')}</title></circle>"
        )
    parts += [
        f'<text x="4" y="12" font-size="10" fill="#555">max {_e(_num(high))}</text>',
        f'<text x="4" y="{height - 4}" font-size="10" fill="#555">min {_e(_num(low))}</text>',
        f'<text x="{width - 4}" y="{height - 4}" font-size="10" fill="#555" '
        f'text-anchor="end">{len(points)} run(s)</text>',
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
            f'<td class="num">{_e(_num(m.value))}</td><td class="num">{_e(_num(m.threshold))}</td>'
            f'<td><span class="badge {_e(m.status)}">{_e(m.status)}</span></td></tr>'
        )
    rows.append("</tbody></table>")
    return "".join(rows)


def _alerts_list(alerts: list[Metric]) -> str:
    if not alerts:
        return '<p class="alerts">no alerts</p>'
    items = "".join(
        f'<li><span class="badge {_e(a.status)}">{_e(a.status)}</span> {_e(a.message)}</li>'
        for a in alerts
    )
    return f'<ul class="alerts">{items}</ul>'


def render(
    run: dict[str, Any],
    measurements: list[Measurement],
    alerts: list[Metric],
    history: list[Point],
) -> str:
    """The whole report: a summary table, then one section per monitored table."""
    by_series: dict[tuple[str, str | None, str], list[tuple[datetime, float]]] = {}
    for p in history:
        if p.value is not None:
            by_series.setdefault((p.model, p.column, p.metric), []).append((p.measured_at, p.value))
    errors = sum(a.status == ERROR for a in alerts)
    warnings = sum(a.status == WARN for a in alerts)
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>Data quality report</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>Data quality report</h1>",
        f'<p class="sub">run {_e(run["run_id"])} · '
        f"measured {run['started_at']:%Y-%m-%d %H:%M:%S} UTC · "
        f"as of {_e(run['as_of'].isoformat())} · dbt invocation "
        f"{_e(run['dbt_invocation_id'] or '–')} · {len(measurements)} tables · "
        f"{errors} errors · {warnings} warnings</p>",
        f'<p class="sub" id="check">check {_e(run["check"])}</p>',
        "<table><thead><tr><th>table</th><th>kind</th><th>rows</th><th>status</th></tr></thead>"
        "<tbody>",
    ]
    for i, m in enumerate(measurements):
        status = _status(m, alerts)
        out.append(
            f'<tr><td><a href="#model-{i}">{_e(m.target.name)}</a></td><td>{_e(m.target.kind)}'
            f'</td><td class="num">{_e(_num(m.value("row_count")))}</td>'
            f'<td><span class="badge {status}">{status}</span></td></tr>'
        )
    out.append("</tbody></table>")
    for i, m in enumerate(measurements):
        name = m.target.name
        model_alerts = [a for a in alerts if a.model == name]
        charts = []
        for metric_name in CHART_METRICS:
            current = next((x for x in m.metrics if x.metric == metric_name), None)
            if current is None and metric_name != "row_count":
                continue
            column = current.column if current else None
            points = by_series.get((name, column, metric_name), [])
            caption = metric_name + (f" ({column})" if column else "")
            charts.append(
                f'<figure class="chart" data-metric="{_e(metric_name)}">'
                f"{svg_chart(f'{name} {caption}', points)}<figcaption>{_e(caption)}</figcaption>"
                "</figure>"
            )
        status = _status(m, alerts)
        out += [
            f'<section class="model" id="model-{i}" data-model="{_e(name)}">',
            f'<h2>{_e(name)} <span class="badge {status}">{status}</span></h2>',
            f"<p>{_e(m.target.kind)} · key: {_e(', '.join(m.target.unique_key or ['whole row']))}"
            f" · {_e(_how(m))}</p>",
            _alerts_list(model_alerts),
            f'<div class="charts">{"".join(charts)}</div>',
            _metrics_table(m.metrics),
            "</section>",
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
