"""ML export: features as of a time and point-in-time per label, with a checked manifest."""

from __future__ import annotations

import csv
import hashlib
import json
import math
from pathlib import Path
from typing import Any

import duckdb
import pytest
from pipeline_sites import Site

pytestmark = pytest.mark.slow

CATEGORIES = ("click", "view", "search", "add_to_cart", "purchase")
COUNTS = ", ".join(f"count(*) filter (category = '{c}')" for c in CATEGORIES)


def expected_features(analytics: Path, spine: list[tuple[int, str]]) -> list[dict[str, Any]]:
    """Each row's features recomputed by hand from the marts' rows at or before its label_ts
    (means, deviations and sums to the 6 decimals their docs give)."""
    con = duckdb.connect(str(analytics), read_only=True)
    out = []
    try:
        for user_id, label_ts in spine:
            e = con.execute(
                f"""select count(*), {COUNTS},
                    round(avg(value), 6), round(stddev_samp(value), 6),
                    date_diff('day', max(occurred_at), ?::timestamp)
                from marts.fct_events where user_id = ? and occurred_at <= ?::timestamp""",
                [label_ts, user_id, label_ts],
            ).fetchone()
            o = con.execute(
                """select count(*), coalesce(round(sum(amount), 6), 0),
                    date_diff('day', max(created_at), ?::timestamp)
                from marts.fct_orders where user_id = ? and created_at <= ?::timestamp""",
                [label_ts, user_id, label_ts],
            ).fetchone()
            row = {"user_id": user_id, "event_count": e[0], "value_mean": e[6], "value_std": e[7]}
            row.update({f"event_count_{c}": e[1 + i] for i, c in enumerate(CATEGORIES)})
            row.update(days_since_last_event=e[8], order_count=o[0], order_amount_total=o[1])
            row["days_since_last_order"] = o[2]
            out.append(row)
    finally:
        con.close()
    return out


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return (a is None and b is None) or (
            a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
        )
    return a == b


def read_parquet(path: Path) -> list[dict[str, Any]]:
    con = duckdb.connect()
    cursor = con.execute("select * from read_parquet(?)", [str(path)])
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]


def check_manifest(out: Path, published: Site, rows: int) -> dict[str, Any]:
    manifest = json.loads(out.with_name(out.name + ".manifest.json").read_text())
    assert manifest["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert manifest["rows"] == rows
    con = duckdb.connect(str(published.analytics), read_only=True)
    run_id, loads = con.execute("select run_id, dlt_load_ids from meta.publication").fetchone()
    con.close()
    assert manifest["published_run_id"] == run_id
    assert manifest["dlt_load_ids"] == loads and len(loads) >= 4
    assert len(manifest["git_commit"] or "") == 40
    return manifest


def test_spine_export_is_point_in_time(published: Site, tmp_path: Path) -> None:
    con = duckdb.connect(str(published.analytics), read_only=True)
    # For users with enough events, label at an event's own time (inclusive edge), with
    # events before and after it; a second label for the same user later on.
    picks = con.execute(
        """with ranked as (
            select user_id, occurred_at,
                row_number() over (partition by user_id order by occurred_at) as n,
                count(*) over (partition by user_id) as total
            from marts.fct_events)
        select user_id, strftime(occurred_at, '%Y-%m-%dT%H:%M:%SZ') from ranked
        where total >= 6 and n in (2, total - 2) order by user_id, n limit 40"""
    ).fetchall()
    con.close()
    spine_rows = [(int(u), t) for u, t in picks] + [(999999, "2026-01-10T00:00:00Z")]
    spine = tmp_path / "labels.csv"
    with open(spine, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["user_id", "label_ts"])
        writer.writerows(spine_rows)
    out = tmp_path / "exports" / "training.parquet"
    done = published.pipeline("features", "--spine", str(spine), "--out", str(out))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    got = read_parquet(out)
    assert [(r["user_id"], f"{r['label_ts']:%Y-%m-%dT%H:%M:%SZ}") for r in got] == spine_rows
    expected = expected_features(published.analytics, [(u, t[:19]) for u, t in spine_rows[:-1]])
    for row, want in zip(got, expected, strict=False):
        assert row["features_as_of"] == row["label_ts"]
        for key, value in want.items():
            assert same(row[key], value), (row["user_id"], row["label_ts"], key, row[key], value)
    # Both sides of every label: some events counted, some (later) left out.
    con = duckdb.connect(str(published.analytics), read_only=True)
    for row in got[:-1]:
        total = con.execute(
            "select count(*) from marts.fct_events where user_id = ?", [row["user_id"]]
        ).fetchone()[0]
        assert 0 < row["event_count"] < total
    con.close()
    assert got[-1]["event_count"] is None  # unknown user: kept, no features
    manifest = check_manifest(out, published, len(spine_rows))
    assert manifest["as_of"] is None and manifest["spine"]["rows"] == len(spine_rows)
    assert [c["name"] for c in manifest["columns"]][:3] == ["user_id", "label_ts", "age_imputed"]


def test_as_of_export(published: Site, tmp_path: Path) -> None:
    out = tmp_path / "features.parquet"
    done = published.pipeline("features", "--as-of", "2026-01-15T00:00:00Z", "--out", str(out))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    got = read_parquet(out)
    con = duckdb.connect(str(published.analytics), read_only=True)
    users = con.execute("select count(*) from marts.dim_users").fetchone()[0]
    events = con.execute(
        "select count(*) from marts.fct_events where occurred_at <= '2026-01-15 00:00:00'"
    ).fetchone()[0]
    con.close()
    assert len(got) == users
    assert sum(r["event_count"] for r in got) == events
    assert {str(r["features_as_of"]) for r in got} == {"2026-01-15 00:00:00"}
    manifest = check_manifest(out, published, users)
    assert manifest["as_of"] == "2026-01-15T00:00:00Z" and manifest["spine"] is None
