"""Real data's keys and names on every kind: composite keys, no key at all, names that
collide after normalization, declarations that would share a table, nested options.

Each test runs `python -m ingestion` from a project folder, against real files, real
SQLite databases and a real local HTTP server, and counts what raw and
raw._rejected_rows hold.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from project import ItemsApi, Project, one_error, serve_items, sqlite, summary

# --------------------------------------------------------------------------- keys

JSONL_COMPOSITE = """
[sources.weather]
kind = "jsonl"
folder = "in"
key = ["origin", "time_hour"]
max_rejected_rate = 0.5
"""


def test_a_composite_jsonl_key_collapses_repeats_of_the_pair_only(tmp_path: Path) -> None:
    project = Project.create(tmp_path / "p", JSONL_COMPOSITE)
    (project.root / "in").mkdir()
    lines = [
        {"origin": "EWR", "time_hour": "2013-01-01 05:00", "temp": 39.0},
        {"origin": "JFK", "time_hour": "2013-01-01 05:00", "temp": 39.9},  # same hour, other
        {"origin": "EWR", "time_hour": "2013-01-01 06:00", "temp": 39.0},  # same origin, other
        {"origin": "EWR", "time_hour": "2013-01-01 05:00", "temp": 99.0},  # the pair again
        {"origin": "LGA", "temp": 1.0},  # no time_hour: cannot be keyed
    ]
    segment = project.root / "in" / "w-0001.jsonl"
    segment.write_text("".join(json.dumps(line) + "\n" for line in lines))

    first = project.run("python", "-m", "ingestion")

    assert first.returncode == 0, first.stderr
    row = summary(first.stdout)["weather"]
    assert (row["read"], row["loaded"], row["rejected"], row["collapsed"]) == ("5", "3", "1", "1")
    assert project.query(
        "select origin, time_hour, temp from raw.weather order by origin, time_hour"
    ) == [
        ("EWR", "2013-01-01 05:00", "39.0"),
        ("EWR", "2013-01-01 06:00", "39.0"),
        ("JFK", "2013-01-01 05:00", "39.9"),
    ]
    assert project.query("select location, reason from raw._rejected_rows") == [
        ("w-0001.jsonl:5", "missing_time_hour")
    ]
    # A later segment re-sending a pair raw holds: collapsed, not loaded again.
    (project.root / "in" / "w-0002.jsonl").write_text(
        json.dumps({"origin": "JFK", "time_hour": "2013-01-01 05:00", "temp": 0})
        + "\n"
        + json.dumps({"origin": "JFK", "time_hour": "2013-01-01 06:00", "temp": 41})
        + "\n"
    )
    second = project.run("python", "-m", "ingestion")
    row = summary(second.stdout)["weather"]
    assert (row["read"], row["loaded"], row["collapsed"]) == ("2", "1", "1")
    assert project.scalar("select count(*) from raw.weather") == 4


def test_jsonl_records_without_a_key_each_load_once(tmp_path: Path) -> None:
    """No natural key: every line is a row, identified by its segment and line; identical
    records on two lines are two rows, and a re-run loads none again."""
    project = Project.create(
        tmp_path / "p", '[sources.clicks]\nkind = "jsonl"\nfolder = "in"\nmax_rejected_rate = 1\n'
    )
    (project.root / "in").mkdir()
    same = json.dumps({"page": "/a", "user": "u1"}) + "\n"
    (project.root / "in" / "c-0001.jsonl").write_text(same + same + "{broken\n")

    first = project.run("python", "-m", "ingestion")
    again = project.run("python", "-m", "ingestion")

    assert first.returncode == 0, first.stderr
    assert summary(first.stdout)["clicks"]["loaded"] == "2"
    assert summary(again.stdout)["clicks"]["loaded"] == "0"
    assert project.query("select _segment, _line, page from raw.clicks order by _line") == [
        ("c-0001.jsonl", 1, "/a"),
        ("c-0001.jsonl", 2, "/a"),
    ]
    assert project.query("select reason from raw._rejected_rows") == [("malformed_json",)]


def test_a_composite_api_key_merges_on_the_pair(tmp_path: Path) -> None:
    api = ItemsApi(
        tags=[
            {"tag": "blue", "lang": "en", "label": "Blue"},
            {"tag": "blue", "lang": "de", "label": "Blau"},
            {"tag": "red", "lang": "en", "label": "Red"},
            {"tag": "red", "label": "no lang"},
        ]
    )
    with serve_items(api):
        config = f"""
[sources.catalog]
kind = "rest_api"
base_url = "{api.url}"
max_rejected_rate = 0.5
[[sources.catalog.resources]]
name = "tags"
primary_key = ["tag", "lang"]
endpoint = {{ path = "v1/tags", data_selector = "results", paginator = "single_page" }}
"""
        project = Project.create(tmp_path / "p", config)
        first = project.run("python", "-m", "ingestion")
        api.tags[0]["label"] = "Blue!"
        second = project.run("python", "-m", "ingestion")

    assert first.returncode == 0, first.stderr
    assert summary(first.stdout)["catalog"]["loaded"] == "3"
    assert second.returncode == 0, second.stderr
    assert project.query("select tag, lang, label from raw.tags order by tag, lang") == [
        ("blue", "de", "Blau"),
        ("blue", "en", "Blue!"),
        ("red", "en", "Red"),
    ]
    assert project.query("select reason from raw._rejected_rows") == [("missing_lang",)]


def test_a_composite_sql_key_merges_on_the_pair(tmp_path: Path) -> None:
    config = """
[sources.fleet]
kind = "sql_table"
credentials = "sqlite:///fleet.db"
[[sources.fleet.tables]]
table = "Seat Map"
primary_key = ["tailnum", "seat"]
"""
    project = Project.create(tmp_path / "p", config)
    sqlite(
        project.root / "fleet.db",
        'create table "Seat Map" (tailnum text, seat text, class text)',
        """insert into "Seat Map" values ('N1', '1A', 'F'), ('N1', '1B', 'F'), ('N2', '1A', 'Y')""",
    )
    first = project.run("python", "-m", "ingestion")
    sqlite(
        project.root / "fleet.db",
        """update "Seat Map" set class = 'J' where tailnum = 'N1' and seat = '1A'""",
    )
    second = project.run("python", "-m", "ingestion")

    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    # The table's name as stored: `Seat Map` -> seat_map.
    assert project.query("select tailnum, seat, class from raw.seat_map order by 1, 2") == [
        ("N1", "1A", "J"),
        ("N1", "1B", "F"),
        ("N2", "1A", "Y"),
    ]


@pytest.mark.parametrize(
    ("key", "said"),
    [
        ("5", "sources.s.key (env SOURCES__S__KEY) must be a column name or a list"),
        ('["a", "a"]', "sources.s.key (env SOURCES__S__KEY) names a column twice"),
        ('"_row_key"', "'_row_key' is a lineage column, not a key; a source without a natural"),
    ],
)
def test_a_bad_key_is_one_line_naming_the_option(tmp_path: Path, key: str, said: str) -> None:
    project = Project.create(
        tmp_path / "p", f'[sources.s]\nkind = "csv"\nfolder = "."\nkey = {key}\n'
    )
    result = project.run("python", "-m", "ingestion")
    assert result.returncode == 2
    assert said in one_error(result.stderr)


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("config", "said"),
    [
        ('[sources.Things]\nkind = "csv"\nfolder = "."\n', "source 'Things' is not a stored name"),
        (
            '[sources."my things"]\nkind = "csv"\nfolder = "."\n',
            "source 'my things' is not a stored name",
        ),
        (
            '[sources.things]\nkind = "csv"\nfolder = "."\ntable = "My Things"\n',
            "sources.things.table 'My Things' is not a stored name",
        ),
        (
            '[sources.a]\nkind = "csv"\nfolder = "."\ntable = "shared"\n'
            '[sources.b]\nkind = "jsonl"\nfolder = "."\ntable = "shared"\n',
            "sources.a and sources.b both write raw.shared",
        ),
        (
            '[sources.a]\nkind = "csv"\nfolder = "."\ntable = "_rejected_rows"\n',
            "sources.a.table '_rejected_rows' is not a stored name",
        ),
    ],
)
def test_names_that_would_load_under_another_name_or_share_a_table_are_refused(
    tmp_path: Path, config: str, said: str
) -> None:
    project = Project.create(tmp_path / "p", config)
    for command in (("python", "-m", "ingestion"), ("python", "-m", "ingestion", "scaffold", "a")):
        result = project.run(*command)
        assert result.returncode == 2, result.stderr
        assert said in one_error(result.stderr)
    assert not project.warehouse.exists()


def test_api_fields_that_collide_after_normalization_reject_the_record(tmp_path: Path) -> None:
    api = ItemsApi(
        tags=[
            {"tag": "a", "userId": 5, "user_id": 6},
            {"tag": "b", "Name": "A", "name": "a"},
            {"tag": "c", "meta": {"user_id": 1}, "Meta": {"userId": 2}},
            {"tag": "d", "userId": 7},
        ]
    )
    with serve_items(api):
        config = f"""
[sources.catalog]
kind = "rest_api"
base_url = "{api.url}"
max_rejected_rate = 1
[[sources.catalog.resources]]
name = "tags"
primary_key = "tag"
endpoint = {{ path = "v1/tags", data_selector = "results", paginator = "single_page" }}
"""
        project = Project.create(tmp_path / "p", config)
        result = project.run("python", "-m", "ingestion")

    assert result.returncode == 0, result.stderr
    assert project.query("select tag, user_id from raw.tags") == [("d", 7)]
    rejected = project.query("select reason, payload from raw._rejected_rows order by location")
    assert [reason for reason, _ in rejected] == [
        "duplicate_column_user_id",
        "duplicate_column_name",
        "duplicate_column_meta__user_id",
    ]
    # Every value of each collision is kept, in the payload.
    assert json.loads(rejected[0][1]) == {"tag": "a", "userId": 5, "user_id": 6}
    assert json.loads(rejected[1][1]) == {"tag": "b", "Name": "A", "name": "a"}


def test_sql_columns_that_collide_reject_the_table_and_the_others_load(tmp_path: Path) -> None:
    config = """
[sources.shop]
kind = "sql_table"
credentials = "sqlite:///shop.db"
[[sources.shop.tables]]
table = "people"
primary_key = "id"
[[sources.shop.tables]]
table = "sizes"
primary_key = "id"
"""
    project = Project.create(tmp_path / "p", config)
    sqlite(
        project.root / "shop.db",
        'create table people (id integer, "userId" integer, user_id integer)',
        "insert into people values (1, 5, 6)",
        'create table sizes (id integer, "Größe" text, "Grüße" text)',
        "insert into sizes values (1, 'L', 'hi')",
        "create table ok (id integer)",
    )

    result = project.run("python", "-m", "ingestion")

    assert result.returncode == 1  # 2 of 2 records rejected: above the limit
    assert "rejected 2 of 2 records" in one_error(result.stderr)
    assert project.query("select location, reason, payload from raw._rejected_rows order by 1") == [
        ("people", "duplicate_column_user_id", "columns 'userId', 'user_id' all load as user_id"),
        ("sizes", "duplicate_column_gr_e", "columns 'Größe', 'Grüße' all load as gr_e"),
    ]
    tables = {t for (t,) in project.query("select table_name from duckdb_tables()")}
    assert "people" not in tables and "sizes" not in tables


def test_a_csv_header_with_names_differing_in_case_is_rejected_as_documented(
    tmp_path: Path,
) -> None:
    project = Project.create(
        tmp_path / "p", '[sources.pay]\nkind = "csv"\nfolder = "in"\nmax_rejected_rate = 1\n'
    )
    (project.root / "in").mkdir()
    (project.root / "in" / "a.csv").write_text("id,Amount,amount\n1,2,3\n")
    (project.root / "in" / "b.csv").write_text("id,amount\n1,2\n")

    result = project.run("python", "-m", "ingestion")

    assert result.returncode == 0, result.stderr
    assert project.query("select id, amount from raw.pay") == [("1", "2")]
    assert project.query("select location, reason from raw._rejected_rows") == [
        ("a.csv", "duplicate_column_amount")
    ]


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("entry", "said"),
    [
        (
            'table = "t"\nprimary_key = "id"\ncursr = "modified"',
            "sources.db.tables[t].cursr is not an option there; its options: table, primary_key",
        ),
        ('table = "t"', "sources.db.tables[t].primary_key is required"),
    ],
)
def test_a_misspelt_table_entry_option_is_named(tmp_path: Path, entry: str, said: str) -> None:
    config = f'[sources.db]\nkind = "sql_table"\ncredentials = "sqlite:///x.db"\n[[sources.db.tables]]\n{entry}\n'
    project = Project.create(tmp_path / "p", config)
    result = project.run("python", "-m", "ingestion")
    assert result.returncode == 2
    assert said in one_error(result.stderr)


@pytest.mark.parametrize(
    ("resource", "said"),
    [
        (
            'name = "t"\nprimay_key = "id"',
            "sources.api.resources[t].primay_key is not an option there",
        ),
        (
            'name = "t"\nprimary_key = "id"\nendpoint = { path = "t", pagnator = "single_page" }',
            "sources.api.resources[t].endpoint.pagnator is not an option there",
        ),
        (
            'name = "t"\nprimary_key = "id"\n'
            'endpoint = { path = "t", paginator = "single_page", '
            'incremental = { cursor_pth = "m" } }',
            "sources.api.resources[t].endpoint.incremental.cursor_pth is not an option there",
        ),
        (
            'name = "t"\nprimary_key = "id"\n'
            'endpoint = { path = "t", paginator = { type = "page_number", strat = 1 } }',
            "sources.api: paginator",
        ),
    ],
)
def test_a_misspelt_nested_api_option_is_named(tmp_path: Path, resource: str, said: str) -> None:
    config = (
        '[sources.api]\nkind = "rest_api"\nbase_url = "http://127.0.0.1:9"\n'
        f"[[sources.api.resources]]\n{resource}\n"
    )
    project = Project.create(tmp_path / "p", config)
    result = project.run("python", "-m", "ingestion")
    assert result.returncode == 2
    assert said in one_error(result.stderr)


def test_each_kind_describes_its_tables_and_what_a_sensor_watches(tmp_path: Path) -> None:
    """`python -m ingestion describe`: what an orchestrator asks instead of knowing kinds."""
    config = """
[sources.files]
kind = "csv"
folder = "in/files"
table = "exports"
[sources.stream]
kind = "jsonl"
backend = "redis"
[sources.segments]
kind = "jsonl"
folder = "in/segments"
glob = "*.ndjson"
[sources.db]
kind = "sql_table"
credentials = "sqlite:///x.db"
tables = [{ table = "Order Details", primary_key = ["order_id", "line"] }]
[sources.api]
kind = "rest_api"
base_url = "http://127.0.0.1:9"
resources = [{ name = "items", primary_key = "id", endpoint = { paginator = "single_page" } }]
"""
    project = Project.create(tmp_path / "p", config)
    plain = project.run("python", "-m", "ingestion", "describe")
    inbox = project.run("python", "-m", "ingestion", "describe", "--inbox", "/drop")

    assert plain.returncode == 0, plain.stderr
    assert json.loads(plain.stdout) == {
        "files": {"kind": "csv", "tables": ["exports"], "watch": ["in/files", "*.csv"]},
        "stream": {"kind": "jsonl", "tables": ["stream"], "watch": None},
        "segments": {"kind": "jsonl", "tables": ["segments"], "watch": ["in/segments", "*.ndjson"]},
        "db": {"kind": "sql_table", "tables": ["order_details"], "watch": None},
        "api": {"kind": "rest_api", "tables": ["items"], "watch": None},
    }
    assert json.loads(inbox.stdout)["files"]["watch"] == ["/drop/files", "*.csv"]
