"""A fifth source of each kind, declared in configuration only: no source code here.

Data nobody here wrote (flights CSV exports with another header, `;` and a
renamed key, in Latin-1; weather as JSONL segments; an items API with its own
paging and cursor, plus a second endpoint; planes in SQLite), loaded by
`python -m ingestion` from a project folder whose `.dlt/config.toml` declares
them. For each: input records = raw rows + rejected rows (+ collapsed repeats)
exactly; a second run loads 0; new input loads exactly the new records.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from project import ItemsApi, Project, serve_items, summary

CONFIG = """
[sources.flights]
kind = "csv"
folder = "inbox/flights"
delimiter = ";"
encoding = "latin-1"
rename = {{ FlightNo = "flight_id" }}
key = "flight_id"
max_rejected_rate = 0.2

[sources.weather]
kind = "jsonl"
folder = "inbox/weather"
key = "reading_id"
cursor_field = "observed_at"
max_rejected_rate = 0.5

[sources.items]
kind = "rest_api"
base_url = "{api_url}"
paginator = {{ type = "json_link", next_url_path = "links.next" }}
max_rejected_rate = 0.5

[[sources.items.resources]]
name = "items"
primary_key = "id"
[sources.items.resources.endpoint]
path = "v1/items"
data_selector = "results"
incremental = {{ cursor_path = "modified", start_param = "since", initial_value = 0 }}

[[sources.items.resources]]
name = "tags"
primary_key = "tag"
[sources.items.resources.endpoint]
path = "v1/tags"
data_selector = "results"
paginator = "single_page"

[sources.fleet]
kind = "sql_table"
credentials = "sqlite:///inbox/fleet.db"
[[sources.fleet.tables]]
table = "planes"
primary_key = "tailnum"
cursor = "modified_at"
[[sources.fleet.tables]]
table = "engines"
primary_key = "engine_id"
raw_table = "plane_engines"
"""

HEADER = "FlightNo;Carrier;Dep Delay;Origin\n"
FLIGHTS_1 = HEADER + "1;AA;5;Zürich\n2;UA;-3;Köln\n3;AA;n/a;Paris\n4;UA\n;DL;7;Oslo\n"
FLIGHTS_2 = HEADER + "1;AA;6;Zürich\n5;UA;0;Nice\n"
R1 = '{"reading_id": "r1", "station": "EGLL", "temp_c": 4.5, "observed_at": "2026-01-01T00:00"}\n'
R2 = '{"reading_id": "r2", "station": "EGLL", "temp_c": 5, "observed_at": "2026-01-01T01:00"}\n'
WEATHER_1 = R1 + R2 + "not json at all\n" + R1 + '{"station": "EGLL", "temp_c": 1}\n'
WEATHER_2 = '{"reading_id": "r3", "station": "LFPG", "temp_c": 7.25, "humidity": 80}\n'


def items(first: int, count: int, modified: int) -> list[dict[str, object]]:
    return [
        {"id": i, "name": f"item {i}", "modified": modified} for i in range(first, first + count)
    ]


@pytest.fixture
def api() -> ItemsApi:
    data = ItemsApi(
        tags=[{"tag": "blue"}, {"tag": "red"}],
        items=[
            *items(1, 7, 100),
            {"id": 8, "name": "no cursor"},
            {"name": "no id", "modified": 100},
        ],
    )
    with serve_items(data) as running:
        yield running


@pytest.fixture
def project(tmp_path: Path, api: ItemsApi) -> Project:
    project = Project.create(tmp_path / "mine", CONFIG.format(api_url=api.url))
    inbox = project.root / "inbox"
    (inbox / "flights").mkdir(parents=True)
    (inbox / "weather").mkdir()
    (inbox / "flights" / "flights-2024-01.csv").write_bytes(FLIGHTS_1.encode("latin-1"))
    (inbox / "weather" / "weather-0001.jsonl").write_text(WEATHER_1, encoding="utf-8")
    with sqlite3.connect(inbox / "fleet.db") as con:
        con.execute(
            "create table planes (tailnum text primary key, year integer, modified_at text)"
        )
        con.executemany(
            "insert into planes values (?, ?, ?)",
            [(f"N{i}", 2000 + i, "2026-01-01 00:00:00") for i in range(1, 6)],
        )
        con.execute("create table engines (engine_id integer primary key, model text)")
        con.executemany("insert into engines values (?, ?)", [(1, "CFM56"), (2, "V2500")])
    con.close()
    return project


def ingest(project: Project) -> dict[str, dict[str, str]]:
    result = project.run("python", "-m", "ingestion")
    assert result.returncode == 0, result.stdout + result.stderr
    return summary(result.stdout)


def counts(project: Project, source: str, table: str) -> tuple[int, int]:
    raw = project.scalar(f"select count(*) from raw.{table}")
    rejected = project.scalar(f"select count(*) from raw._rejected_rows where source = '{source}'")
    return raw, rejected


def test_each_kind_declared_in_config_loads_every_record_once(
    project: Project, api: ItemsApi
) -> None:
    first = ingest(project)
    assert list(first) == ["flights", "weather", "items", "fleet"]

    # flights: 5 records, 1 short line rejected, the empty key kept in raw (quarantined by dbt)
    assert counts(project, "flights", "flights") == (4, 1)
    assert project.query(
        "select flight_id, carrier, dep_delay, origin from raw.flights order by _source_line"
    ) == [
        ("1", "AA", "5", "Zürich"),
        ("2", "UA", "-3", "Köln"),
        ("3", "AA", "n/a", "Paris"),
        (None, "DL", "7", "Oslo"),
    ]
    assert project.query(
        "select location, reason from raw._rejected_rows where source = 'flights'"
    ) == [("flights-2024-01.csv:5", "wrong_field_count")]
    # weather: 5 lines = 2 rows + 2 rejected (not JSON, no key) + 1 repeat collapsed
    assert counts(project, "weather", "weather") == (2, 2)
    assert first["weather"]["collapsed"] == "1"
    assert sorted(
        project.query("select reason from raw._rejected_rows where source = 'weather'")
    ) == [("malformed_json",), ("missing_reading_id",)]
    # items: 9 records = 7 rows + 2 rejected (no cursor, no id), over 3 pages; and a
    # second endpoint of the same source, tags, into its own raw table
    assert counts(project, "items", "items") == (7, 2)
    assert api.requests == 3 + 1
    assert project.query("select tag from raw.tags order by 1") == [("blue",), ("red",)]
    # fleet: two tables, each into its own raw table
    assert counts(project, "fleet", "planes") == (5, 0)
    assert project.scalar("select count(*) from raw.plane_engines") == 2
    for source, row in first.items():
        assert int(row["read"]) == int(row["loaded"]) + int(row["rejected"]) + int(
            row["collapsed"]
        ), source

    second = ingest(project)
    assert {name: (row["loaded"], row["unchanged"]) for name, row in second.items()} == {
        "flights": ("0", "0"),
        "weather": ("0", "0"),
        "items": ("0", "2"),  # tags: no cursor, read whole again, as raw holds them
        "fleet": ("0", "2"),  # engines: no cursor, read whole again
    }
    assert counts(project, "flights", "flights") == (4, 1)
    assert counts(project, "weather", "weather") == (2, 2)
    assert counts(project, "items", "items") == (7, 2)
    assert project.scalar("select count(*) from raw.tags") == 2
    assert project.scalar("select count(*) from raw.plane_engines") == 2

    inbox = project.root / "inbox"
    (inbox / "flights" / "flights-2024-02.csv").write_bytes(FLIGHTS_2.encode("latin-1"))
    with (inbox / "weather" / "weather-0001.jsonl").open("a", encoding="utf-8") as segment:
        segment.write(WEATHER_2)
    api.items += items(20, 4, 200)
    with sqlite3.connect(inbox / "fleet.db") as con:
        con.execute("insert into planes values ('N9', 2019, '2026-02-01 00:00:00')")
        con.execute(
            "update planes set year = 1999, modified_at = '2026-02-01 00:00:00'"
            " where tailnum = 'N1'"
        )
    con.close()

    third = ingest(project)
    assert {name: row["loaded"] for name, row in third.items()} == {
        "flights": "2",
        "weather": "1",
        "items": "4",  # 4 new items (the 2 tags again: unchanged)
        "fleet": "2",  # N9 and N1 (the 2 engines again: unchanged)
    }
    assert counts(project, "flights", "flights") == (6, 1)
    assert counts(project, "weather", "weather") == (3, 2)
    assert project.query("select humidity from raw.weather where reading_id = 'r3'") == [("80",)]
    assert counts(project, "items", "items") == (11, 2)
    assert counts(project, "fleet", "planes") == (6, 0)
    assert project.scalar("select year from raw.planes where tailnum = 'N1'") == 1999


def test_rejects_above_the_limit_fail_the_source_naming_files_and_reasons(tmp_path: Path) -> None:
    config = '[sources.exports]\nkind = "csv"\nfolder = "in"\nkey = "user_id"\n'
    project = Project.create(tmp_path / "p", config)
    (project.root / "in").mkdir()
    for month in range(1, 13):  # another system's export: no user_id column at all
        (project.root / "in" / f"export-{month:02}.csv").write_text("id,name\n1,a\n2,b\n")

    result = project.run("python", "-m", "ingestion")

    assert result.returncode == 1
    row = summary(result.stdout)["exports"]
    assert (row["status"], row["read"], row["rejected"]) == ("failed", "12", "12")
    assert (
        "exports: rejected whole: export-01.csv (wrong_header), export-02.csv (wrong_header)"
        in result.stdout
    )
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "rejected 12 of 12 records (100.0%)" in error
    assert "sources.exports.max_rejected_rate = 0.05" in error
    assert "wrong_header in export-01.csv (1)" in error


def test_a_misspelt_option_or_missing_key_is_named(tmp_path: Path) -> None:
    project = Project.create(
        tmp_path / "p", '[sources.s]\nkind = "csv"\nfolder = "in"\ndelimeter = ";"\n'
    )
    result = project.run("python", "-m", "ingestion")
    assert result.returncode == 2
    assert "sources.s.delimeter is not an option of kind csv" in result.stderr

    project = Project.create(tmp_path / "q", '[sources.s]\nkind = "sql_table"\ntables = []\n')
    result = project.run("python", "-m", "ingestion")
    assert result.returncode == 2
    assert "sources.s.credentials is required for kind sql_table" in result.stderr

    project = Project.create(tmp_path / "r", '[sources.s]\nfolder = "in"\n')
    result = project.run("python", "-m", "ingestion")
    assert result.returncode == 2
    assert "[sources.s] in .dlt/config.toml has no kind" in result.stderr


def test_typed_times_without_an_offset_are_wall_times_in_the_source_timezone(
    tmp_path: Path,
) -> None:
    """An API field typed `timestamp` and a database DATETIME, sent without an offset, are
    read in the source's `timezone` (Asia/Kolkata, +05:30); one with an offset as sent."""
    api = ItemsApi(
        items=[
            {"id": 1, "modified": 100, "seen_at": "2026-01-10T09:00:00"},
            {"id": 2, "modified": 100, "seen_at": "2026-01-10T09:00:00+00:00"},
        ]
    )
    with serve_items(api) as running:
        project = Project.create(
            tmp_path / "p",
            f"""
[sources.items]
kind = "rest_api"
base_url = "{running.url}"
paginator = {{ type = "json_link", next_url_path = "links.next" }}
timezone = "Asia/Kolkata"
[[sources.items.resources]]
name = "items"
primary_key = "id"
columns = {{ seen_at = "timestamp" }}
[sources.items.resources.endpoint]
path = "v1/items"
data_selector = "results"

[sources.fleet]
kind = "sql_table"
credentials = "sqlite:///inbox/fleet.db"
timezone = "Asia/Kolkata"
[[sources.fleet.tables]]
table = "planes"
primary_key = "tailnum"
""",
        )
        (project.root / "inbox").mkdir()
        with sqlite3.connect(project.root / "inbox" / "fleet.db") as con:
            con.execute("create table planes (tailnum text primary key, built_at datetime)")
            con.execute("insert into planes values ('N1', '2026-01-10 09:00:00')")
        con.close()
        ingest(project)
    utc = "strftime(timezone('UTC', {}), '%Y-%m-%d %H:%M')"
    assert project.query(f"select id, {utc.format('seen_at')} from raw.items order by id") == [
        ("1", "2026-01-10 03:30"),
        ("2", "2026-01-10 09:00"),
    ]
    assert project.query(f"select {utc.format('built_at')} from raw.planes") == [
        ("2026-01-10 03:30",)
    ]
