"""Gated runs: publish only what passed, never block readers, one writer at a time."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml
from pipeline_sites import VARS, Site, clone, marts, sha256, wait_for
from project_env import ROOT, SAMPLE_TOKEN

from demo.api import serve

pytestmark = pytest.mark.slow

READER = """
import sys, duckdb
def look(con):
    count = con.execute("select count(*) from marts.fct_events").fetchone()[0]
    run = con.execute("select run_id from meta.publication").fetchone()[0]
    print(count, run, flush=True)
con = duckdb.connect(sys.argv[1], read_only=True)
look(con)
sys.stdin.readline()
look(con)              # the old snapshot still answers after the swap
con.close()
look(duckdb.connect(sys.argv[1], read_only=True))
"""


def yaml_docs() -> dict[str, tuple[str, dict[str, str]]]:
    """{mart: (its description, {column: description})} as the sample's YAML says."""
    docs = {}
    for path in (ROOT / "models" / "marts").rglob("*.yml"):
        for model in (yaml.safe_load(path.read_text()) or {}).get("models", []):
            columns = {c["name"]: c.get("description", "") for c in model.get("columns", [])}
            docs[model["name"]] = (model.get("description", ""), columns)
    return docs


def test_the_published_file_explains_itself(published: Site) -> None:
    """Every published table and column carries its dbt description as a DuckDB comment;
    meta.publication's columns have their own types."""
    with duckdb.connect(str(published.analytics), read_only=True) as con:
        tables = dict(
            con.execute(
                "select table_name, comment from duckdb_tables() where schema_name = 'marts'"
            ).fetchall()
        )
        columns = con.execute(
            "select table_name, column_name, comment from duckdb_columns()"
            " where schema_name = 'marts'"
        ).fetchall()
        types = dict(
            con.execute(
                "select column_name, data_type from duckdb_columns()"
                " where schema_name = 'meta' and table_name = 'publication'"
            ).fetchall()
        )
    docs = yaml_docs()
    assert tables == {t: docs[t][0].strip() for t in tables}
    assert len(columns) == sum(len(docs[t][1]) for t in tables) > 50  # each documented
    assert [(t, c) for t, c, comment in columns if not comment] == []
    assert {(t, c): comment for t, c, comment in columns} == {
        (t, c): docs[t][1][c].strip() for t, c, _ in columns
    }
    assert types == {
        "run_id": "VARCHAR",
        "dbt_invocation_id": "VARCHAR",
        "dlt_load_ids": "VARCHAR[]",
        "check_kind": "VARCHAR",
        "settings": "VARCHAR",
        "published_at": "TIMESTAMP WITH TIME ZONE",
        "tables": "JSON",
        "pii_masking": "JSON",
        "encrypted_with": "VARCHAR",
    }


# Doubles published as their source sent them; every other double is computed.
AS_SENT = {("fct_events", "value"), ("fct_orders", "amount")}


def test_computed_floats_are_published_as_their_docs_say(published: Site) -> None:
    """Each computed double (mean, sum, quantile) says in its docs that it is rounded to 6
    decimals, and is: no 4.0249999999999995 in a file or an API response."""
    with duckdb.connect(str(published.analytics), read_only=True) as con:
        doubles = con.execute(
            "select table_name, column_name, comment from duckdb_columns()"
            " where schema_name = 'marts' and data_type = 'DOUBLE' order by all"
        ).fetchall()
        computed = [(t, c, note) for t, c, note in doubles if (t, c) not in AS_SENT]
        assert len(computed) >= 12
        assert [(t, c) for t, c, note in computed if "Rounded to 6 decimals" not in note] == []
        for table, column, _ in computed:
            [(rows, unrounded)] = con.execute(
                f'select count("{column}"), count(*) filter '
                f'(where "{column}" <> round("{column}", 6)) from marts."{table}"'
            ).fetchall()
            assert rows > 0 and unrounded == 0, (table, column)


def test_published_baseline_and_ledger(published: Site) -> None:
    """The clean run published every mart and wrote one complete ledger row."""
    (row,) = published.ledger()
    assert row["status"] == "succeeded" and row["published"] is True
    assert [row[f"{s}_status"] for s in ("ingest", "build", "monitor", "publish")] == ["ok"] * 4
    assert all(row[f"{s}_seconds"] > 0 for s in ("ingest", "build", "monitor", "publish"))
    assert row["dbt_invocation_id"] and row["alerts_error"] == 0
    assert row["analytics_path"] == str(published.analytics)
    assert SAMPLE_TOKEN not in json.dumps(row, default=str)
    published_marts = marts(published.analytics)
    assert sorted(published_marts) == [
        "category_stats",
        "dim_users",
        "fct_events",
        "fct_orders",
        "user_features",
    ]
    assert published_marts == marts(published.warehouse, as_published=True)
    con = duckdb.connect(str(published.analytics), read_only=True)
    meta = con.execute("select run_id, dlt_load_ids, tables from meta.publication").fetchone()
    con.close()
    assert meta[0] == row["run_id"]
    assert len(meta[1]) >= 4  # the sample's loads: one per source at least
    assert json.loads(meta[2]) == {k: len(v) for k, v in published_marts.items()}
    assert not list(published.root.glob(".analytics.duckdb.*"))


def test_failing_error_test_publishes_nothing(site: Site) -> None:
    before = sha256(site.analytics)
    con = duckdb.connect(str(site.warehouse))
    con.execute(  # bad data: a product without a key (not_null test on it, error level)
        "insert into raw.products select * replace (null as product_id, 'nokey' as _dlt_id) "
        "from raw.products where product_id = 1"
    )
    con.close()
    done = site.run("--sources", "products", "--select", "stg_products__products")
    assert done.returncode == 1, done.stdout[-3000:]
    assert sha256(site.analytics) == before
    assert "not_null_stg_products__products_product_id" in done.stderr
    assert re.search(r"^build\s+failed\b", done.stdout, re.M) and re.search(
        r"^publish\s+skipped\b", done.stdout, re.M
    )
    row = site.ledger()[-1]
    assert (row["status"], row["build_status"], row["monitor_status"], row["publish_status"]) == (
        "failed",
        "failed",
        "skipped",
        "skipped",
    )
    assert row["published"] is False
    assert "not_null_stg_products__products_product_id" in row["error"]


def test_reader_and_run_never_block_each_other(published: Site, tmp_path: Path) -> None:
    site = clone(published, tmp_path / "site", with_inbox=True)
    segment = site.inbox / "events" / "events-999999.jsonl"
    segment.write_text(
        "".join(
            json.dumps(
                {
                    "event_id": f"evt-new-{i}",
                    "user_id": 1,
                    "category": "click",
                    "value": 1.5,
                    "occurred_at": f"2026-01-20T10:0{i}:00Z",
                }
            )
            + "\n"
            for i in range(3)
        )
    )
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(site.analytics)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert reader.stdin is not None and reader.stdout is not None
    old_count, old_run = reader.stdout.readline().split()
    done = site.run()  # the reader holds its read-only connection the whole time
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out, _ = reader.communicate("next\n", timeout=600)
    assert reader.returncode == 0
    same, after = out.splitlines()
    assert same == f"{old_count} {old_run}"
    new_count, new_run = after.split()
    assert int(new_count) == int(old_count) + 3
    assert new_run == site.ledger()[-1]["run_id"] != old_run


def test_two_runs_started_together(site: Site, running: list[subprocess.Popen[str]]) -> None:
    small = ("--sources", "products", "--select", "stg_products__products")
    with serve(site.inbox, token=SAMPLE_TOKEN) as url:
        first = site.start(*site.run_args(url, *small))
        running.append(first)
        wait_for(lambda: site.holder().get("pid") == first.pid, 600, "the first run's lock", first)
        second = site.pipeline(*site.run_args(url, *small))
        third = site.start(*site.run_args(url, *small, "--wait", "300"))
        running.append(third)
        first_out, first_err = first.communicate(timeout=1800)
        third_out, third_err = third.communicate(timeout=1800)
    assert second.returncode == 1
    assert second.stderr.startswith(f"error: another run (PID {first.pid}, started at ")
    assert "holds the warehouse" in second.stderr and "--wait SECONDS" in second.stderr
    assert first.returncode == 0, first_out[-2000:] + first_err[-2000:]
    assert third.returncode == 0, third_out[-2000:] + third_err[-2000:]
    rows = site.ledger()[1:]  # after the clone's baseline row
    assert [r["status"] for r in rows] == ["succeeded", "succeeded"]  # the refused run left none
    assert [r["pid"] for r in rows] == [first.pid, third.pid]
    assert rows[1]["started_at"] >= rows[0]["finished_at"]  # one writer at a time
    assert marts(site.analytics) == marts(site.warehouse, as_published=True)


def test_a_run_rebuilds_what_its_new_rows_reach(published: Site, tmp_path: Path) -> None:
    """New events only: dbt builds what raw.events reaches, and the marts equal a full build's."""
    site = clone(published, tmp_path / "site", with_inbox=True)
    (site.inbox / "events" / "events-999999.jsonl").write_text(
        json.dumps(
            {
                "event_id": "evt-new-1",
                "user_id": 1,
                "category": "click",
                "value": 1.5,
                "occurred_at": "2026-01-20T10:00:00Z",
            }
        )
        + "\n"
    )

    def scope() -> dict[str, Any]:
        return json.loads(site.ledger()[-1]["detail"])["build_scope"]

    def results() -> dict[str, dict[str, Any]]:
        path = site.root / "target" / "run_results.json"
        return {r["unique_id"]: r for r in json.loads(path.read_text())["results"]}

    published_results = results()
    site.full_check_done_now()
    done = site.run()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (scope()["select"], scope()["reason"]) == (
        ["source:events.events+"],
        "new rows in events.events",
    )
    # run_results.json still covers every node: the users chain's from the last build
    after = results()
    assert after.keys() == published_results.keys()
    dim_users = "model.ml_warehouse_demo.dim_users"
    fct_events = "model.ml_warehouse_demo.fct_events"
    assert after[dim_users] == published_results[dim_users]
    assert after[fct_events] != published_results[fct_events]
    narrowed = marts(site.warehouse)
    assert len(narrowed["fct_events"]) == len(marts(published.warehouse)["fct_events"]) + 1

    dbt = str(Path(sys.executable).with_name("dbt"))
    full = subprocess.run(
        [dbt, "build", "--vars", VARS], cwd=ROOT, env=site.env, capture_output=True, text=True
    )
    assert full.returncode == 0, full.stdout[-3000:]
    assert marts(site.warehouse) == narrowed

    done = site.run()  # the manual dbt build is not in the ledger: everything again
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (scope()["select"], scope()["reason"]) == (
        None,
        "dbt ran outside the pipeline since the last build",
    )
    done = site.run()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert scope()["select"] == []
    assert (
        re.search(r"^build\s+ok\b", done.stdout, re.M)
        and "nothing to rebuild (no new rows in raw)" in done.stdout
    )


def test_marts_do_not_depend_on_the_process_time_zone(published: Site, tmp_path: Path) -> None:
    """Times without an offset, and dates, are UTC (a source's default `timezone`) whatever
    the process's TZ: the same inputs give the same marts under UTC and Asia/Kolkata."""
    runs = {}
    for zone in ("UTC", "Asia/Kolkata"):
        site = clone(published, tmp_path / zone.replace("/", "-"), with_inbox=True)
        (site.inbox / "users" / "users-9999.csv").write_text(
            "user_id,name,email,age,country,signup_at,updated_at\n"
            "900001,Naive Time,naive@example.com,40,DE,2026-01-03 12:00:00,2026-01-20\n"
        )
        done = site.run(env={"TZ": zone})
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        runs[zone] = marts(site.warehouse)
        con = duckdb.connect(str(site.warehouse), read_only=True)
        try:
            times = con.execute(
                "select signup_at::varchar, updated_at::varchar from marts.dim_users"
                " where user_id = 900001"
            ).fetchall()
        finally:
            con.close()
        assert times == [("2026-01-03 12:00:00", "2026-01-20 00:00:00")], zone
    assert runs["UTC"] == runs["Asia/Kolkata"]
