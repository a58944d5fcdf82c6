"""`python -m demo` (what `make run` does), its output sent to a file as `make run > run.log`
would: sample data, the demo API, one gated run, a short plain log with a line per step,
the published path and why names are null and emails hashed there; and the README shows
that log as it is (its figures aside)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from project_env import ROOT, warehouse_env

pytestmark = pytest.mark.slow
STEPS = ("ingest", "build", "monitor", "publish")


def readme_sample_shapes() -> list[re.Pattern[str]]:
    """The README's `make run` output, a line each, with its figures (counts, seconds, the
    run id) and the folders of paths free: a real run must print the same lines, so
    the README cannot drift from what users see."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("ends like this:\n\n```\n", 1)[1].split("```", 1)[0]
    shapes = []
    for line in block.splitlines():
        if line.strip() in ("", "..."):
            continue
        parts = []
        for token in line.split():
            if re.fullmatch(r"[0-9a-f]{8}", token):
                parts.append(r"[0-9a-f]{8}")
            elif "/" in token or token.endswith(".duckdb"):  # a path: its folder is free
                parts.append(r"\S*" + re.escape(token.rsplit("/", 1)[-1]))
            else:
                pieces = re.split(r"(\d[\d,.]*\d|\d)", token)
                parts.append(
                    "".join(r"[\d,.]+" if i % 2 else re.escape(x) for i, x in enumerate(pieces))
                )
        shapes.append(re.compile(r"\s+".join(parts)))
    return shapes


def test_demo_run_publishes_and_says_where(tmp_path: Path) -> None:
    env = warehouse_env(tmp_path)
    env.pop("ANALYTICS_PATH", None)
    env.pop("SOURCES__ORDERS__API_TOKEN")  # the demo brings its own API and token
    done = subprocess.run(
        [sys.executable, "-m", "demo", "--inbox", str(tmp_path / "inbox"), "--users", "200"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
    )
    log = done.stdout
    assert done.returncode == 0, log[-3000:]
    assert "\x1b" not in log
    assert len(log.splitlines()) <= 40
    lines = log.strip().splitlines()
    summary = next(i for i, line in enumerate(lines) if line.startswith("run "))
    assert [line.split()[:2] for line in lines if line[:8].strip() in STEPS] == [
        [step, "ok"] for step in STEPS
    ]
    analytics = tmp_path / "analytics.duckdb"
    assert lines[summary].endswith(f"published {analytics}")
    note = " ".join(lines[summary + 1 :])
    assert "names are null and emails hashed" in note and str(analytics) in note
    with duckdb.connect(str(analytics), read_only=True) as con:
        names, hashed = con.execute(
            "select count(name), count(*) filter (where regexp_full_match(email, '[0-9a-f]{64}'))"
            " from marts.dim_users"
        ).fetchone()
        users = con.execute("select count(*) from marts.dim_users").fetchone()[0]
    assert names == 0 and 0 < hashed <= users
    shapes = readme_sample_shapes()
    assert len(shapes) == 5
    assert [s.pattern for s in shapes if not any(s.fullmatch(line) for line in lines)] == []
