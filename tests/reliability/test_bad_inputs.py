"""Bad files in the users inbox and schema drift: each has a defined outcome, nothing is lost.

The CSV edge cases (BOM, CRLF, quoted commas and newlines, empty and header-only
files, undecodable bytes) are in tests/ingestion/test_users_source.py; these are
the cases left: a file the OS cannot read in the middle of the inbox, a file that
is not a users export, and columns that appear, change type or disappear.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import duckdb
import pytest
from project_env import NO_REJECTS_GATE

from ingestion.cli import parse_args
from ingestion.load import run_source

HEADER = "user_id,name,email,age,country,signup_at,updated_at"
TS = "2026-01-01T00:00:00Z,2026-01-02T00:00:00Z"
UNREADABLE = Path("/proc/self/mem")  # a regular file whose first bytes fail to read (EIO)


@pytest.fixture
def inbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("WAREHOUSE_PATH", str(tmp_path / "warehouse.duckdb"))
    for name, value in NO_REJECTS_GATE.items():  # a third of these tiny inputs is bad
        monkeypatch.setenv(name, value)
    (tmp_path / "inbox" / "users").mkdir(parents=True)
    return tmp_path / "inbox"


def write(inbox: Path, name: str, *rows: str, header: str = HEADER) -> Path:
    path = inbox / "users" / name
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def ingest_users(inbox: Path) -> Any:
    return run_source("users", parse_args(["users", "--inbox", str(inbox)]))


def query(sql: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect(os.environ["WAREHOUSE_PATH"], read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def users_rows() -> list[tuple[Any, ...]]:
    found = query("select count(*) from information_schema.tables where table_name = 'users'")
    if not found[0][0]:
        return []
    return query("select _row_key, user_id, age from raw.users order by _row_key")


@pytest.mark.skipif(not UNREADABLE.is_file(), reason="needs Linux /proc")
def test_unreadable_file_mid_inbox_advances_nothing_and_loads_once_fixed(inbox: Path) -> None:
    """An I/O error on one export fails the source: no file is recorded, no row loaded."""
    write(inbox, "users-0001.csv", f"1,Ann,ann@example.com,30,DE,{TS}")
    broken = inbox / "users" / "users-0002.csv"
    broken.symlink_to(UNREADABLE)
    write(inbox, "users-0003.csv", f"3,Cy,cy@example.com,32,US,{TS}")

    report = ingest_users(inbox)

    assert report.status == "failed"
    assert report.error.startswith(f"cannot read {broken}: ")
    assert "fix or remove the file, then run again" in report.error
    assert users_rows() == []  # users-0001.csv was read but not committed either

    broken.unlink()
    write(inbox, "users-0002.csv", f"2,Bo,bo@example.com,31,FR,{TS}")
    report = ingest_users(inbox)

    assert (report.status, report.rows_loaded) == ("ok", 3)
    assert users_rows() == [
        ("users-0001.csv:2", "1", "30"),
        ("users-0002.csv:2", "2", "31"),
        ("users-0003.csv:2", "3", "32"),
    ]


def test_wrong_header_rejects_the_file_and_the_run_goes_on(inbox: Path) -> None:
    write(inbox, "users-0001.csv", f"1,Ann,ann@example.com,30,DE,{TS}")
    write(inbox, "users-0002.csv", "a,b", "c,d", header="id,full_name")
    report = ingest_users(inbox)
    assert (report.status, report.rows_loaded, report.rows_rejected) == ("ok", 1, 1)
    assert query("select location, reason, payload from raw._rejected_rows") == [
        (
            "users-0002.csv",
            "wrong_header",
            "users-0002.csv: the header has no user_id column (found: id, full_name; "
            "expected: user_id, name, email, age, country, signup_at, updated_at)",
        )
    ]
    # Fixed (same name, new content): read again and loaded.
    write(inbox, "users-0002.csv", f"2,Bo,bo@example.com,31,FR,{TS}")
    report = ingest_users(inbox)
    assert (report.status, report.rows_loaded) == ("ok", 1)
    assert [r[0] for r in users_rows()] == ["users-0001.csv:2", "users-0002.csv:2"]


def test_schema_drift_new_column_text_age_and_a_column_gone(inbox: Path) -> None:
    write(inbox, "users-0001.csv", f"1,Ann,ann@example.com,30,DE,{TS}")
    assert ingest_users(inbox).rows_loaded == 1
    write(
        inbox,
        "users-0002.csv",
        f"2,Bo,bo@example.com,unknown,FR,{TS},gold",
        header=f"{HEADER},loyalty_tier",
    )
    write(
        inbox,
        "users-0003.csv",
        "3,Cy,cy@example.com,US,2026-01-01T00:00:00Z,2026-01-03T00:00:00Z",
        header="user_id,name,email,country,signup_at,updated_at",  # age is gone
    )
    report = ingest_users(inbox)
    assert (report.status, report.rows_loaded, report.rows_rejected) == ("ok", 2, 0)
    assert report.new_columns == ["users.loyalty_tier"]
    # Raw keeps text as sent: "unknown" is an age the models flag, the missing column is null.
    assert query("select user_id, age, loyalty_tier from raw.users order by user_id") == [
        ("1", "30", None),
        ("2", "unknown", "gold"),
        ("3", None, None),
    ]
