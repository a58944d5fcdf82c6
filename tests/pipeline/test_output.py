"""What a run prints: one plain line per step and its outcome, dbt's node lines only
with --verbose, no escape codes in a file, a timer on a terminal, NO_COLOR honoured."""

from __future__ import annotations

import os
import pty
import re
import subprocess

import pytest
from pipeline_sites import Site
from project_env import ROOT, SAMPLE_TOKEN

from demo.api import serve

pytestmark = pytest.mark.slow

# dbt's line per node, e.g. "1 of 9 OK created sql view model staging.stg_products__products"
DBT_NODE_LINE = re.compile(r"^\S*\s*\d+ of \d+ (START|OK|PASS|WARN|ERROR|FAIL)\b", re.M)
STEPS = ("ingest", "build", "monitor", "publish")


def test_a_run_into_a_file_is_short_plain_and_says_each_step_once(site: Site) -> None:
    done = site.run("--sources", "products", "--select", "stg_products__products+")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    output = done.stdout + done.stderr
    assert "\x1b" not in output and "\r" not in output
    assert len(output.splitlines()) <= 40
    assert not DBT_NODE_LINE.search(output)
    step_lines = [line.split()[0] for line in done.stdout.splitlines() if line[:8].strip() in STEPS]
    assert step_lines == list(STEPS)
    lines = done.stdout.strip().splitlines()
    assert [line.split()[:2] for line in lines if line[:8].strip() in STEPS] == [
        [step, "ok"] for step in STEPS
    ]
    assert "| step |" not in done.stdout  # each step is said once, on its line
    assert lines[-1].endswith(f"published {site.analytics}")


def test_verbose_shows_dbt_node_lines(site: Site) -> None:
    done = site.run("--sources", "products", "--select", "stg_products__products", "--verbose")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert DBT_NODE_LINE.search(done.stdout)
    assert "stg_products__products" in done.stdout
    assert "\x1b" not in done.stdout  # not a terminal: dbt's colours are off


def _on_a_terminal(site: Site, *args: str, env: dict[str, str] | None = None) -> str:
    """`python -m pipeline run ...` with stdout and stderr on a pseudo-terminal."""
    leader, follower = pty.openpty()
    with serve(site.inbox, token=SAMPLE_TOKEN) as url:
        process = subprocess.Popen(
            site.command(*site.run_args(url, *args)),
            cwd=ROOT,
            env={**site.env, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=follower,
            stderr=follower,
        )
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        process.wait(timeout=600)
    os.close(leader)
    assert process.returncode == 0, b"".join(chunks).decode(errors="replace")[-3000:]
    return b"".join(chunks).decode(errors="replace")


def test_a_terminal_shows_a_timer_and_no_color_is_honoured(site: Site) -> None:
    shown = _on_a_terminal(site, "--sources", "products", "--select", "stg_products__products")
    assert re.search(r"\r(ingest|build) \.\.\. \d+s", shown)
    assert not DBT_NODE_LINE.search(shown)
    verbose = _on_a_terminal(
        site,
        "--sources",
        "products",
        "--select",
        "stg_products__products",
        "--verbose",
        env={"NO_COLOR": "1"},
    )
    assert DBT_NODE_LINE.search(verbose)
    assert "\x1b" not in verbose


def test_a_failed_dbt_node_is_named_with_its_error(site: Site) -> None:
    import duckdb

    con = duckdb.connect(str(site.warehouse))
    con.execute(  # a product without a key: the error-level not_null test fails
        "insert into raw.products select * replace (null as product_id, 'nokey' as _dlt_id) "
        "from raw.products where product_id = 1"
    )
    con.close()
    done = site.run("--sources", "products", "--select", "stg_products__products")
    assert done.returncode == 1
    assert re.search(
        r"^  not_null_stg_products__products_product_id: Got 1 result", done.stdout, re.M
    ), done.stdout[-3000:]
    assert not DBT_NODE_LINE.search(done.stdout)
