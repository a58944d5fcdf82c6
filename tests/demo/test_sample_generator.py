"""The sample generator: byte-identical per seed, and every manifest number recounted here.

The counts below are recomputed from the files with csv/json/sqlite3 only, independently of
the generator's own bookkeeping.
"""

from __future__ import annotations

import csv
import json
import re
import sqlite3
import statistics
import subprocess
import sys
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from demo.generator import generate

REPO = Path(__file__).resolve().parents[2]
USERS = 200
SEED = 7
SEGMENT_SIZE = 500  # several segments at 200 users, so re-sent events cross segments
TS = "%Y-%m-%dT%H:%M:%SZ"
CATEGORIES = ["click", "view", "search", "add_to_cart", "purchase"]
STATUSES = ["placed", "shipped", "delivered", "cancelled"]
EMAIL_RE = re.compile(r"^[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}$")


def _files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _ts(text: str) -> datetime | None:
    try:
        return datetime.strptime(text, TS)
    except ValueError:
        return None


def _age_kind(age: str) -> str:
    if age == "":
        return "missing_age"
    if not re.fullmatch(r"-?[0-9]+", age):
        return "non_numeric_age"
    return "ok" if 0 <= int(age) <= 120 else "impossible_age"


def _email_kind(email: str) -> str:
    clean = email.strip().lower()
    if not EMAIL_RE.match(clean):
        return "invalid_email"
    return "ok" if clean == email else "valid_email_needing_cleanup"


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("sample")
    manifest = generate(out, users=USERS, seed=SEED, segment_size=SEGMENT_SIZE)
    return out, manifest


def test_same_seed_gives_identical_files_and_other_seed_differs(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate(a, users=USERS, seed=SEED, segment_size=SEGMENT_SIZE)
    generate(b, users=USERS, seed=SEED, segment_size=SEGMENT_SIZE)
    generate(c, users=USERS, seed=SEED + 1, segment_size=SEGMENT_SIZE)
    files_a, files_b, files_c = _files(a), _files(b), _files(c)
    assert "products/products.db" in files_a
    assert files_a == files_b
    assert files_a.keys() == files_c.keys()
    for name in ["users/users-0001.csv", "events/events-000001.jsonl", "orders/orders.json"]:
        assert files_a[name] != files_c[name]
    assert files_a["products/products.db"] != files_c["products/products.db"]


def test_rerun_into_same_dir_replaces_stale_files(tmp_path: Path) -> None:
    out, fresh = tmp_path / "out", tmp_path / "fresh"
    generate(out, users=USERS, seed=3, segment_size=100)
    (out / "events" / "keep-me.txt").write_text("not generated\n")
    generate(out, users=USERS, seed=SEED, segment_size=SEGMENT_SIZE)
    generate(fresh, users=USERS, seed=SEED, segment_size=SEGMENT_SIZE)
    files = _files(out)
    assert files.pop("events/keep-me.txt") == b"not generated\n"
    assert files == _files(fresh)
    assert not list((out / "products").glob("*journal*"))


def test_manifest_file_format(sample: tuple[Path, dict[str, Any]]) -> None:
    out, manifest = sample
    text = (out / "manifest.json").read_text(encoding="utf-8")
    assert text == json.dumps(manifest, sort_keys=True, indent=2) + "\n"
    assert manifest["seed"] == SEED
    assert manifest["params"] == {
        "users": USERS,
        "seed": SEED,
        "events_per_user": 10,
        "segment_size": SEGMENT_SIZE,
        "orders_per_user": 2,
        "products": 50,
    }


def _read_users(out: Path) -> dict[str, Any]:
    files: dict[str, int] = {}
    malformed = 0
    raw: list[tuple[str, int, str, list[str]]] = []  # file, line, text, fields
    for path in sorted((out / "users").glob("users-*.csv")):
        data = path.read_bytes().decode("utf-8")
        assert data.endswith("\n") and "\r" not in data
        lines = data[:-1].split("\n")
        assert lines[0] == "user_id,name,email,age,country,signup_at,updated_at"
        files[path.name] = len(lines) - 1
        for number, line in enumerate(lines[1:], start=2):
            fields = next(csv.reader([line]))
            if len(fields) != 7:
                malformed += 1
                continue
            raw.append((path.name, number, line, fields))
    return {"files": files, "malformed": malformed, "raw": raw}


def test_users_counts(sample: tuple[Path, dict[str, Any]]) -> None:
    out, manifest = sample
    m = manifest["users"]
    users = _read_users(out)
    raw = users["raw"]
    assert m["files"] == users["files"]
    assert m["csv_rows"] == sum(users["files"].values())
    assert m["malformed_rows"] == users["malformed"]
    assert m["raw_rows"] == len(raw)

    # classification order: missing_user_id, invalid_updated_at, exact duplicate, superseded
    counts: Counter[str] = Counter()
    seen_lines: set[str] = set()
    versions: dict[str, list[tuple[datetime, str, list[str]]]] = defaultdict(list)
    for file, _line, text, fields in raw:
        updated = _ts(fields[6])
        if fields[0] == "":
            counts["missing_user_id"] += 1
        elif updated is None:
            counts["invalid_updated_at"] += 1
        elif text in seen_lines:
            counts["exact_duplicates"] += 1
        else:
            versions[fields[0]].append((updated, file, fields))
        seen_lines.add(text)
    assert m["missing_user_id"] == counts["missing_user_id"]
    assert m["invalid_updated_at"] == counts["invalid_updated_at"]
    assert m["exact_duplicates"] == counts["exact_duplicates"]
    assert m["distinct_users"] == len(versions)
    assert m["superseded_versions"] == sum(len(v) - 1 for v in versions.values())

    latest_kinds: Counter[str] = Counter()
    updated_users = new_users = 0
    for versions_of_user in versions.values():
        by_time = sorted(versions_of_user, key=lambda v: v[0])
        files_seen = [v[1] for v in versions_of_user]
        assert len({v[0] for v in by_time}) == len(by_time)  # strictly newer versions
        if files_seen[0] == "users-0001.csv" and "users-0002.csv" in files_seen:
            updated_users += 1
            assert by_time[-1][1] == "users-0002.csv"
        if files_seen[0] == "users-0002.csv":
            new_users += 1
        latest = by_time[-1][2]
        latest_kinds[_age_kind(latest[3])] += 1
        latest_kinds[_email_kind(latest[2])] += 1
        assert re.fullmatch(r"[A-Z]{2}", latest[4])
        assert _ts(latest[5]) is not None
    assert m["updated_users"] == updated_users
    assert m["new_users_in_later_files"] == new_users
    assert m["latest"] == {k: latest_kinds[k] for k in m["latest"]}

    # invalid-updated_at rows use user_ids that appear nowhere else
    invalid_ids = {f[0] for _, _, _, f in raw if f[0] and _ts(f[6]) is None}
    assert not invalid_ids & versions.keys()

    # every defect type is present at 200 users, and names that need quoting too
    for key in ["malformed_rows", "exact_duplicates", "missing_user_id", "invalid_updated_at"]:
        assert m[key] >= 1, key
    assert all(v >= 1 for v in m["latest"].values()), m["latest"]
    assert {f[3] for _, _, _, f in raw} >= {"", "abc", "250", "-3"}
    text = (out / "users" / "users-0001.csv").read_text(encoding="utf-8")
    assert re.search(r'^[0-9]+,"[^"]+, [^"]+",', text, re.M)  # quoted comma
    assert '""' in text  # quoted double quote

    assert m["raw_rows"] == (
        m["distinct_users"]
        + m["superseded_versions"]
        + m["exact_duplicates"]
        + m["missing_user_id"]
        + m["invalid_updated_at"]
    )


def test_events_counts(sample: tuple[Path, dict[str, Any]]) -> None:
    out, manifest = sample
    m = manifest["events"]
    user_ids = {f[0] for *_, f in _read_users(out)["raw"] if f[0] and _ts(f[6])}

    segments: dict[str, int] = {}
    lines = malformed = resent = late = invalid = 0
    first_seen: dict[str, tuple[int, str]] = {}  # event_id -> (segment no, line)
    distinct: list[dict[str, Any]] = []
    watermark: datetime | None = None
    last_on_time: datetime | None = None
    window_start: dict[int, datetime] = {}
    late_events: list[tuple[int, datetime]] = []
    paths = sorted((out / "events").glob("events-*.jsonl"))
    assert [p.name for p in paths] == [f"events-{i:06d}.jsonl" for i in range(1, len(paths) + 1)]
    for seg_no, path in enumerate(paths):
        data = path.read_bytes().decode("utf-8")
        assert data.endswith("\n")
        seg_lines = data[:-1].split("\n")
        segments[path.name] = len(seg_lines)
        assert len(seg_lines) == SEGMENT_SIZE or path == paths[-1]
        for line in seg_lines:
            lines += 1
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                malformed += 1
                assert line.startswith('{"event_id": "evt-') and not line.endswith("}")
                continue
            assert list(event) == ["event_id", "user_id", "category", "value", "occurred_at"]
            eid = event["event_id"]
            if eid in first_seen:
                resent += 1
                first_seg, first_line = first_seen[eid]
                assert line == first_line and seg_no > first_seg
                continue
            first_seen[eid] = (seg_no, line)
            distinct.append(event)
            assert str(event["user_id"]) in user_ids
            occurred = _ts(event["occurred_at"])
            event["_valid"] = occurred is not None
            if occurred is None:
                invalid += 1
                assert event["occurred_at"] == "not-a-time"
                continue
            if watermark is not None and (watermark - occurred).total_seconds() >= 86400:
                late += 1
                late_events.append((seg_no, occurred))
            else:
                # on-time events never go back in time
                assert last_on_time is None or occurred >= last_on_time
                last_on_time = occurred
                window_start.setdefault(seg_no, occurred)
            watermark = occurred if watermark is None else max(watermark, occurred)

    assert m["segments"] == segments
    assert m["lines"] == lines
    assert m["malformed_lines"] == malformed
    assert m["resent_events"] == resent
    assert m["distinct_events"] == len(distinct)
    assert m["invalid_occurred_at"] == invalid
    assert m["late_events"] == late
    for seg_no, occurred in late_events:  # 1-3 days before the segment's window
        before = (window_start[seg_no] - occurred).total_seconds()
        assert 86400 < before <= 3 * 86400
    by_category = Counter(e["category"] for e in distinct)
    assert m["by_category"] == {c: by_category[c] for c in CATEGORIES}

    values: dict[str, list[float]] = defaultdict(list)
    for e in distinct:
        if e["_valid"]:
            values[e["category"]].append(float(e["value"]))
    outliers = 0
    for vals in values.values():
        if len(vals) < 2:
            continue  # a lone value is its own quartiles: never an outlier
        q1, _, q3 = statistics.quantiles(vals, n=4, method="inclusive")
        low, high = q1 - 1.5 * (q3 - q1), q3 + 1.5 * (q3 - q1)
        outliers += sum(1 for v in vals if v < low or v > high)
    assert m["value_outliers"] == outliers

    for key in ["malformed_lines", "resent_events", "late_events", "value_outliers"]:
        assert m[key] >= 1, key
    assert m["invalid_occurred_at"] >= 1
    assert m["lines"] == m["malformed_lines"] + m["resent_events"] + m["distinct_events"]


def test_orders_and_products_counts(sample: tuple[Path, dict[str, Any]]) -> None:
    out, manifest = sample
    raw = _read_users(out)["raw"]
    any_user_id = {f[0] for *_, f in raw if f[0]}

    con = sqlite3.connect(out / "products" / "products.db")
    try:
        columns = [(r[1], r[2].upper(), r[3]) for r in con.execute("pragma table_info(products)")]
        products = con.execute("select product_id, category, updated_at from products").fetchall()
    finally:
        con.close()
    assert columns == [
        ("product_id", "INTEGER", 0),
        ("name", "TEXT", 1),
        ("category", "TEXT", 1),
        ("price", "REAL", 1),
        ("updated_at", "DATETIME", 1),
    ]
    by_category = Counter(p[1] for p in products)
    assert set(by_category) <= set(manifest["products"]["by_category"])
    assert manifest["products"] == {
        "rows": len(products),
        "by_category": {c: by_category[c] for c in manifest["products"]["by_category"]},
    }
    for _, _, updated in products:
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}", updated)

    orders = json.loads((out / "orders" / "orders.json").read_text(encoding="utf-8"))
    product_ids = {p[0] for p in products}
    assert all(o["product_id"] in product_ids for o in orders)
    assert [o["order_id"] for o in orders] == list(range(1, len(orders) + 1))
    for o in orders:
        assert o["currency"] in {"EUR", "USD", "GBP"}
        assert _ts(o["created_at"]) <= _ts(o["updated_at"])
    unknown = sum(1 for o in orders if str(o["user_id"]) not in any_user_id)
    assert unknown >= 1
    by_status = Counter(o["status"] for o in orders)
    assert manifest["orders"] == {
        "rows": len(orders),
        "unknown_user": unknown,
        "by_status": {s: by_status[s] for s in STATUSES},
    }


def test_cli_runs(tmp_path: Path) -> None:
    out = tmp_path / "inbox"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "demo.generator",
            "--out",
            str(out),
            "--users",
            "50",
            "--seed",
            "1",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["params"]["users"] == 50 and manifest["seed"] == 1
    assert (out / "products" / "products.db").is_file()


def test_cli_rejects_bad_arguments(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "demo.generator", "--out", str(tmp_path), "--users", "0"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode != 0
    assert "error:" in result.stderr and "Traceback" not in result.stderr
