"""The code location as Dagster serves it: the webserver's asset graph, and the file sensor."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance, build_sensor_context
from dagster_sites import Site, sha256
from project_env import ROOT

pytestmark = [pytest.mark.dagster, pytest.mark.slow]

ASSET_GRAPH = "{ assetNodes { assetKey { path } dependencyKeys { path } } }"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql(url: str, query: str) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{url}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def asset_graph(url: str, timeout: float = 600) -> dict[tuple[str, ...], set[tuple[str, ...]]]:
    """{asset key: its upstream keys} once the code location has loaded."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            nodes = graphql(url, ASSET_GRAPH).get("data", {}).get("assetNodes") or []
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            nodes = []
        if nodes:
            return {
                tuple(n["assetKey"]["path"]): {tuple(d["path"]) for d in n["dependencyKeys"]}
                for n in nodes
            }
        assert time.monotonic() < deadline, "the webserver showed no assets"
        time.sleep(1)


@contextmanager
def webserver(env: dict[str, str], home: Path, log: Path) -> Iterator[str]:
    """`dagster-webserver` over the code location on 127.0.0.1, its history in `home`."""
    port = free_port()
    server = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("dagster-webserver")),
            *("-h", "127.0.0.1", "-p", str(port), "-m", "orchestration.definitions"),
        ],
        cwd=ROOT,
        env={**env, "DAGSTER_HOME": str(home)},
        stdout=subprocess.DEVNULL,
        stderr=open(log, "w"),  # noqa: SIM115 - closed with the process
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=60)


def test_the_webserver_shows_every_asset_and_the_source_edges(tmp_path: Path, inbox: Path) -> None:
    site = Site(tmp_path / "site", inbox)
    (tmp_path / "dagster").mkdir()
    (tmp_path / "dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with webserver(site.env, tmp_path / "dagster", tmp_path / "webserver.log") as url:
        graph = asset_graph(url)

    manifest = json.loads((site.root / "target" / "dagster" / "manifest.json").read_text())
    models = [n for n in manifest["nodes"].values() if n["resource_type"] == "model"]
    names = {key[-1] for key in graph}
    assert {m["name"] for m in models} <= names
    for source in ("users", "orders", "events", "products"):
        assert (source, source) in graph
    assert ("analytics",) in graph
    marts = {(m["schema"], m["name"]) for m in models if m["fqn"][1] == "marts"}
    assert graph[("analytics",)] == marts

    edges = 0
    for model in models:
        key = next(k for k in graph if k[-1] == model["name"])
        for upstream in model["depends_on"]["nodes"]:
            if upstream.startswith("source."):
                _, _, source, table = upstream.split(".")
                assert (source, table) in graph[key], (model["name"], source)
                edges += 1
    assert edges >= 5  # every staging model reads its source (and quarantine_events too)
    staging = graph[("staging", "stg_users__user_versions")]
    assert staging == {("users", "users")}


def test_one_new_file_requests_exactly_one_run(tmp_path: Path, inbox: Path) -> None:
    shutil.copytree(inbox, tmp_path / "inbox")
    site = Site(tmp_path / "site", tmp_path / "inbox")
    defs = site.definitions()
    users = defs.resolve_sensor_def("new_files_users")
    instance = DagsterInstance.ephemeral()

    def tick(cursor: str | None) -> Any:
        context = build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
        return users.evaluate_tick(context)

    first = tick(None)  # what is in the folder when the sensor starts: one run for it all
    assert len(first.run_requests) == 1
    idle = tick(first.cursor)
    assert idle.run_requests == []

    export = sorted((tmp_path / "inbox" / "users").glob("*.csv"))[0]
    new = export.with_name("users-new-export.csv")
    new.write_text(
        export.read_text().splitlines()[0] + "\n9999,New,new@example.com,30,DE,"
        "2026-03-01T00:00:00Z,2026-03-01T00:00:00Z\n"
    )
    (tmp_path / "inbox" / "events" / "events-999999.jsonl").write_text("{}\n")  # not users'

    third = tick(idle.cursor)
    assert len(third.run_requests) == 1
    request = third.run_requests[0]
    assert request.run_key.startswith("users:")
    assert request.tags["new_files"] == new.name
    assert tick(third.cursor).run_requests == []  # seen: no second run for the same file

    # The run loads users and rebuilds what reads it, through publish; not the other sources.
    selected = users.job.selection.resolve(defs.resolve_asset_graph())
    shown = {key.to_user_string() for key in selected}
    assert {"users/users", "staging/stg_users__users", "marts/dim_users", "analytics"} <= shown
    assert not shown & {"events/events", "orders/orders", "products/products"}
    assert os.environ.get("WAREHOUSE_PATH") != str(site.warehouse)  # env restored


def test_the_location_follows_the_declared_sources_and_the_schedule(
    tmp_path: Path, inbox: Path
) -> None:
    """A project that declares only `users` (and its own schedule) gets only what that builds."""
    config = tmp_path / "project" / ".dlt" / "config.toml"
    config.parent.mkdir(parents=True)
    declared = tomllib.loads((ROOT / ".dlt" / "config.toml").read_text())
    users = declared["sources"]["users"]
    config.write_text(
        '[pipeline]\nschedule = "*/15 * * * *"\n\n[sources.users]\n'
        + "".join(f"{key} = {json.dumps(value)}\n" for key, value in users.items())
    )
    site = Site(tmp_path / "site", inbox)
    defs = site.definitions(env={"DLT_PROJECT_DIR": str(config.parent.parent)})

    keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"users/users", "staging/stg_users__users", "marts/dim_users", "analytics"} <= keys
    assert not keys & {"events/events", "orders/orders", "staging/stg_events__events"}
    assert not {k for k in keys if k.startswith("marts/")} - {"marts/dim_users"}
    assert defs.resolve_schedule_def("warehouse_schedule").cron_schedule == "*/15 * * * *"
    assert [s.name for s in defs.sensors or []] == ["new_files_users"]

    with pytest.raises(ValueError, match=r"pipeline.schedule is 'hourly'.*cron expression"):
        site.definitions(env={"PIPELINE__SCHEDULE": "hourly"})


RUN_SHOWN = """{ assetNodes {
  assetKey { path }
  assetChecksOrError { ... on AssetChecks { checks {
    name description
    executionForLatestMaterialization { status evaluation { severity } } } } }
  assetMaterializations(limit: 1) { metadataEntries {
    label
    ... on IntMetadataEntry { intValue }
    ... on TableSchemaMetadataEntry { schema { columns { name type description } } } } }
} }"""


def test_the_webserver_shows_a_runs_checks_and_rows_as_the_report_does(
    dagster_site: tuple[Site, Any], dagster_home: Path, tmp_path: Path
) -> None:
    """After the run of every asset: each raw table has its dbt source tests and the
    monitor's verdict as checks (raw.users warns, as in the report), and its own row
    counts; each model its row count and columns; every check says what it checks."""
    site, _ = dagster_site
    manifest = site.root / "target" / "dagster" / "manifest.json"
    parsed = sha256(manifest), manifest.stat().st_mtime_ns
    with webserver(site.env, dagster_home, tmp_path / "webserver.log") as url:
        asset_graph(url)  # the location has loaded
        nodes = graphql(url, RUN_SHOWN)["data"]["assetNodes"]
    assert (sha256(manifest), manifest.stat().st_mtime_ns) == parsed  # not parsed again
    shown = {"/".join(n["assetKey"]["path"]): n for n in nodes}
    manifest_nodes = json.loads(manifest.read_text())["nodes"]

    def checks(key: str) -> dict[str, tuple[str, str | None]]:
        found = shown[key]["assetChecksOrError"]["checks"]
        assert all(c["description"] for c in found), key
        return {
            c["name"]: (
                c["executionForLatestMaterialization"]["status"],
                (c["executionForLatestMaterialization"]["evaluation"] or {}).get("severity"),
            )
            for c in found
        }

    def metadata(key: str) -> dict[str, Any]:
        [materialization] = shown[key]["assetMaterializations"]
        entries = materialization["metadataEntries"]
        return {e["label"]: e.get("intValue", e.get("schema")) for e in entries}

    users = checks("users/users")
    assert users["quality_monitor"] == ("FAILED", "WARN")
    assert users["ml_warehouse_source_not_empty_users_users_"] == ("SUCCEEDED", "ERROR")
    duplicate = next(name for name in users if "duplicate_rate" in name)
    assert users[duplicate] == ("FAILED", "WARN")
    for source in ("orders", "events", "products"):
        found = checks(f"{source}/{source}")
        assert found["quality_monitor"] == ("SUCCEEDED", "WARN")
        assert f"ml_warehouse_source_not_empty_{source}_{source}_" in found

    for source in ("users", "orders", "events", "products"):
        rows = metadata(f"{source}/{source}")
        [(total,)] = site.query(f"select count(*) from raw.{source}")
        [(rejected,)] = site.query(
            f"select count(*) from raw._rejected_rows where resource = '{source}'"
        )
        assert (rows["dagster/row_count"], rows["rows_loaded"]) == (total, total), source
        assert rows["rows_rejected"] == rejected, source
    assert metadata("users/users")["rows_rejected"] > 0  # the sample's bad users rows

    for mart in ("dim_users", "fct_orders", "user_features"):
        rows = metadata(f"marts/{mart}")
        assert site.query(f"select count(*) from marts.{mart}") == [(rows["dagster/row_count"],)]
        built = site.query(
            "select column_name, data_type from duckdb_columns() "
            f"where schema_name = 'marts' and table_name = '{mart}' order by column_index"
        )
        node = manifest_nodes[f"model.ml_warehouse_demo.{mart}"]
        documented = [(n, t, node["columns"][n]["description"]) for n, t in built]
        schema = rows["dagster/column_schema"]["columns"]
        assert [(c["name"], c["type"], c["description"]) for c in schema] == documented
        assert all(description for _, _, description in documented)
    assert checks("marts/dim_users")["quality_monitor"] == ("SUCCEEDED", "WARN")
