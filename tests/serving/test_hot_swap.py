"""Publishing under load: no request fails, and answers move to the new run, never back."""

from __future__ import annotations

import os
import random
import threading
import time
from pathlib import Path
from typing import Any

import duckdb
import httpx
from serving_helpers import Server, direct, start_server, write_analytics

USERS = 2_000
RUNS = ("run-1", "run-2", "run-3")
ORDER = {run: n for n, run in enumerate(RUNS)}


Log = list[tuple[str, Any, httpx.Response]]


def _hammer(
    server: Server, seed: int, stop: threading.Event, log: Log, failures: list[str]
) -> None:
    """Alternate single and batch lookups (some unknown ids) until told to stop."""
    rng = random.Random(seed)
    with server.client() as client:
        while not stop.is_set():
            try:
                if rng.random() < 0.5:
                    user_id = rng.randrange(USERS) * 3 + rng.choice((1, 1, 1, 2))
                    log.append(("one", user_id, client.get(f"/features/{user_id}")))
                else:
                    ids = [rng.randrange(USERS) * 3 + rng.choice((1, 1, 2)) for _ in range(50)]
                    log.append(("batch", ids, client.post("/features", json={"user_ids": ids})))
            except httpx.HTTPError as exc:  # a dropped connection or a timeout
                failures.append(repr(exc))


def _wait_for(server: Server, run_id: str, timeout: float = 300) -> None:
    """Until /health serves `run_id` (the deadline is a safety net, far beyond a poll)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if httpx.get(f"{server.url}/health").json().get("run_id") == run_id:
            return
        time.sleep(0.02)
    raise AssertionError(f"the server did not switch to {run_id} within {timeout} s")


def _wait_for_requests(logs: list[Log], more: int, timeout: float = 300) -> None:
    """Until every client has had `more` answers since now."""
    targets = [len(log) + more for log in logs]
    deadline = time.monotonic() + timeout
    while any(len(log) < target for log, target in zip(logs, targets, strict=True)):
        assert time.monotonic() < deadline, "the clients got no answers"
        time.sleep(0.02)


def _open_files(pid: int) -> list[str]:
    links = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            links.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            continue
    return links


def test_publish_during_a_stream_of_requests(tmp_path: Path, servers: list[Server]) -> None:
    analytics = tmp_path / "analytics.duckdb"
    write_analytics(analytics, "run-1", USERS, salt=1)
    # What each run must answer, read straight from its file before it is published.
    staged = {"run-1": tmp_path / "run-1.duckdb"}
    write_analytics(staged["run-1"], "run-1", USERS, salt=1)
    for n, run in enumerate(RUNS[1:], start=2):
        staged[run] = write_analytics(tmp_path / f"{run}.duckdb", run, USERS, salt=n)
    every_id = list(range(3 * USERS + 3))
    expected = {
        run: dict(zip(every_id, direct(path, every_id), strict=True))
        for run, path in staged.items()
    }

    server = start_server(analytics, poll=0.05)
    servers.append(server)
    logs: list[Log] = [[], [], []]
    failures: list[str] = []
    stop = threading.Event()
    clients = [
        threading.Thread(target=_hammer, args=(server, n, stop, logs[n], failures))
        for n in range(3)
    ]
    for thread in clients:
        thread.start()
    try:
        _wait_for_requests(logs, 20)
        for run in RUNS[1:]:
            # What publish does: the new file is complete beside the old one, then renamed over it.
            os.replace(staged[run], analytics)
            _wait_for(server, run)
            _wait_for_requests(logs, 20)  # answers from this run before the next swap
    finally:
        stop.set()
        for thread in clients:
            thread.join(timeout=600)

    assert failures == []
    log = [entry for thread_log in logs for entry in thread_log]
    assert len(log) > 100
    assert [r.status_code for _, _, r in log if r.status_code not in (200, 404)] == []
    for kind, request, response in log:
        run = response.headers["x-run-id"]
        rows = expected[run]
        if kind == "one":
            if rows[request] is None:
                assert response.status_code == 404
            else:
                assert response.json() == {
                    "run_id": run,
                    "user_id": request,
                    "features": rows[request],
                }
        else:
            body = response.json()
            assert body["run_id"] == run
            assert body["rows"] == [rows[i] for i in request]  # one run per answer, never mixed
            assert body["unknown_ids"] == list(dict.fromkeys(i for i in request if rows[i] is None))
    # Per client, run ids only move forward: no answer from a replaced run after a newer one.
    for thread_log in logs:
        runs = [ORDER[response.headers["x-run-id"]] for _, _, response in thread_log]
        assert runs == sorted(runs)
        assert runs[-1] == ORDER["run-3"]
    seen_runs = {response.headers["x-run-id"] for _, _, response in log}
    assert seen_runs == set(RUNS)

    # The server holds no file of the analytics database: a publish is never waited on.
    assert [f for f in _open_files(server.process.pid) if ".duckdb" in f] == []
    with duckdb.connect(str(analytics)) as writer:  # would fail if any process held it
        assert writer.execute("select run_id from meta.publication").fetchone() == ("run-3",)


def test_a_file_without_features_keeps_the_last_good_run(
    tmp_path: Path, servers: list[Server]
) -> None:
    analytics = write_analytics(tmp_path / "analytics.duckdb", "run-1", 20)
    server = start_server(analytics, poll=0.05)
    servers.append(server)
    broken = tmp_path / "broken.duckdb"
    with duckdb.connect(str(broken)) as con:
        con.execute("create table not_features as select 1 as x")
    os.replace(broken, analytics)
    server.wait_for_log("has no marts.user_features table with a user_id column")
    with server.client() as client:
        assert client.get("/features/1").json()["run_id"] == "run-1"
        assert client.get("/health").json()["run_id"] == "run-1"
    write_analytics(analytics, "run-2", 20, salt=2)
    _wait_for(server, "run-2")
    with server.client() as client:
        assert client.get("/features/1").json()["features"] == direct(analytics, [1])[0]
    log = server.stop()
    assert "has no marts.user_features table with a user_id column" in log
    assert log.count("serving run run-2 (20 users)") == 1
