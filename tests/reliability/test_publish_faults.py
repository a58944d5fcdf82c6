"""Publish under real write faults keeps the old analytics file; hostile names are quoted.

`publish()` is called as the pipeline's publish step calls it, on a small
warehouse made here (a mart with a quote, a space and a semicolon in its
names), so no dbt run is needed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

from pipeline.publish import PublishError, publish, temp_files

ROOT = Path(__file__).resolve().parents[2]
HOSTILE_TABLE = 'we"ird; drop table marts.fct x'
HOSTILE_COLUMN = "amount'; select 1; --\" x"


@pytest.fixture
def warehouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PII_HASH_KEY", "reliability-hash-key")
    monkeypatch.delenv("ANALYTICS_ENCRYPTION_KEY", raising=False)
    path = tmp_path / "warehouse.duckdb"
    con = duckdb.connect(str(path))
    con.execute("create schema marts")
    con.execute("create table marts.fct (id integer, note varchar)")
    con.execute("insert into marts.fct select i, 'row ' || i from range(20000) t(i)")
    table = '"' + HOSTILE_TABLE.replace('"', '""') + '"'
    column = '"' + HOSTILE_COLUMN.replace('"', '""') + '"'
    con.execute(f'create table marts.{table} ("my id" integer, {column} double)')
    con.execute(f"insert into marts.{table} values (1, 2.5), (2, null)")
    con.close()
    return path


def do_publish(warehouse: Path, analytics: Path, run_id: str) -> None:
    publish(warehouse, analytics, run_id, None, [], ROOT)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_hostile_table_and_column_names_are_published_verbatim(
    warehouse: Path, tmp_path: Path
) -> None:
    analytics = tmp_path / "analytics.duckdb"
    do_publish(warehouse, analytics, "run-1")
    con = duckdb.connect(str(analytics), read_only=True)
    try:
        tables = con.execute(
            "select table_name from information_schema.tables where table_schema = 'marts' "
            "order by 1"
        ).fetchall()
        columns = con.execute(
            "select column_name from information_schema.columns where table_name = ? "
            "order by ordinal_position",
            [HOSTILE_TABLE],
        ).fetchall()
    finally:
        con.close()
    assert tables == [("fct",), (HOSTILE_TABLE,)]  # nothing dropped by the name
    assert columns == [("my id",), (HOSTILE_COLUMN,)]


def test_disk_full_during_publish_keeps_the_old_file(
    warehouse: Path, tmp_path: Path, tmpfs: Callable[[str], Path]
) -> None:
    """A real ENOSPC (a 1 MB tmpfs): the new file cannot be written, the old one stays."""
    full_disk = tmpfs("1m")  # barely bigger than one published file
    small = tmp_path / "small.duckdb"
    con = duckdb.connect(str(small))
    con.execute("create schema marts")
    con.execute("create table marts.fct as select 1 as id")
    con.close()
    analytics = full_disk / "analytics.duckdb"
    do_publish(small, analytics, "run-small")  # the old file, a few hundred KB
    before = sha256(analytics)

    with pytest.raises((PublishError, duckdb.Error, OSError)) as failure:
        do_publish(warehouse, analytics, "run-big")  # 20k rows: more than the space left

    assert "space" in str(failure.value).lower()
    assert sha256(analytics) == before
    assert temp_files(analytics) == []  # no half-written file left behind
    con = duckdb.connect(str(analytics), read_only=True)
    assert con.execute("select run_id from meta.publication").fetchone() == ("run-small",)
    con.close()


def test_read_only_target_directory_keeps_the_old_file(warehouse: Path, tmp_path: Path) -> None:
    """The directory cannot take a new file: chmod 555 (or, as root, `chattr +i`)."""
    folder = tmp_path / "published"
    folder.mkdir()
    analytics = folder / "analytics.duckdb"
    do_publish(warehouse, analytics, "run-1")
    before = sha256(analytics)
    if os.geteuid() == 0:  # root ignores modes; the immutable flag stops it
        if not shutil.which("chattr"):
            pytest.skip("running as root without chattr")
        done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"chattr +i not supported here: {done.stderr.decode().strip()}")
        undo = ["chattr", "-i", str(folder)]
    else:
        folder.chmod(0o555)
        undo = ["chmod", "755", str(folder)]
    try:
        with pytest.raises((PublishError, duckdb.Error, OSError)):
            do_publish(warehouse, analytics, "run-2")
        assert sha256(analytics) == before
        assert temp_files(analytics) == []
    finally:
        subprocess.run(undo, check=True)
