"""The events source: JSONL segments → raw.events, each line once, re-sent events collapsed."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from ingestion.destination import make_pipeline
from ingestion.kinds import declared_source
from ingestion.kinds.jsonl_reader import SORTED_BELOW, FileSegments, sharing_a_value


def event(event_id: str, **fields: Any) -> str:
    """One event line as the stream sends it (JSON object, no terminator)."""
    obj = {
        "event_id": event_id,
        "user_id": 17,
        "category": "click",
        "value": 3.25,
        "occurred_at": "2026-01-03T08:15:00Z",
    }
    obj.update(fields)
    return json.dumps(obj)


E1, E2, E4 = event("e1"), event("e2", category="view"), event("e4", value=10)
E5 = event("e5", value="abc")  # wrong type: still an event, staging casts
E6 = event("e6")
E7 = event("e7", occurred_at="2025-12-30T23:00:00Z")  # late
E8, E10 = event("e8"), event("e10", value=None)
E9 = event("e9", user_id=42, value=0.5)

# 18 lines: 9 distinct events, 6 rejected, 3 re-sent (e2, e6 twice in a run, e1).
SEGMENTS = {
    "events-000001.jsonl": [
        E1,
        E2,
        '{"event_id": "e3", "user_id": 1,',  # truncated object
        E4,
        "[1, 2]",
        '{"user_id": 5, "category": "click"}',
        E5,
        "",
    ],
    "events-000002.jsonl": [E6, E2, E7, E6, "not json"],
    "events-000003.jsonl": [E8, E1, '"just a string"', E9, E10],
}
REJECTED = {
    ("events-000001.jsonl:3", "malformed_json", '{"event_id": "e3", "user_id": 1,'),
    ("events-000001.jsonl:5", "not_an_object", "[1, 2]"),
    ("events-000001.jsonl:6", "missing_event_id", '{"user_id": 5, "category": "click"}'),
    ("events-000001.jsonl:8", "malformed_json", ""),
    ("events-000002.jsonl:5", "malformed_json", "not json"),
    ("events-000003.jsonl:3", "not_an_object", '"just a string"'),
}


@pytest.fixture
def warehouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "warehouse.duckdb"
    monkeypatch.setenv("WAREHOUSE_PATH", str(path))
    return path


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    path = tmp_path / "inbox" / "events"
    path.mkdir(parents=True)
    return path


def write_segment(inbox: Path, name: str, lines: list[str], terminated: bool = True) -> None:
    text = "\n".join(lines) + ("\n" if terminated else "")
    (inbox / name).write_text(text, encoding="utf-8")


def append(inbox: Path, name: str, text: str) -> None:
    with (inbox / name).open("a", encoding="utf-8") as f:
        f.write(text)


def run(inbox: Path, schema_contract: str = "evolve") -> dict[str, Any]:
    """One `python -m ingestion events` equivalent; returns the resource state."""
    pipeline = make_pipeline("events")
    pipeline.run(declared_source("events", folder=str(inbox), schema_contract=schema_contract))
    return pipeline.state["sources"]["events"]["resources"]["events"]


def query(warehouse: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(sql).fetchall()


def checksum(warehouse: Path) -> tuple[Any, ...]:
    """Every column of every raw row, lineage and load ids included."""
    return query(
        warehouse,
        "select count(*), md5(string_agg(e::varchar, '|' order by event_id)) from raw.events e",
    )[0]


def raw_ids(warehouse: Path) -> list[str]:
    return [r[0] for r in query(warehouse, "select event_id from raw.events order by event_id")]


def rejected_count(warehouse: Path) -> int:
    """Rows in raw._rejected_rows; 0 when no load has created the table yet."""
    exists = query(
        warehouse,
        "select count(*) from information_schema.tables"
        " where table_schema = 'raw' and table_name = '_rejected_rows'",
    )
    return query(warehouse, "select count(*) from raw._rejected_rows")[0][0] if exists[0][0] else 0


def rejected(warehouse: Path) -> set[tuple[str, str, str]]:
    rows = query(warehouse, "select location, reason, payload from raw._rejected_rows")
    return {tuple(r) for r in rows}


def write_all(inbox: Path) -> None:
    for name, lines in SEGMENTS.items():
        write_segment(inbox, name, lines)


def test_first_run_accounts_for_every_line(warehouse: Path, inbox: Path) -> None:
    write_all(inbox)
    state = run(inbox)

    lines = sum(len(lines) for lines in SEGMENTS.values())
    assert lines == 18
    assert state["last_run"] == {
        "rows_read": 18,
        "rows_rejected": 6,
        "rows_collapsed": 3,
        "files_ignored": [],
    }
    assert state["segments"] == {
        "events-000001.jsonl": 8,
        "events-000002.jsonl": 5,
        "events-000003.jsonl": 5,
    }
    ids = raw_ids(warehouse)
    assert ids == ["e1", "e10", "e2", "e4", "e5", "e6", "e7", "e8", "e9"]
    assert rejected(warehouse) == REJECTED
    assert len(ids) + len(REJECTED) + state["last_run"]["rows_collapsed"] == lines
    assert query(warehouse, "select source, resource from raw._rejected_rows group by all") == [
        ("events", "events")
    ]


def test_raw_keeps_text_as_sent_and_the_first_occurrence(warehouse: Path, inbox: Path) -> None:
    write_all(inbox)
    run(inbox)

    rows = query(
        warehouse,
        "select event_id, user_id, category, value, occurred_at, _segment, _line"
        " from raw.events order by event_id",
    )
    by_id = {r[0]: r[1:] for r in rows}
    assert by_id["e9"] == ("42", "click", "0.5", "2026-01-03T08:15:00Z", "events-000003.jsonl", 4)
    assert by_id["e5"][2] == "abc"
    assert by_id["e10"][2] is None
    assert by_id["e7"][3] == "2025-12-30T23:00:00Z"
    # re-sent events keep the lineage of their first occurrence
    assert by_id["e1"][4:] == ("events-000001.jsonl", 1)
    assert by_id["e2"][4:] == ("events-000001.jsonl", 2)
    assert by_id["e6"][4:] == ("events-000002.jsonl", 1)
    types = dict(
        query(
            warehouse,
            "select column_name, data_type from information_schema.columns"
            " where table_schema = 'raw' and table_name = 'events'",
        )
    )
    assert {types[c] for c in ("event_id", "user_id", "category", "value", "occurred_at")} == {
        "VARCHAR"
    }
    assert types["_line"] == "BIGINT"
    assert types["_loaded_at"] == "TIMESTAMP WITH TIME ZONE"
    assert query(warehouse, "select count(distinct _loaded_at) from raw.events") == [(1,)]


def test_second_run_loads_nothing(warehouse: Path, inbox: Path) -> None:
    write_all(inbox)
    run(inbox)
    before = checksum(warehouse)

    state = run(inbox)

    assert state["last_run"] == {
        "rows_read": 0,
        "rows_rejected": 0,
        "rows_collapsed": 0,
        "files_ignored": [],
    }
    assert checksum(warehouse) == before
    assert rejected_count(warehouse) == 6


def test_new_segment_loads_only_its_rows(warehouse: Path, inbox: Path) -> None:
    write_all(inbox)
    run(inbox)
    e4_before = query(warehouse, "select * from raw.events where event_id = 'e4'")

    # e4 was loaded by the earlier run; e11 repeats within the segment
    write_segment(inbox, "events-000004.jsonl", [event("e11"), E4, event("e12"), event("e11")])
    state = run(inbox)

    assert state["last_run"] == {
        "rows_read": 4,
        "rows_rejected": 0,
        "rows_collapsed": 2,
        "files_ignored": [],
    }
    assert state["segments"]["events-000004.jsonl"] == 4
    assert raw_ids(warehouse) == sorted(
        ["e1", "e10", "e2", "e4", "e5", "e6", "e7", "e8", "e9"] + ["e11", "e12"]
    )
    assert query(warehouse, "select * from raw.events where event_id = 'e4'") == e4_before
    assert query(warehouse, "select _segment, _line from raw.events where event_id = 'e11'") == [
        ("events-000004.jsonl", 1)
    ]


def test_new_events_are_appended_and_a_lost_state_duplicates_nothing(
    warehouse: Path, inbox: Path, tmp_path: Path
) -> None:
    """The resource drops what raw holds, so raw.events is appended (no staging copy + MERGE)."""
    write_all(inbox)
    run(inbox)
    write_segment(inbox, "events-000004.jsonl", [event("e11"), E4, event("e12"), event("e11")])
    run(inbox)
    schema_tables = make_pipeline("events").default_schema.tables
    assert schema_tables["events"]["write_disposition"] == "append"
    staged = query(
        warehouse,
        "select count(*) from information_schema.tables where table_name = 'events'"
        " and table_schema <> 'raw'",
    )
    assert staged == [(0,)]
    before = checksum(warehouse)

    # state gone (working folder and the copy in the warehouse): every segment is read again
    shutil.rmtree(tmp_path / ".dlt-pipelines")
    with duckdb.connect(str(warehouse)) as con:
        con.execute("delete from raw._dlt_pipeline_state")
    state = run(inbox)

    assert state["last_run"]["rows_read"] == 4 + sum(len(lines) for lines in SEGMENTS.values())
    assert checksum(warehouse) == before
    assert query(warehouse, "select count(*) - count(distinct event_id) from raw.events") == [(0,)]


def test_truncated_last_line_waits_until_complete(warehouse: Path, inbox: Path) -> None:
    name = "events-000001.jsonl"
    partial = event("e3")
    write_segment(inbox, name, [E1, E2, partial[:20]], terminated=False)

    state = run(inbox)
    assert state["last_run"]["rows_read"] == 2
    assert state["segments"] == {name: 2}
    assert raw_ids(warehouse) == ["e1", "e2"]
    assert rejected_count(warehouse) == 0

    append(inbox, name, partial[20:] + "\n")
    state = run(inbox)
    assert state["last_run"]["rows_read"] == 1
    assert state["segments"] == {name: 3}
    assert raw_ids(warehouse) == ["e1", "e2", "e3"]
    assert query(warehouse, "select _line from raw.events where event_id = 'e3'") == [(3,)]

    append(inbox, name, event("e4") + "\n" + E1 + "\n")
    state = run(inbox)
    assert state["last_run"] == {
        "rows_read": 2,
        "rows_rejected": 0,
        "rows_collapsed": 1,
        "files_ignored": [],
    }
    assert raw_ids(warehouse) == ["e1", "e2", "e3", "e4"]

    state = run(inbox)
    assert state["last_run"]["rows_read"] == 0
    assert query(warehouse, "select count(*) from raw.events") == [(4,)]


def test_extra_key_becomes_a_new_column(warehouse: Path, inbox: Path) -> None:
    write_segment(inbox, "events-000001.jsonl", [E1, event("e2", device="ios", score=7)])

    run(inbox)

    rows = query(warehouse, "select event_id, device, score from raw.events order by event_id")
    assert rows == [("e1", None, None), ("e2", "ios", "7")]


def test_freeze_fails_on_a_new_key_and_writes_nothing(warehouse: Path, inbox: Path) -> None:
    write_segment(inbox, "events-000001.jsonl", [E1, E2])
    state = run(inbox, schema_contract="freeze")
    assert state["last_run"]["rows_read"] == 2
    before = checksum(warehouse)

    write_segment(inbox, "events-000002.jsonl", [event("e3", device="ios"), "oops"])
    with pytest.raises(PipelineStepFailed, match="device") as failure:
        run(inbox, schema_contract="freeze")

    assert "freeze" in str(failure.value)
    assert checksum(warehouse) == before
    assert rejected_count(warehouse) == 0
    assert "device" not in {
        r[0]
        for r in query(
            warehouse,
            "select column_name from information_schema.columns where table_name = 'events'",
        )
    }
    state = make_pipeline("events").state["sources"]["events"]["resources"]["events"]
    assert state["segments"] == {"events-000001.jsonl": 2}


def test_undecodable_line_is_rejected(warehouse: Path, inbox: Path) -> None:
    (inbox / "events-000001.jsonl").write_bytes(
        (E1 + "\n").encode() + b'{"event_id": "e\xff"}\n' + (E2 + "\r\n").encode()
    )

    state = run(inbox)

    assert state["last_run"]["rows_rejected"] == 1
    assert raw_ids(warehouse) == ["e1", "e2"]
    assert rejected(warehouse) == {
        ("events-000001.jsonl:2", "invalid_utf8", '{"event_id": "e\ufffd"}')
    }


def test_missing_inbox_names_the_path_and_config_key(warehouse: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as failure:
        run(missing)
    assert str(missing) in str(failure.value)
    assert "sources.events.folder" in str(failure.value)


def test_reader_resumes_from_any_position(tmp_path: Path) -> None:
    """Small read blocks and batches: numbering, positions and resumption stay exact."""
    lines = [event(f"e{i}") for i in range(1, 8)]
    write_segment(tmp_path, "events-000001.jsonl", lines[:4])
    write_segment(tmp_path, "events-000002.jsonl", lines[4:])
    reader = FileSegments(tmp_path, "*.jsonl", "test", block_bytes=50)

    state: dict[str, Any] = {}
    seen: list[tuple[str, int, str]] = []
    for batch in reader.read(state, max_lines=3):
        seen.extend(
            zip(
                batch.lines["_segment"].to_pylist(),
                batch.lines["_line"].to_pylist(),
                [line.rstrip("\n") for line in batch.lines["line"].to_pylist()],
                strict=True,
            )
        )
        for key, moved in batch.position.items():
            state.setdefault(key, {}).update(moved)
        # a fresh reader from this position continues with the next line
        following = [b.lines["line"].to_pylist()[0].rstrip("\n") for b in reader.read(state, 1)][:1]
        assert following == lines[len(seen) : len(seen) + 1]
    assert [s[2] for s in seen] == lines
    assert [s[:2] for s in seen] == [("events-000001.jsonl", i) for i in range(1, 5)] + [
        ("events-000002.jsonl", i) for i in range(1, 4)
    ]
    assert state["segments"] == {"events-000001.jsonl": 4, "events-000002.jsonl": 3}
    assert list(reader.read(state, 3)) == []


@pytest.mark.parametrize("size", [0, 1, 7, SORTED_BELOW - 1, SORTED_BELOW])
def test_the_rows_sharing_a_key_hash_are_found_by_sort_and_by_hash_table(size: int) -> None:
    """The batch dedupe's first pass sorts a small batch and hashes a large one: the
    same rows either way (a hash occurring twice, three times, once)."""
    hashes = np.arange(size, dtype=np.uint64) * np.uint64(2654435761)
    hashes[1::5] = hashes[::5][: len(hashes[1::5])]  # pairs
    hashes[2::9] = 12345  # and one value many times
    counts = Counter(hashes.tolist())
    expected = np.array([counts[h] > 1 for h in hashes.tolist()], dtype=bool)
    assert np.array_equal(sharing_a_value(hashes), expected)
