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
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance, build_sensor_context
from dagster_sites import Site
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


def asset_graph(url: str, timeout: float = 180) -> dict[tuple[str, ...], set[tuple[str, ...]]]:
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


def test_the_webserver_shows_every_asset_and_the_source_edges(tmp_path: Path, inbox: Path) -> None:
    site = Site(tmp_path / "site", inbox)
    port = free_port()
    env = {**site.env, "DAGSTER_HOME": str(tmp_path / "dagster")}
    (tmp_path / "dagster").mkdir()
    (tmp_path / "dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    server = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("dagster-webserver")),
            *("-h", "127.0.0.1", "-p", str(port), "-m", "orchestration.definitions"),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "webserver.log", "w"),  # noqa: SIM115 - closed with the process
    )
    try:
        graph = asset_graph(f"http://127.0.0.1:{port}")
    finally:
        server.terminate()
        server.wait(timeout=60)

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
