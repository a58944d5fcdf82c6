"""A file source whose folder is as its last load left it is not run: no dlt pipeline starts
(ingestion/unchanged.py). Whatever changed (a new file, a touched one, the declaration),
or a load that did not pass, runs it again, and what it loads is exact."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest

from demo.api import serve, start_server
from ingestion import api_probe, unchanged
from ingestion.kinds.common import SourceConfigError
from ingestion.kinds.rest_api import ask_every_seconds
from tests.conftest import Sample
from tests.project_env import LOADED_FILES, ROOT, SAMPLE_TOKEN, copy_state, warehouse_env
from warehouse.settings import LOADING_FD_ENV
from warehouse.sources import declared_sources

SOURCES = ("users", "events", "products")


class Site:
    """A copy of the ingested sample (warehouse, the users and events folders, products.db)."""

    def __init__(self, sample: Sample, root: Path) -> None:
        copy_state(sample.warehouse.parent, root, LOADED_FILES)
        self.inbox = root / "inbox"
        self.sample_inbox = sample.inbox  # the demo API's data: orders/orders.json
        for name in SOURCES:
            shutil.copytree(sample.inbox / name, self.inbox / name, copy_function=shutil.copy2)
        self.warehouse = root / "warehouse.duckdb"
        self.summary = root / "summary.json"
        self.env = warehouse_env(root)

    def ingest(self, **env: str) -> dict[str, dict[str, Any]]:
        """`python -m ingestion users events`; each source's row of --summary-json. What it
        wrote to the pipe a pipeline run hands it (LOADING_FD_ENV) is kept in `announced`."""
        listening, loading = os.pipe()
        try:
            done = subprocess.run(
                [sys.executable, "-m", "ingestion", *SOURCES, "--inbox", str(self.inbox)]
                + ["--summary-json", str(self.summary)],
                cwd=ROOT,
                env={**self.env, LOADING_FD_ENV: str(loading), **env},
                pass_fds=(loading,),
                capture_output=True,
                text=True,
                timeout=600,
            )
            os.close(loading)
            self.announced = os.read(listening, 16)
        finally:
            os.close(listening)
        assert done.returncode in (0, 1), done.stderr
        document = json.loads(self.summary.read_text())
        assert document["exit_code"] == done.returncode
        return {source["name"]: source for source in document["sources"]}

    def ingest_one(self, *args: str, **env: str) -> tuple[dict[str, Any], str]:
        """`python -m ingestion SOURCE ...`: its row of --summary-json, and what it printed."""
        done = subprocess.run(
            [sys.executable, "-m", "ingestion", *args, "--summary-json", str(self.summary)],
            cwd=ROOT,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode in (0, 1), done.stderr
        return json.loads(self.summary.read_text())["sources"][0], done.stdout

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        with duckdb.connect(str(self.warehouse), read_only=True) as con:
            return con.execute(sql).fetchall()

    def loads(self) -> int:
        return self.query("select count(*) from raw._dlt_loads")[0][0]


def statuses(reports: dict[str, dict[str, Any]]) -> dict[str, tuple[str, bool, int]]:
    return {name: (r["status"], r["dlt_pipeline"], r["rows_loaded"]) for name, r in reports.items()}


@pytest.fixture
def site(sample_warehouse: Sample, tmp_path: Path) -> Site:
    site = Site(sample_warehouse, tmp_path)
    # another inbox folder than the sample's: both run once through dlt, load nothing new
    ran = ("ok", True, 0)
    assert statuses(site.ingest()) == {"users": ran, "events": ran, "products": ran}
    return site


def test_nothing_new_starts_no_dlt_pipeline_and_writes_nothing(site: Site) -> None:
    loads, records = site.loads(), site.query("select * from raw._source_inputs order by 1")
    assert [r[0] for r in records] == ["events", "orders", "products", "users"]
    pipelines = site.warehouse.parent / ".dlt-pipelines"
    before = sorted((p, p.stat().st_mtime_ns) for p in pipelines.rglob("*"))

    reports = site.ingest()

    expected = ("nothing new", False, 0)
    assert statuses(reports) == {"users": expected, "events": expected, "products": expected}
    assert site.loads() == loads
    assert site.query("select * from raw._source_inputs order by 1") == records
    # dlt's working folders are as they were: no pipeline was made, let alone run
    assert sorted((p, p.stat().st_mtime_ns) for p in pipelines.rglob("*")) == before
    assert site.announced == b""  # a pipeline run's dbt child is not told to import dbt


def test_a_new_file_runs_its_source_only_and_loads_it_once(site: Site) -> None:
    events = site.query("select count(*) from raw.events")[0][0]
    segment = site.inbox / "events" / "events-999999.jsonl"
    lines = [
        {"event_id": f"new-{i}", "user_id": "1", "category": "click", "value": "1.5"}
        | {"occurred_at": "2026-12-06T10:00:00Z"}
        for i in range(7)
    ]
    segment.write_text("".join(json.dumps(line) + "\n" for line in lines))

    quiet = ("nothing new", False, 0)
    assert statuses(site.ingest()) == {"users": quiet, "events": ("ok", True, 7), "products": quiet}
    assert site.announced == b"1"  # once, before the events load
    assert statuses(site.ingest())["events"] == ("nothing new", False, 0)
    assert site.announced == b""
    assert site.query("select count(*) from raw.events")[0][0] == events + 7


def test_without_records_loading_is_announced_once_rows_are_loaded(site: Site) -> None:
    """No record to tell what is new (an API, a first load): every source runs, and the
    pipeline's dbt child hears of it only once a source loaded rows."""
    forget = "delete from raw._source_inputs"
    with duckdb.connect(str(site.warehouse)) as con:
        con.execute(forget)
    ran = ("ok", True, 0)
    assert statuses(site.ingest()) == {"users": ran, "events": ran, "products": ran}
    assert site.announced == b""

    segment = site.inbox / "events" / "events-999999.jsonl"
    line = {"event_id": "new-1", "user_id": "1", "category": "click", "value": "1.5"}
    segment.write_text(json.dumps(line | {"occurred_at": "2026-12-06T10:00:00Z"}) + "\n")
    with duckdb.connect(str(site.warehouse)) as con:
        con.execute(forget)
    assert statuses(site.ingest())["events"] == ("ok", True, 1)
    assert site.announced == b"1"


def test_a_touched_file_runs_its_source_which_loads_nothing(site: Site) -> None:
    users = site.query("select count(*) from raw.users")[0][0]
    export = sorted((site.inbox / "users").iterdir())[0]
    stat = export.stat()
    os.utime(export, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))

    assert statuses(site.ingest())["users"] == ("ok", True, 0)  # same bytes: nothing loaded
    assert site.announced == b"1"  # its record no longer held: rows were likely
    assert statuses(site.ingest())["users"] == ("nothing new", False, 0)
    assert site.query("select count(*) from raw.users")[0][0] == users


def test_a_changed_declaration_runs_the_source(site: Site) -> None:
    override = {"SOURCES__USERS__NULL_VALUES": '["NA"]'}
    assert statuses(site.ingest(**override))["users"][:2] == ("ok", True)
    assert statuses(site.ingest(**override))["users"] == ("nothing new", False, 0)
    assert statuses(site.ingest())["users"][:2] == ("ok", True)  # and back


def test_a_source_that_failed_is_run_again(site: Site) -> None:
    bad = site.inbox / "users" / "users-zzz.csv"
    bad.write_text("user_id,name,email\n" + "".join(f"x{i}\n" for i in range(5)))
    gate = {"SOURCES__USERS__MAX_REJECTED_RATE": "0.01"}

    first = site.ingest(**gate)["users"]
    assert (first["status"], first["dlt_pipeline"]) == ("failed", True)
    assert "max_rejected_rate" in first["error"]
    assert site.query("select count(*) from raw._source_inputs where source = 'users'") == [(0,)]
    # no record of a failed load: never "nothing new"; dlt finds the file loaded (the gate
    # judges one run's rejects), and then the source is recorded
    assert statuses(site.ingest(**gate))["users"] == ("ok", True, 0)
    assert statuses(site.ingest(**gate))["users"] == ("nothing new", False, 0)


def test_full_refresh_always_runs(site: Site) -> None:
    reports = site.ingest()
    assert statuses(reports)["users"][0] == "nothing new"
    users, _ = site.ingest_one("users", "--inbox", str(site.inbox), "--full-refresh")
    assert (users["status"], users["dlt_pipeline"]) == ("ok", True)
    assert users["rows_loaded"] == site.query("select count(*) from raw.users")[0][0] > 0


NEWEST = "2030-01-01 00:00:00.000000"  # written as the sample's products.db writes its times


def test_a_table_with_a_newer_cursor_runs_its_source(site: Site) -> None:
    database = site.inbox / "products" / "products.db"
    with sqlite3.connect(database) as con:
        con.execute("insert into products values (9001, 'New Lamp', 'home', 12.5, ?)", [NEWEST])
    assert statuses(site.ingest())["products"] == ("ok", True, 1)
    assert statuses(site.ingest())["products"] == ("nothing new", False, 0)
    with sqlite3.connect(database) as con:  # one more row at the newest cursor value
        con.execute("insert into products values (9002, 'New Desk', 'home', 80.0, ?)", [NEWEST])
    assert statuses(site.ingest())["products"] == ("ok", True, 1)
    assert site.query("select count(*) from raw.products where product_id >= 9001") == [(2,)]


def test_rows_without_a_cursor_are_asked_for_at_every_run(tmp_path: Path) -> None:
    """A database cannot say whether rows without a cursor value changed: no shortcut."""
    database = tmp_path / "t.db"
    with sqlite3.connect(database) as con:
        con.execute("create table t (id integer, updated_at text)")
        con.execute("insert into t values (1, '2026-01-01'), (2, '2026-01-02')")
    probe = {"url": f"sqlite:///{database}", "tables": [["t", "updated_at"]]}
    state = unchanged.probed_state(probe)
    assert state is not None and unchanged.probed_state(probe) == state
    with sqlite3.connect(database) as con:
        con.execute("insert into t values (3, '2026-01-02')")  # at the newest value
    assert unchanged.probed_state(probe) not in (None, state)
    with sqlite3.connect(database) as con:
        con.execute("insert into t values (4, null)")
    assert unchanged.probed_state(probe) is None
    assert unchanged.probed_state({"url": "sqlite:////no/such.db", "tables": [["t", "u"]]}) is None


def test_an_api_with_ask_every_is_not_asked_again_until_it_has_passed(site: Site) -> None:
    """No record can say what an API holds: `ask_every` lets the configuration decide."""
    env = {"SOURCES__ORDERS__ASK_EVERY": "1h"}

    def ingest_orders(url: str, **extra: str) -> tuple[dict[str, Any], str]:
        return site.ingest_one("orders", "--api-url", url, **{**env, **extra})

    with serve(site.sample_inbox, token=SAMPLE_TOKEN) as url:
        report, _ = ingest_orders(url)
        assert (report["status"], report["dlt_pipeline"]) == ("ok", True)
    orders = site.query("select count(*) from raw.orders")

    # the server is gone: a run that asked it would fail
    report, printed = ingest_orders(url)
    assert (report["status"], report["dlt_pipeline"], report["error"]) == ("not due", False, None)
    assert "orders: not asked: its last load ended" in printed and "every 3600 s" in printed
    assert site.query("select count(*) from raw.orders") == orders

    # another base URL, or another ask_every, is another source: asked (and here, down)
    assert ingest_orders(url.replace("127.0.0.1", "localhost"))[0]["status"] == "failed"
    assert ingest_orders(url, SOURCES__ORDERS__ASK_EVERY="0")[0]["status"] == "failed"

    # a failed load leaves no record: asked again, even within the hour
    assert ingest_orders(url)[0]["status"] == "failed"
    with serve(site.sample_inbox, token=SAMPLE_TOKEN) as url:
        assert ingest_orders(url)[0]["status"] == "ok"
        assert ingest_orders(url)[0]["status"] == "not due"
        with duckdb.connect(str(site.warehouse)) as con:  # the hour has passed
            con.execute(
                "update raw._source_inputs set recorded_at = recorded_at - interval 61 minute"
                " where source = 'orders'"
            )
        report, _ = ingest_orders(url)
        assert (report["status"], report["dlt_pipeline"], report["rows_loaded"]) == ("ok", True, 0)
    assert site.query("select count(*) from raw.orders") == orders


def test_an_api_is_asked_once_without_dlt_and_runs_when_it_has_something_new(
    site: Site,
) -> None:
    """Without ask_every, each endpoint is asked once, from its cursor, before dlt starts
    (ingestion/api_probe.py): nothing new when the answer holds only the records the last
    load read; a newer order runs the source, which loads exactly it."""
    shutil.copytree(site.sample_inbox / "orders", site.inbox / "orders")
    orders_file = site.inbox / "orders" / "orders.json"
    server = start_server(site.inbox, SAMPLE_TOKEN)

    def ingest_orders() -> tuple[str, bool, int]:
        report, _ = site.ingest_one("orders", "--api-url", server.url)
        return report["status"], report["dlt_pipeline"], report["rows_loaded"]

    try:
        assert ingest_orders() == ("ok", True, 0)  # another URL than the sample's load
        asked = server.orders_requests
        assert ingest_orders() == ("nothing new", False, 0)
        assert server.orders_requests == asked + 1  # the probe's one request

        orders = json.loads(orders_file.read_text())
        orders[0] = {**orders[0], "amount": 1234.5, "updated_at": "2030-01-01T00:00:00Z"}
        orders_file.write_text(json.dumps(orders))
        assert ingest_orders() == ("ok", True, 1)
        assert site.query(
            f"select amount from raw.orders where order_id = {orders[0]['order_id']}"
        ) == [(1234.5,)]
        assert ingest_orders() == ("nothing new", False, 0)

        # a record at the cursor that the load did not read (changed): the source runs
        orders[0] = {**orders[0], "amount": 99.0}
        orders_file.write_text(json.dumps(orders))
        assert ingest_orders()[:2] == ("ok", True)
    finally:
        server.stop()
    # the API gone: the probe cannot ask it, so the source runs and says why it failed
    assert ingest_orders() == ("failed", True, 0)


def test_only_apis_read_as_dlt_reads_them_are_probed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe asks without dlt only where its answer means what it means to dlt."""
    monkeypatch.setenv("SOURCES__O__API_TOKEN", "token-1")
    endpoint = {
        "path": "orders",
        "data_selector": "data",
        "incremental": {"cursor_path": "updated_at", "start_param": "since"},
    }
    options = {
        "base_url": "http://127.0.0.1:1",
        "auth": "bearer",
        "api_token": "token-1",
        "paginator": {"type": "cursor", "cursor_path": "next_page", "cursor_param": "page"},
        "resources": [{"name": "orders", "endpoint": endpoint}],
    }
    assert api_probe.plan("o", options)["resources"][0]["paginator"] == ["cursor", "next_page"]

    def probed(**changed: Any) -> bool:
        return api_probe.plan("o", {**options, **changed}) is not None

    assert probed(paginator="header_link") and probed(paginator="single_page")
    assert not probed(paginator={"type": "offset", "limit": 100})  # its end is not shown
    assert not probed(paginator="auto")
    assert not probed(base_url="http://127.0.0.1:1/?key=abc")  # the record keeps the URL
    assert not probed(base_url="http://user:pw@127.0.0.1:1")
    assert not probed(api_token="token-2")  # dlt resolved another token than env's
    assert probed(auth=None, api_token=None)
    assert not probed(auth={"type": "oauth2_client_credentials", "client_id": "c"})
    no_cursor = {**endpoint, "incremental": {"cursor_path": "updated_at"}}  # not sent
    assert not probed(resources=[{"name": "orders", "endpoint": no_cursor}])
    jsonpath = {**endpoint, "data_selector": "$.data[*]"}
    assert not probed(resources=[{"name": "orders", "endpoint": jsonpath}])
    assert not probed(resources=["orders"])  # the kind's own check names what is wrong


def test_ask_every_is_a_duration() -> None:
    assert [ask_every_seconds("o", v) for v in ("90s", "15m", "2h", "1d", 30, "0", None)] == [
        90,
        900,
        7200,
        86400,
        30,
        None,
        None,
    ]
    with pytest.raises(
        SourceConfigError, match=r"sources.o.ask_every .* is .every hour.; expected seconds"
    ):
        ask_every_seconds("o", "every hour")


# Another source's declaration, broken: only the check of every declaration sees it.
BROKEN = ("SOURCES__PRODUCTS__TABLES", '[{"name": "products"}]')


def test_declarations_as_a_record_saw_them_are_not_checked_again(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before a source runs, every declaration is checked (dlt resolves every option of
    every source: about 1 s). A record whose digest is that of now shows them as they were
    at a load that passed the check; any change to them is checked again, and fails."""
    for key in [k for k in os.environ if k.upper().startswith("SOURCES__")]:
        monkeypatch.delenv(key)
    for key, value in site.env.items():
        if key.upper().startswith("SOURCES__"):
            monkeypatch.setenv(key, value)

    def answer() -> unchanged.Answer:
        return unchanged.nothing_new(
            site.warehouse, declared_sources(), ["events"], str(site.inbox)
        )

    assert answer().declarations_checked
    monkeypatch.setenv(*BROKEN)
    assert not answer().declarations_checked

    new_segment = site.inbox / "events" / "events-999999.jsonl"
    new_segment.write_text(
        json.dumps({"event_id": "evt-x", "user_id": 1, "category": "click", "value": 1,
                    "occurred_at": "2026-01-20T10:00:00Z"}) + "\n"
    )  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "ingestion", "events", "--inbox", str(site.inbox)],
        cwd=ROOT,
        env=dict([*site.env.items(), BROKEN]),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 2, done.stderr
    assert "sources.products.tables (env SOURCES__PRODUCTS__TABLES): each entry" in done.stderr
    assert statuses(site.ingest())["events"] == ("ok", True, 1)  # as recorded: not checked
