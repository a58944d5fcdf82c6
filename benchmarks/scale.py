"""The scale curve: a full pipeline run and a 1% incremental run at growing sizes.

    python -m benchmarks.scale                    # what `make bench-scale` runs
    python -m benchmarks.scale --events 10000,20000 --results-dir /tmp/x   # a smoke test

At each size (events; users are a tenth, as in benchmarks/run.py) it generates
the sample with the same seed, runs `python -m pipeline run --no-publish` on a
new warehouse (the full run), then adds 1% new events and runs it again (the
incremental run, which builds and checks what they reach). It prints seconds
per million events, peak RSS and the incremental share at each size, and writes
`benchmarks/results/<date>-scale.json` with an SVG plot beside it. Targets are
reported, never asserted.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.run import RESULTS_DIR, Bench, machine

SIZES = (1_000_000, 3_000_000, 10_000_000, 30_000_000)
# Targets of the scale curve (issue: time per event at the largest size within 1.1x
# of the size before it; peak RSS at the largest size; the incremental share falls).
PER_EVENT_GROWTH = 1.1
PEAK_RSS_MB = 2048


def measure(events: int, work: Path) -> dict[str, Any]:
    """One size: generate, full run, 1% incremental run; the work folder is removed after."""
    bench = Bench(events, repeat=1, pipeline_repeat=1, work=work)
    try:
        started = time.perf_counter()
        sample = bench.generate({"pipeline"})["stream"]
        generated = time.perf_counter() - started
        with bench.orders_api() as url:
            warehouse = bench.fresh_warehouse()
            full = bench.pipeline_steps(warehouse, url)
            incremental = bench.incremental(warehouse, url, sample["event_lines"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    lines = sample["event_lines"]
    total = full.pop("total")
    return {
        "events": lines,
        "users": sample["users"],
        "generate_seconds": round(generated, 1),
        "full": {
            "seconds": round(total.seconds, 2),
            "seconds_per_million_events": round(total.seconds / lines * 1e6, 3),
            "peak_rss_mb": round(total.rss_mb, 1),
            "steps": {name: round(run.seconds, 2) for name, run in full.items()},
        },
        "incremental": {
            "rows_added": incremental["rows_added"],
            "seconds": incremental["ours"]["median_seconds"],
            "peak_rss_mb": incremental["ours"]["median_rss_mb"],
            "share_of_full": round(incremental["ours"]["median_seconds"] / total.seconds, 3),
            "steps": {k: v["median_seconds"] for k, v in incremental["steps"].items()},
            "build_scope": incremental["build_scope"],
        },
    }


def verdicts(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The scale curve's three targets, judged on the two largest sizes measured."""
    if len(points) < 2:
        return []
    before, last = points[-2], points[-1]
    growth = (
        last["full"]["seconds_per_million_events"] / before["full"]["seconds_per_million_events"]
    )
    shares = [p["incremental"]["share_of_full"] for p in points]
    return [
        {
            "target": f"time per event at {last['events']:,} within {PER_EVENT_GROWTH}× "
            f"of that at {before['events']:,}",
            "figure": f"{growth:.2f}×",
            "met": growth <= PER_EVENT_GROWTH,
        },
        {
            "target": f"peak RSS at {last['events']:,} events ≤ {PEAK_RSS_MB:,} MB",
            "figure": f"{last['full']['peak_rss_mb']:,.0f} MB",
            "met": last["full"]["peak_rss_mb"] <= PEAK_RSS_MB,
        },
        {
            "target": "the incremental share falls as the table grows",
            "figure": " → ".join(f"{s:.3f}" for s in shares),
            "met": all(later < earlier for earlier, later in zip(shares, shares[1:], strict=False)),
        },
    ]


def markdown(points: list[dict[str, Any]], judged: list[dict[str, Any]]) -> str:
    lines = [
        "| events | full run | per million events | peak RSS | ingest + build + monitor "
        "| 1% incremental | its share |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in points:
        full, inc = p["full"], p["incremental"]
        steps = " + ".join(f"{full['steps'][s]:.1f}" for s in ("ingest", "dbt_build", "monitor"))
        lines.append(
            f"| {p['events']:,} | {full['seconds']:.1f} s "
            f"| {full['seconds_per_million_events']:.2f} s | {full['peak_rss_mb']:,.0f} MB "
            f"| {steps} s | {inc['seconds']:.1f} s "
            f"| {inc['share_of_full']:.3f} |"
        )
    if judged:
        lines += ["", "| target | figure | met |", "|---|---|---|"]
        for v in judged:
            lines.append(f"| {v['target']} | {v['figure']} | {'yes' if v['met'] else '**no**'} |")
    return "\n".join(lines)


def svg_plot(points: list[dict[str, Any]]) -> str:
    """Seconds per million events (full run) and the incremental share, against size (log x)."""
    import math

    width, height, pad = 640, 300, 50
    xs = [math.log10(p["events"]) for p in points]
    x_min, x_max = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1

    def x(value: float) -> float:
        return pad + (value - x_min) / (x_max - x_min) * (width - 2 * pad)

    def line(values: list[float], color: str, label: str, row: int) -> str:
        top = max(values) * 1.2 or 1.0
        coords = [
            (x(v), height - pad - value / top * (height - 2 * pad))
            for v, value in zip(xs, values, strict=True)
        ]
        path = " ".join(f"{cx:.1f},{cy:.1f}" for cx, cy in coords)
        dots = "".join(
            f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3" fill="{color}"/>'
            f'<text x="{cx + 5:.1f}" y="{cy - 6:.1f}" font-size="11" fill="{color}">'
            f"{value:.3g}</text>"
            for (cx, cy), value in zip(coords, values, strict=True)
        )
        legend = f'<text x="{pad}" y="{18 * row}" font-size="12" fill="{color}">{label}</text>'
        return f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>' + (
            dots + legend
        )

    ticks = "".join(
        f'<text x="{x(v):.1f}" y="{height - pad + 18}" font-size="11" text-anchor="middle">'
        f"{p['events'] / 1e6:g}M</text>"
        for v, p in zip(xs, points, strict=True)
    )
    per_event = [p["full"]["seconds_per_million_events"] for p in points]
    shares = [p["incremental"]["share_of_full"] for p in points]
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>'
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" '
        f'stroke="#888"/>{ticks}'
        + line(per_event, "#1f77b4", "full run: seconds per million events", 1)
        + line(shares, "#d62728", "1% incremental run: share of the full run", 2)
        + "</svg>\n"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.scale", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--events",
        default=",".join(str(s) for s in SIZES),
        help="comma-separated sizes in events (default 1M, 3M, 10M, 30M)",
    )
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temp dir)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    try:
        args.events = [int(size) for size in args.events.split(",")]
    except ValueError:
        parser.error("--events takes comma-separated whole numbers")
    if any(size < 1000 for size in args.events):
        parser.error("each size must be at least 1000 events")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    date = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    results: dict[str, Any] = {"date": date, "machine": machine(), "points": []}
    with tempfile.TemporaryDirectory(prefix="ml-warehouse-scale-") as scratch:
        for size in args.events:
            print(f"bench-scale: {size:,} events ...", file=sys.stderr, flush=True)
            point = measure(size, (args.work or Path(scratch)) / f"events-{size}")
            results["points"].append(point)
            print(
                f"bench-scale: {size:,} events: full {point['full']['seconds']:.1f} s, "
                f"incremental {point['incremental']['seconds']:.1f} s",
                file=sys.stderr,
                flush=True,
            )
    results["targets"] = verdicts(results["points"])
    print(markdown(results["points"], results["targets"]))
    args.results_dir.mkdir(parents=True, exist_ok=True)
    out = args.results_dir / f"{date[:10]}-scale.json"
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    out.with_suffix(".svg").write_text(svg_plot(results["points"]), encoding="utf-8")
    print(f"wrote {out} and {out.with_suffix('.svg').name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
