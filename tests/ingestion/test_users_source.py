"""The users CSV source against real files in tmp_path and a real DuckDB warehouse."""

from __future__ import annotations

import csv
import hashlib
import os
import random
import shutil
from pathlib import Path
from typing import Any

import dlt
import duckdb
import numpy as np
import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from ingestion.destination import make_pipeline
from ingestion.kinds import csv_reader, declared_source
from ingestion.kinds.csv_reader import CsvFormat, read_csv_file, scan_records

HEADER = "user_id,name,email,age,country,signup_at,updated_at"

FILE_1 = (
    f"{HEADER}\n"
    "1,Ann,ann@example.com,34,DE,2026-01-01T00:00:00Z,2026-01-01T00:00:00Z\n"
    '2,"Lee, Bo", BO@Example.COM ,,FR,2026-01-01T01:00:00Z,2026-01-01T01:00:00Z\n'
    "3,Cy,cy@example.com,abc,US,2026-01-01T02:00:00Z,2026-01-01T02:00:00Z\n"
    "3,Cy,cy@example.com,abc,US,2026-01-01T02:00:00Z,2026-01-01T02:00:00Z\n"
    ",Nobody,no@example.com,40,GB,2026-01-01T03:00:00Z,not-a-date\n"
)
FILE_2 = (
    f"{HEADER}\n"
    "1,Ann,ann@new.example.com,35,DE,2026-01-01T00:00:00Z,2026-01-05T00:00:00Z\n"
    "4,Dee,dee@example.com,250,ES,2026-01-05T01:00:00Z,2026-01-05T01:00:00Z\n"
    "5,Eve,eve@example,29,IT,2026-01-05T02:00:00Z,2026-01-05T02:00:00Z\n"
)
FILE_3 = (
    f"{HEADER}\n"
    "6,Fay,fay@example.com,41,PT,2026-01-09T00:00:00Z,2026-01-09T00:00:00Z\n"
    "2,Lee Bo,bo@example.com,52,FR,2026-01-01T01:00:00Z,2026-01-09T01:00:00Z\n"
)


def write(folder: Path, name: str, content: str | bytes) -> Path:
    """Write one export byte-exactly (no newline translation)."""
    path = folder / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


@pytest.fixture
def users_inbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty inbox and a fresh warehouse (WAREHOUSE_PATH) in tmp_path."""
    monkeypatch.setenv("WAREHOUSE_PATH", str(tmp_path / "w.duckdb"))
    inbox = tmp_path / "inbox" / "users"
    inbox.mkdir(parents=True)
    return inbox


def run(inbox: Path, schema_contract: str = "evolve") -> dlt.Pipeline:
    pipeline = make_pipeline("users")
    pipeline.run(declared_source("users", folder=str(inbox), schema_contract=schema_contract))
    return pipeline


def last_run(pipeline: dlt.Pipeline) -> dict[str, Any]:
    return pipeline.state["sources"]["users"]["resources"]["users"]["last_run"]


def loaded_files(pipeline: dlt.Pipeline) -> dict[str, Any]:
    return pipeline.state["sources"]["users"]["resources"]["users"]["files"]


def query(sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(os.environ["WAREHOUSE_PATH"], read_only=True) as con:
        return con.execute(sql).fetchall()


def checksum(table: str) -> tuple[Any, ...]:
    """Row count and a digest of every column of every row."""
    return query(
        f"select count(*), md5(string_agg(t::varchar, '|' order by t::varchar)) from {table} t"
    )[0]


def rejected() -> list[tuple[str, str, str]]:
    return query("select location, reason, payload from raw._rejected_rows order by location")


def test_two_snapshots_load_every_row_with_lineage_once(users_inbox: Path) -> None:
    write(users_inbox, "users-0001.csv", FILE_1)
    write(users_inbox, "users-0002.csv", FILE_2)

    pipeline = run(users_inbox)

    assert query("select count(*) from raw.users") == [(8,)]
    assert query(
        "select _source_file, _source_line, _row_key, user_id, email, age from raw.users "
        "order by _source_file, _source_line"
    ) == [
        ("users-0001.csv", 2, "users-0001.csv:2", "1", "ann@example.com", "34"),
        ("users-0001.csv", 3, "users-0001.csv:3", "2", " BO@Example.COM ", None),
        ("users-0001.csv", 4, "users-0001.csv:4", "3", "cy@example.com", "abc"),
        ("users-0001.csv", 5, "users-0001.csv:5", "3", "cy@example.com", "abc"),
        ("users-0001.csv", 6, "users-0001.csv:6", None, "no@example.com", "40"),
        ("users-0002.csv", 2, "users-0002.csv:2", "1", "ann@new.example.com", "35"),
        ("users-0002.csv", 3, "users-0002.csv:3", "4", "dee@example.com", "250"),
        ("users-0002.csv", 4, "users-0002.csv:4", "5", "eve@example", "29"),
    ]
    # All source columns are text as sent; lineage has its declared types (dlt's own aside).
    assert query(
        "select column_name, data_type, is_nullable from information_schema.columns "
        "where table_schema = 'raw' and table_name = 'users' and column_name not like '\\_dlt%' "
        "escape '\\' order by ordinal_position"
    ) == [
        ("user_id", "VARCHAR", "YES"),
        ("name", "VARCHAR", "YES"),
        ("email", "VARCHAR", "YES"),
        ("age", "VARCHAR", "YES"),
        ("country", "VARCHAR", "YES"),
        ("signup_at", "VARCHAR", "YES"),
        ("updated_at", "VARCHAR", "YES"),
        ("_source_file", "VARCHAR", "NO"),
        ("_source_line", "BIGINT", "NO"),
        ("_row_key", "VARCHAR", "NO"),
        ("_loaded_at", "TIMESTAMP WITH TIME ZONE", "NO"),
    ]
    assert last_run(pipeline) == {
        "rows_read": 8,
        "rows_rejected": 0,
        "rows_collapsed": 0,
        "files_read": ["users-0001.csv", "users-0002.csv"],
        "files_rejected": [],
        "files_ignored": [],
    }
    stat = (users_inbox / "users-0001.csv").stat()
    assert loaded_files(pipeline)["users-0001.csv"] == {
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "sha256": hashlib.sha256((users_inbox / "users-0001.csv").read_bytes()).hexdigest(),
    }
    before = checksum("raw.users")

    pipeline = run(users_inbox)

    assert last_run(pipeline) == {
        "rows_read": 0,
        "rows_rejected": 0,
        "rows_collapsed": 0,
        "files_read": [],
        "files_rejected": [],
        "files_ignored": [],
    }
    assert checksum("raw.users") == before
    # Nothing was rejected, so the rejected-rows table was never created.
    assert query(
        "select count(*) from information_schema.tables where table_name = '_rejected_rows'"
    ) == [(0,)]


def test_a_new_file_loads_only_its_rows(users_inbox: Path) -> None:
    write(users_inbox, "users-0001.csv", FILE_1)
    write(users_inbox, "users-0002.csv", FILE_2)
    run(users_inbox)
    first = query("select _row_key, _loaded_at from raw.users order by _row_key")

    write(users_inbox, "users-0003.csv", FILE_3)
    pipeline = run(users_inbox)

    assert last_run(pipeline)["rows_read"] == 2
    assert last_run(pipeline)["files_read"] == ["users-0003.csv"]
    assert sorted(loaded_files(pipeline)) == ["users-0001.csv", "users-0002.csv", "users-0003.csv"]
    # Earlier rows were not touched (same _loaded_at); the new file's two rows were added.
    assert (
        query(
            "select _row_key, _loaded_at from raw.users "
            "where _source_file <> 'users-0003.csv' order by _row_key"
        )
        == first
    )
    assert query(
        "select _row_key, user_id from raw.users where _source_file = 'users-0003.csv' "
        "order by _source_line"
    ) == [("users-0003.csv:2", "6"), ("users-0003.csv:3", "2")]
    assert query("select count(*), count(distinct _loaded_at) from raw.users") == [(10, 2)]


def test_a_changed_file_is_read_again_without_duplicates(users_inbox: Path) -> None:
    path = write(users_inbox, "users-0001.csv", FILE_1)
    run(users_inbox)

    extra = "7,Gus,gus@example.com,60,NL,2026-01-02T00:00:00Z,2026-01-02T00:00:00Z\n"
    write(users_inbox, path.name, FILE_1 + extra)
    pipeline = run(users_inbox)

    assert last_run(pipeline)["rows_read"] == 6
    assert query("select count(*), count(distinct _row_key) from raw.users") == [(6, 6)]
    assert query("select user_id from raw.users where _row_key = 'users-0001.csv:7'") == [("7",)]
    assert loaded_files(pipeline)[path.name]["size"] == path.stat().st_size


def test_malformed_rows_are_rejected_with_their_line_and_the_rest_loads(
    users_inbox: Path,
) -> None:
    content = (
        f"{HEADER}\n"
        '1,"Ann\nSmith",ann@example.com,34,DE,2026-01-01T00:00:00Z,2026-01-01T00:00:00Z\n'
        "2,Bo,bo@example.com,41,FR,2026-01-01T00:00:00Z,2026-01-01T00:00:00Z,surplus\n"
        "3,Cy,cy@example.com,29,US,2026-01-01T00:00:00Z,2026-01-01T00:00:00Z\n"
        "4,Dee,dee@example.com\n"
        "5,Eve,eve@example.com,52,IT,2026-01-01T00:00:00Z,2026-01-01T00:00:00Z\n"
    )
    write(users_inbox, "users-0001.csv", content)

    pipeline = run(users_inbox)

    # Physical lines: the quoted newline makes record 1 span lines 2-3.
    assert rejected() == [
        (
            "users-0001.csv:4",
            "wrong_field_count",
            "2,Bo,bo@example.com,41,FR,2026-01-01T00:00:00Z,2026-01-01T00:00:00Z,surplus",
        ),
        ("users-0001.csv:6", "wrong_field_count", "4,Dee,dee@example.com"),
    ]
    assert query("select source, resource from raw._rejected_rows") == [("users", "users")] * 2
    assert query("select _source_line, user_id, name from raw.users order by _source_line") == [
        (2, "1", "Ann\nSmith"),
        (5, "3", "Cy"),
        (7, "5", "Eve"),
    ]
    data_lines = 5
    assert query("select count(*) from raw.users")[0][0] + len(rejected()) == data_lines
    assert last_run(pipeline)["rows_read"] == data_lines
    assert last_run(pipeline)["rows_rejected"] == 2


def test_a_new_column_evolves_into_raw_and_is_reported(users_inbox: Path) -> None:
    write(users_inbox, "users-0001.csv", FILE_1)
    write(
        users_inbox,
        "users-0002.csv",
        f"{HEADER},loyalty_tier\n"
        "8,Hal,hal@example.com,33,DE,2026-01-06T00:00:00Z,2026-01-06T00:00:00Z,gold\n",
    )
    # A file without `age` still loads; the column stays, empty.
    write(
        users_inbox,
        "users-0003.csv",
        "user_id,name,email,country,signup_at,updated_at\n"
        "9,Ida,ida@example.com,SE,2026-01-07T00:00:00Z,2026-01-07T00:00:00Z\n",
    )

    run(users_inbox)

    assert query(
        "select user_id, age, loyalty_tier from raw.users "
        "where _source_file <> 'users-0001.csv' order by _source_file"
    ) == [("8", "33", "gold"), ("9", None, None)]
    assert query("select count(*), count(loyalty_tier) from raw.users") == [(7, 1)]


def test_freeze_fails_on_a_new_column_and_writes_nothing(users_inbox: Path) -> None:
    write(users_inbox, "users-0001.csv", FILE_1)
    pipeline = run(users_inbox, schema_contract="freeze")
    users_before = checksum("raw.users")
    write(
        users_inbox,
        "users-0002.csv",
        f"{HEADER},loyalty_tier\n"
        "8,Hal,hal@example.com,33,DE,2026-01-06T00:00:00Z,2026-01-06T00:00:00Z,gold\n"
        "9,too,few\n",
    )

    with pytest.raises(PipelineStepFailed, match="loyalty_tier.*frozen"):
        run(users_inbox, schema_contract="freeze")

    assert checksum("raw.users") == users_before
    assert query(
        "select count(*) from information_schema.tables where table_name = '_rejected_rows'"
    ) == [(0,)]
    assert "loyalty_tier" not in [r[0] for r in query("describe raw.users")]
    pipeline = make_pipeline("users")
    assert sorted(loaded_files(pipeline)) == ["users-0001.csv"]

    # Once the file is gone, the next run completes: nothing was left pending.
    (users_inbox / "users-0002.csv").unlink()
    pipeline = run(users_inbox, schema_contract="freeze")
    assert last_run(pipeline)["rows_read"] == 0
    assert checksum("raw.users") == users_before


def test_file_format_edge_cases_have_defined_outcomes(users_inbox: Path) -> None:
    row = "2026-01-01T00:00:00Z,2026-01-01T00:00:00Z"
    # BOM + CRLF + quoted comma, quoted CRLF and escaped quotes.
    write(
        users_inbox,
        "users-a-bom-crlf.csv",
        (
            f"\ufeff{HEADER}\r\n"
            f'1,"Doe, Jane",jane@example.com,30,DE,{row}\r\n'
            f'2,"two\r\nlines ""quoted""",two@example.com,31,FR,{row}\r\n'
            f"3,Cy,cy@example.com,32,US,{row}\r\n"
        ).encode(),
    )
    write(users_inbox, "users-b-empty.csv", b"")
    write(users_inbox, "users-c-header-only.csv", f"{HEADER}\n")
    # Latin-1 bytes in one row: that row is rejected, its neighbours load.
    write(
        users_inbox,
        "users-d-latin1.csv",
        f"{HEADER}\n4,Ana,ana@example.com,40,PT,{row}\n".encode()
        + f"5,Jos\xe9,jose@example.com,41,ES,{row}\n".encode("latin-1")
        + f"6,Zoe,zoe@example.com,42,GB,{row}\n".encode(),
    )
    # A stray quote inside a field is text; a quote opened and never closed rejects its
    # record (to the end of the file), the rows before it load: read record by record.
    write(
        users_inbox,
        "users-e-stray-quote.csv",
        f'{HEADER}\n7,Ab"c,x@example.com,1,DE,{row}\n8,"open,y@example.com,2,DE,{row}\n',
    )

    pipeline = run(users_inbox)

    assert query(
        "select _row_key, user_id, name from raw.users order by _source_file, _source_line"
    ) == [
        ("users-a-bom-crlf.csv:2", "1", "Doe, Jane"),
        ("users-a-bom-crlf.csv:3", "2", 'two\r\nlines "quoted"'),
        ("users-a-bom-crlf.csv:5", "3", "Cy"),
        ("users-d-latin1.csv:2", "4", "Ana"),
        ("users-d-latin1.csv:4", "6", "Zoe"),
        ("users-e-stray-quote.csv:2", "7", 'Ab"c'),
    ]
    # The BOM does not leak into the first column's name; CRLF does not leak into values.
    assert query("select count(*) from raw.users where updated_at like '%\r%'") == [(0,)]
    assert [r[0] for r in query("describe raw.users")][:1] == ["user_id"]
    locations = [(loc, reason) for loc, reason, _ in rejected()]
    assert locations == [
        ("users-d-latin1.csv:3", "invalid_utf8"),
        ("users-e-stray-quote.csv:3", "unterminated_quote"),
    ]
    payloads = {loc: payload for loc, _, payload in rejected()}
    assert payloads["users-d-latin1.csv:3"] == f"5,Jos\ufffd,jose@example.com,41,ES,{row}"
    assert payloads["users-e-stray-quote.csv:3"] == f'8,"open,y@example.com,2,DE,{row}'
    assert last_run(pipeline)["rows_read"] == 3 + 3 + 2
    assert last_run(pipeline)["rows_rejected"] == 2
    # Every file, including the empty, header-only and rejected ones, counts as loaded.
    assert len(loaded_files(pipeline)) == 5
    # DuckDB's spill folders (one per parsed file, in dlt's working folder) are gone,
    # the rejected file's too.
    assert list(Path(pipeline.working_dir).glob("users-csv-*")) == []


def test_a_killed_runs_spill_folder_is_removed_by_the_next_run(users_inbox: Path) -> None:
    stale = Path(make_pipeline("users").working_dir) / "csv-parse-killed"
    (stale / "duckdb_temp_storage").mkdir(parents=True)
    (stale / "duckdb_temp_storage" / "block-0.tmp").write_bytes(b"x" * 1024)

    run(users_inbox)

    assert not stale.exists()


def test_line_numbers_match_the_csv_module_on_a_messy_file(tmp_path: Path) -> None:
    rng = random.Random(7)
    lines = [HEADER]
    for i in range(1, 400):
        name = rng.choice(["Ann", '"Doe, Jane"', '"multi\nline\nname"', '"say ""hi"""', ""])
        fields = [str(i), name, f"u{i}@example.com", "30", "DE", "x", "y"]
        if rng.random() < 0.05:
            fields = fields[:3]
        lines.append(",".join(fields))
        if rng.random() < 0.03:
            lines.append("")  # blank lines are skipped, not rows
    path = write(tmp_path, "users-0001.csv", "\n".join(lines) + "\n")

    expected_good, expected_bad = [], []
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        next(reader)
        previous = reader.line_num
        for fields in reader:
            start, previous = previous + 1, reader.line_num
            if fields:
                (expected_good if len(fields) == 7 else expected_bad).append(start)

    csv_file = read_csv_file(path, CsvFormat("users", key=("user_id",)))
    try:
        assert csv_file.lines.tolist() == expected_good
        assert [int(r["location"].split(":")[1]) for r in csv_file.rejects] == expected_bad
        assert csv_file.rows_read == len(expected_good) + len(expected_bad)
    finally:
        csv_file.close()


def test_a_file_that_changes_while_it_loads_fails_the_run_and_loads_whole_next_time(
    users_inbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DuckDB reads a file twice (counting, then streaming its rows as they load): a file
    written in between fails the run with what happened, nothing of it loads, and the
    next run loads its new content once."""
    path = write(users_inbox, "users-0001.csv", FILE_1)
    counted = csv_reader.read_with_duckdb

    def then_appended(*args: Any) -> Any:
        read = counted(*args)
        with path.open("a", encoding="utf-8") as handle:  # an export still being written
            handle.write("7,Gus,gus@example.com,50,NL,2026-01-02T00:00:00Z,2026-01-02T00:00:00Z\n")
        return read

    monkeypatch.setattr(csv_reader, "read_with_duckdb", then_appended)
    with pytest.raises(PipelineStepFailed, match="users-0001.csv: the file changed while it"):
        run(users_inbox)
    assert query("select count(*) from information_schema.tables where table_name = 'users'") == [
        (0,)
    ]
    assert "sources" not in make_pipeline("users").state  # no file recorded as loaded

    monkeypatch.setattr(csv_reader, "read_with_duckdb", counted)
    pipeline = run(users_inbox)
    assert (last_run(pipeline)["rows_read"], last_run(pipeline)["rows_rejected"]) == (6, 0)
    assert query("select count(*), count(distinct _row_key) from raw.users") == [(6, 6)]


def test_records_do_not_depend_on_where_the_scan_blocks_end() -> None:
    """The scan carries quote and newline counts across blocks: a quoted field, an
    escaped quote or a CRLF split between two blocks still ends where it should."""
    rng = random.Random(11)
    pieces = [b"a", b",", b'"', b'""', b"\n", b"\r\n", b'"x\ny"', b"\r"]
    for _ in range(300):
        data = np.frombuffer(b"".join(rng.choices(pieces, k=rng.randint(1, 60))), np.uint8)
        whole = [a.tolist() for a in scan_records([data])]
        for size in (1, 2, 3, 5, 16):
            blocks = [data[i : i + size] for i in range(0, data.size, size)]
            assert [a.tolist() for a in scan_records(blocks)] == whole, bytes(data)


def test_bad_settings_fail_before_the_run_with_the_config_key(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=r"nowhere.*sources\.users\.folder"):
        declared_source("users", folder=str(missing), schema_contract="evolve")
    with pytest.raises(ValueError, match="sources.users.schema_contract"):
        declared_source("users", folder=str(tmp_path), schema_contract="lenient")


def test_a_touched_or_copied_file_is_not_loaded_again(users_inbox: Path) -> None:
    bad_line = "8,Short,row\n"
    path = write(users_inbox, "users-0001.csv", FILE_1 + bad_line)
    run(users_inbox)
    before = checksum("raw.users"), rejected()
    assert len(before[1]) == 1

    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    pipeline = run(users_inbox)

    assert last_run(pipeline)["files_read"] == []
    assert (checksum("raw.users"), rejected()) == before
    assert loaded_files(pipeline)[path.name]["mtime_ns"] == path.stat().st_mtime_ns


def test_lost_state_does_not_duplicate_rows(users_inbox: Path, tmp_path: Path) -> None:
    """Pipeline state gone (working folder and the copy in the warehouse): merge, not append."""
    write(users_inbox, "users-0001.csv", FILE_1)
    run(users_inbox)
    before = checksum("raw.users")
    shutil.rmtree(tmp_path / ".dlt-pipelines")
    with duckdb.connect(os.environ["WAREHOUSE_PATH"]) as con:
        con.execute("delete from raw._dlt_pipeline_state")

    pipeline = run(users_inbox)

    assert last_run(pipeline)["files_read"] == ["users-0001.csv"]
    assert query("select count(*), count(distinct _row_key) from raw.users") == [(5, 5)]
    assert checksum("raw.users")[0] == before[0]
