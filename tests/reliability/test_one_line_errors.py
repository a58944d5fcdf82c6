"""Errors a user's machine brings: one clear line, no traceback without --debug, nothing
written beside a path that is no warehouse, and a recovered run counts what it loaded."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from reliability_helpers import make_warehouse

from demo.generator import generate

COMMANDS = {  # command -> its exit code when the warehouse path is unusable
    ("-m", "ingestion", "users"): 1,
    ("-m", "monitoring"): 2,
    ("-m", "pipeline", "run"): 2,
}


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True)


def test_a_warehouse_path_under_a_file_or_on_a_sqlite_file_is_one_line(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "notes.txt"
    not_a_folder.write_text("a file")
    sqlite_file = tmp_path / "app.db"
    sqlite3.connect(sqlite_file).execute("create table t (x int)").connection.close()
    cases = {
        not_a_folder / "warehouse.duckdb": f"{not_a_folder} is a file, not a folder",
        sqlite_file: f"warehouse {sqlite_file} is not a DuckDB file (a SQLite database)",
    }
    before = sorted(p.name for p in tmp_path.iterdir())
    for path, message in cases.items():
        env = make_warehouse(tmp_path / "unused").env | {"WAREHOUSE_PATH": str(path)}
        for command, code in COMMANDS.items():
            done = run(env, *command)
            assert done.returncode == code, (command, done.stderr)
            lines = done.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: "), (command, done.stderr)
            assert message in lines[0], (command, lines[0])
    # nothing was written beside the foreign file: no lock, no audit.jsonl, no dlt folder
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*before, "unused"])
    assert sqlite3.connect(sqlite_file).execute("select count(*) from t").fetchone() == (0,)


def test_disk_full_is_one_line_and_the_recovered_run_counts_what_it_loaded(
    tmp_path: Path, tmpfs: Callable[[str], Path]
) -> None:
    inbox = tmp_path / "inbox"
    manifest = generate(inbox, users=3000, seed=7, segment_size=5000)
    small_disk = tmpfs("3m")  # too small for these events
    warehouse = make_warehouse(small_disk)
    ingest = ("-m", "ingestion", "events", "--inbox", str(inbox))
    full = warehouse.run(*ingest)
    assert full.returncode == 1
    assert "Traceback" not in full.stderr, full.stderr
    assert full.stderr.strip().splitlines()[0] == (
        f"error: events: no space left on the device of {warehouse.path} or dlt's working "
        "folder; free some, then run again (the next run first finishes this load)"
    )
    assert len(full.stderr.strip().splitlines()) <= 2, full.stderr  # + audit not written

    tables = warehouse.query("select table_name from information_schema.tables")
    landed = (
        warehouse.query("select count(*) from raw.events")[0][0] if ("events",) in tables else 0
    )
    remount = ["mount", "-o", "remount,size=64m", str(small_disk)]
    subprocess.run(remount, check=True)
    recovered = warehouse.run(*ingest)
    assert recovered.returncode == 0, recovered.stderr
    loaded = int(recovered.stdout.split("| events | ok | ")[1].split(" | ")[1])
    total = manifest["events"]["distinct_events"]
    assert warehouse.query("select count(*), count(distinct event_id) from raw.events") == [
        (total, total)
    ]
    assert landed + loaded == total  # the summary counts the rows the pending load wrote
