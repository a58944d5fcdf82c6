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
# Targets of the scale curve: time per event at the largest size within 1.1x of the
# size before it; peak RSS at the largest size; the incremental share falls, and is at
# most this at these sizes.
PER_EVENT_GROWTH = 1.1
PEAK_RSS_MB = 2048
INCREMENTAL_SHARE = {10_000_000: 0.12, 30_000_000: 0.06}


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
            floor = bench.reference("duckdb", bench.inbox, warehouse)
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
            "duckdb_reference_seconds": round(floor.seconds, 2),
            "floor_ratio": round(total.seconds / floor.seconds, 2),
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
        *(
            {
                "target": f"the incremental share at {p['events']:,} events ≤ {limit}",
                "figure": f"{p['incremental']['share_of_full']:.3f}",
                "met": p["incremental"]["share_of_full"] <= limit,
            }
            for p in points
            for size, limit in INCREMENTAL_SHARE.items()
            if p["events"] >= size and p["events"] < size * 1.5
        ),
    ]


def markdown(points: list[dict[str, Any]], judged: list[dict[str, Any]]) -> str:
    lines = [
        "| events | full run | per million events | peak RSS | ingest + build + monitor "
        "| vs the DuckDB-only reference | 1% incremental | its share |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in points:
        full, inc = p["full"], p["incremental"]
        steps = " + ".join(f"{full['steps'][s]:.1f}" for s in ("ingest", "dbt_build", "monitor"))
        lines.append(
            f"| {p['events']:,} | {full['seconds']:.1f} s "
            f"| {full['seconds_per_million_events']:.2f} s | {full['peak_rss_mb']:,.0f} MB "
            f"| {steps} s | {full['floor_ratio']:.1f}× ({full['duckdb_reference_seconds']:.1f} s) "
            f"| {inc['seconds']:.1f} s "
            f"| {inc['share_of_full']:.3f} |"
        )
    if judged:
        lines += ["", "| target | figure | met |", "|---|---|---|"]
        for v in judged:
            lines.append(f"| {v['target']} | {v['figure']} | {'yes' if v['met'] else '**no**'} |")
    return "\n".join(lines)


def svg_plot(points: list[dict[str, Any]]) -> str:
    """Two panels, one per unit, against the number of events (log scale): seconds per
    million events of the full run, and the 1% incremental run's share of the full run."""
    per_event = [p["full"]["seconds_per_million_events"] for p in points]
    shares = [p["incremental"]["share_of_full"] for p in points]
    events = [p["events"] for p in points]
    panels = [
        panel(events, per_event, "Full run", "seconds per million events", "#1f77b4", "{:.1f}"),
        panel(events, shares, "1% incremental run", "share of the full run", "#d62728", "{:.2f}"),
    ]
    width, height = PANEL_WIDTH * len(panels), PANEL_HEIGHT
    placed = "".join(
        f'<g transform="translate({PANEL_WIDTH * i},0)">{body}</g>' for i, body in enumerate(panels)
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" font-family="sans-serif" font-size="12">'
        f'<rect width="100%" height="100%" fill="white"/>{placed}</svg>\n'
    )


PANEL_WIDTH, PANEL_HEIGHT = 420, 320
MARGIN = {"left": 62, "right": 24, "top": 40, "bottom": 52}


def panel(
    events: list[int], values: list[float], title: str, unit: str, color: str, shown: str
) -> str:
    """One line plot with its title, both axes labelled, a y grid from 0 and each point's
    value above it."""
    import math

    left, right = MARGIN["left"], PANEL_WIDTH - MARGIN["right"]
    top, bottom = MARGIN["top"], PANEL_HEIGHT - MARGIN["bottom"]
    logs = [math.log10(n) for n in events]
    low, high = min(logs), max(logs) if max(logs) > min(logs) else min(logs) + 1
    inset = (high - low) * 0.08  # the first and last points clear of the axes' labels
    low, high = low - inset, high + inset
    step = nice_step(max(values) / 4 or 1.0)
    y_max = step * math.ceil(max(values) * 1.15 / step)

    def x(log: float) -> float:
        return left + (log - low) / (high - low) * (right - left)

    def y(value: float) -> float:
        return bottom - value / y_max * (bottom - top)

    grid = "".join(
        f'<line x1="{left}" x2="{right}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#e5e5e5"/>'
        f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end" fill="#555">'
        f"{shown.format(v)}</text>"
        for v in (step * i for i in range(round(y_max / step) + 1))
    )
    ticks = "".join(
        f'<text x="{x(lg):.1f}" y="{bottom + 18}" text-anchor="middle" fill="#555">'
        f"{n / 1e6:.3g}M</text>"
        for lg, n in zip(logs, events, strict=True)
    )
    coords = [(x(lg), y(v)) for lg, v in zip(logs, values, strict=True)]
    path = " ".join(f"{cx:.1f},{cy:.1f}" for cx, cy in coords)
    dots = "".join(
        f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3.5" fill="{color}"/>'
        f'<text x="{cx:.1f}" y="{cy - 9:.1f}" text-anchor="middle" fill="{color}" '
        f'font-weight="bold">{shown.format(v)}</text>'
        for (cx, cy), v in zip(coords, values, strict=True)
    )
    middle = (top + bottom) / 2
    return (
        f'<text x="{left}" y="{top - 18}" font-size="14" font-weight="bold">{title}</text>'
        f"{grid}"
        f'<line x1="{left}" x2="{right}" y1="{bottom}" y2="{bottom}" stroke="#888"/>'
        f'<line x1="{left}" x2="{left}" y1="{top}" y2="{bottom}" stroke="#888"/>{ticks}'
        f'<text x="{(left + right) / 2:.1f}" y="{PANEL_HEIGHT - 12}" text-anchor="middle">'
        "events (log scale)</text>"
        f'<text transform="translate(16,{middle:.1f}) rotate(-90)" text-anchor="middle">'
        f"{unit}</text>"
        f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>{dots}'
    )


def nice_step(rough: float) -> float:
    """1, 2 or 5 times a power of ten, at least `rough`: grid lines at round values."""
    import math

    power = 10 ** math.floor(math.log10(rough))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= rough)


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
    parser.add_argument(
        "--plot",
        type=Path,
        metavar="RESULTS",
        help="measure nothing: draw a stored results file (its .svg beside it, or --out)",
    )
    parser.add_argument("--out", type=Path, help="where --plot writes the SVG")
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
    if args.plot:
        stored = json.loads(args.plot.read_text(encoding="utf-8"))
        out = args.out or args.plot.with_suffix(".svg")
        out.write_text(svg_plot(stored["points"]), encoding="utf-8")
        print(f"wrote {out}")
        return 0
    date = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    results: dict[str, Any] = {"date": date, "machine": machine(), "points": [], "failed": []}
    with tempfile.TemporaryDirectory(prefix="ml-warehouse-scale-") as scratch:
        for size in args.events:
            print(f"bench-scale: {size:,} events ...", file=sys.stderr, flush=True)
            try:
                point = measure(size, (args.work or Path(scratch)) / f"events-{size}")
            except RuntimeError as exc:  # a run that failed is a result too: say why, go on
                reason = str(exc).strip().splitlines()[-1][:300]
                results["failed"].append({"events": size, "error": reason})
                print(f"bench-scale: {size:,} events failed: {reason}", file=sys.stderr)
                continue
            results["points"].append(point)
            print(
                f"bench-scale: {size:,} events: full {point['full']['seconds']:.1f} s, "
                f"incremental {point['incremental']['seconds']:.1f} s",
                file=sys.stderr,
                flush=True,
            )
    results["targets"] = verdicts(results["points"])
    print(markdown(results["points"], results["targets"]))
    for failed in results["failed"]:
        print(f"\n{failed['events']:,} events: the run failed: {failed['error']}")
    args.results_dir.mkdir(parents=True, exist_ok=True)
    out = args.results_dir / f"{date[:10]}-scale.json"
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    out.with_suffix(".svg").write_text(svg_plot(results["points"]), encoding="utf-8")
    print(f"wrote {out} and {out.with_suffix('.svg').name}")
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
