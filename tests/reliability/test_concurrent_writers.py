"""Two `python -m ingestion` and a `python -m pipeline run` started together, 20 times.

Every writer takes the warehouse lock, so one of them loads each trial's new
files and the others exit 1 at once naming it; nothing lands twice, nothing is
skipped. Runs in `make test-stress` (about 10 minutes), not in `make test`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from reliability_helpers import RAW_KEYS, make_warehouse

from demo.api import serve
from demo.generator import generate

pytestmark = pytest.mark.stress

TRIALS = 20
FILE_SOURCES = ("users", "events", "products")


def add_trial_files(inbox: Path, trial: int) -> None:
    """Three new users and three new events, and one unparsable row of each."""
    users = ["user_id,name,email,age,country,signup_at,updated_at"]
    events = []
    for k in range(3):
        user_id = 900_000 + trial * 10 + k
        users.append(f"{user_id},T {trial},t{user_id}@x.io,30,DE,2026-01-01,2026-01-0{k + 1}")
        events.append(
            json.dumps(
                {
                    "event_id": f"trial-{trial}-{k}",
                    "user_id": user_id,
                    "category": "view",
                    "value": 1.5,
                    "occurred_at": "2026-01-02T10:00:00Z",
                }
            )
        )
    users.append(f"{900_000 + trial * 10 + 9},too,many,fields,in,this,row,here,really")
    events.append("{not json")
    (inbox / "users" / f"users_trial_{trial:02}.csv").write_text("\n".join(users) + "\n")
    (inbox / "events" / f"events_trial_{trial:02}.jsonl").write_text("\n".join(events) + "\n")


def test_concurrent_writers_never_double_or_skip(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    manifest = generate(inbox, users=60, seed=5, segment_size=200)
    warehouse = make_warehouse(tmp_path / "wh")
    ingest = ["-m", "ingestion", *FILE_SOURCES, "--inbox", str(inbox)]
    with serve(inbox, token="reliability-token-3e8a") as url:  # orders once, for the build
        first = warehouse.run("-m", "ingestion", "orders", "--api-url", url)
    assert first.returncode == 0, first.stderr
    run = ["-m", "pipeline", "run", "--sources", *FILE_SOURCES, "--inbox", str(inbox)]
    winners: list[str] = []
    for trial in range(TRIALS):
        add_trial_files(inbox, trial)
        processes = {
            "ingestion-a": warehouse.start(*ingest),
            "ingestion-b": warehouse.start(*ingest),
            "pipeline": warehouse.start(*run),
        }
        for name, process in processes.items():
            out, err = process.communicate(timeout=600)
            lines = err.strip().splitlines()
            assert process.returncode in (0, 1), f"trial {trial} {name}: {err}"
            if process.returncode == 1:  # lost the race: one line naming the holder
                assert len(lines) == 1 and "holds the warehouse" in lines[0], (trial, name, err)
            else:
                winners.append(name)
        counts = {
            table: warehouse.query(f"select count(*), count(distinct {key}) from raw.{table}")[0]
            for table, key in RAW_KEYS.items()
        }
        users = manifest["users"]["raw_rows"] + 3 * (trial + 1)
        events = manifest["events"]["distinct_events"] + 3 * (trial + 1)
        assert counts["users"] == (users, users), trial
        assert counts["events"] == (events, events), trial
        rejected = dict(
            warehouse.query("select source, count(*) from raw._rejected_rows group by 1")
        )
        assert rejected == {
            "users": manifest["users"]["malformed_rows"] + trial + 1,
            "events": manifest["events"]["malformed_lines"] + trial + 1,
        }, trial
        assert warehouse.query(
            "select count(*) - count(distinct (source, location)) from raw._rejected_rows"
        ) == [(0,)]
    assert len(winners) >= TRIALS  # each trial loaded through at least one process
