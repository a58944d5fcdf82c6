"""The warehouse is the one record of what was loaded; types that change at the source
never leave a run stuck; secrets are never stored or printed, and only secrets masked.

Real files, real SQLite databases, a real local HTTP server; `python -m ingestion` and
`python -m pipeline run` as a user runs them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
from project import ItemsApi, Project, one_error, serve_items, sqlite, summary

CONFIG = """
[sources.flights]
kind = "csv"
folder = "in/flights"
key = ["carrier", "flight"]

[sources.weather]
kind = "jsonl"
folder = "in/weather"
key = "reading_id"

[sources.shop]
kind = "sql_table"
credentials = "sqlite:///in/shop.db"
[[sources.shop.tables]]
table = "items"
primary_key = "id"
cursor = "modified"

[sources.catalog]
kind = "rest_api"
base_url = "{url}"
[[sources.catalog.resources]]
name = "items"
table = "api_items"
primary_key = "id"
[sources.catalog.resources.endpoint]
path = "v1/items"
data_selector = "results"
paginator = {{ type = "json_link", next_url_path = "links.next" }}
incremental = {{ cursor_path = "modified", start_param = "since", initial_value = 0 }}
"""
COUNTS = """
select
    (select count(*) from raw.flights),
    (select count(*) from raw.weather),
    (select count(*) from raw.items),
    (select count(*) from raw.api_items),
    (select count(*) from raw._rejected_rows)
"""


def test_a_deleted_warehouse_is_loaded_again_exactly_once(tmp_path: Path) -> None:
    api = ItemsApi(items=[{"id": i, "modified": 100 + i} for i in range(1, 6)])
    with serve_items(api):
        project = Project.create(tmp_path / "p", CONFIG.format(url=api.url))
        inbox = project.root / "in"
        (inbox / "flights").mkdir(parents=True)
        (inbox / "weather").mkdir()
        (inbox / "flights" / "f.csv").write_text("carrier,flight,delay\nAA,1,5\nAA,2,3\nUA,1,0\n")
        (inbox / "weather" / "w.jsonl").write_text(
            "".join(json.dumps({"reading_id": f"r{i}", "t": i}) + "\n" for i in range(4))
        )
        sqlite(
            inbox / "shop.db",
            "create table items (id integer primary key, qty integer, modified text)",
            "insert into items values (1, 5, '2026-01-01'), (2, 7, '2026-01-02')",
        )

        first = project.run("python", "-m", "ingestion")
        assert first.returncode == 0, first.stderr
        assert project.query(COUNTS) == [(3, 4, 2, 5, 0)]
        # The warehouse goes (a new disk, a restore, rm): dlt's folder beside it stays.
        project.warehouse.unlink()
        again = project.run("python", "-m", "ingestion")
        assert again.returncode == 0, again.stderr
        assert project.query(COUNTS) == [(3, 4, 2, 5, 0)]
        nothing_new = project.run("python", "-m", "ingestion")

    assert {name: row["loaded"] for name, row in summary(again.stdout).items()} == {
        "flights": "3",
        "weather": "4",
        "shop": "2",
        "catalog": "5",
    }
    assert project.query(COUNTS) == [(3, 4, 2, 5, 0)]
    assert {row["loaded"] for row in summary(nothing_new.stdout).values()} == {"0"}


def test_a_warehouse_replaced_by_an_older_copy_loads_what_that_copy_lacks(
    tmp_path: Path,
) -> None:
    config = '[sources.weather]\nkind = "jsonl"\nfolder = "in"\nkey = "reading_id"\n'
    project = Project.create(tmp_path / "p", config)
    (project.root / "in").mkdir()
    segment = project.root / "in" / "w.jsonl"
    segment.write_text('{"reading_id": "a"}\n')
    assert project.run("python", "-m", "ingestion").returncode == 0
    backup = tmp_path / "backup.duckdb"
    shutil.copy(project.warehouse, backup)
    with segment.open("a") as handle:
        handle.write('{"reading_id": "b"}\n')
    assert project.run("python", "-m", "ingestion").returncode == 0

    shutil.copy(backup, project.warehouse)  # restored from last night's copy
    restored = project.run("python", "-m", "ingestion")

    assert summary(restored.stdout)["weather"]["loaded"] == "1"
    assert project.query("select reading_id from raw.weather order by 1") == [("a",), ("b",)]


def test_a_fixed_csv_key_takes_effect_on_the_next_run(tmp_path: Path) -> None:
    config = (
        '[sources.pay]\nkind = "csv"\nfolder = "in"\nkey = "payment_id"\nmax_rejected_rate = 1\n'
    )
    project = Project.create(tmp_path / "p", config)
    (project.root / "in").mkdir()
    (project.root / "in" / "a.csv").write_text("id,amount\n1,5\n2,7\n")
    wrong = project.run("python", "-m", "ingestion")
    assert project.query("select reason from raw._rejected_rows") == [("wrong_header",)]

    (project.root / ".dlt" / "config.toml").write_text(config.replace("payment_id", "id"))
    fixed = project.run("python", "-m", "ingestion")

    assert wrong.returncode == 0
    assert fixed.returncode == 0, fixed.stderr
    assert summary(fixed.stdout)["pay"]["loaded"] == "2"
    assert project.query("select id, amount from raw.pay order by id") == [("1", "5"), ("2", "7")]
    assert project.scalar("select count(*) from raw._rejected_rows") == 0


def test_a_changed_jsonl_key_asks_for_a_full_refresh_in_one_line(tmp_path: Path) -> None:
    config = '[sources.w]\nkind = "jsonl"\nfolder = "in"\nkey = "reading"\nmax_rejected_rate = 1\n'
    project = Project.create(tmp_path / "p", config)
    (project.root / "in").mkdir()
    (project.root / "in" / "w.jsonl").write_text('{"id": "a"}\n{"id": "b"}\n')
    assert project.run("python", "-m", "ingestion").returncode == 0
    assert project.scalar("select count(*) from raw._rejected_rows") == 2

    (project.root / ".dlt" / "config.toml").write_text(config.replace('"reading"', '"id"'))
    changed = project.run("python", "-m", "ingestion")
    refreshed = project.run("python", "-m", "ingestion", "--full-refresh")

    assert changed.returncode == 1
    assert "run python -m ingestion w --full-refresh" in one_error(changed.stderr)
    assert refreshed.returncode == 0, refreshed.stderr
    assert project.query("select id from raw.w order by 1") == [("a",), ("b",)]
    assert project.scalar("select count(*) from raw._rejected_rows") == 0


SHOP = """
[sources.shop]
kind = "sql_table"
credentials = "sqlite:///shop.db"
[[sources.shop.tables]]
table = "items"
primary_key = "id"
cursor = "modified"
"""


def test_a_column_whose_type_changes_at_the_source_keeps_loading(tmp_path: Path) -> None:
    """INTEGER to TEXT: the values that still fit load into the column, the others into a
    variant column the summary names; a NULL cursor loads instead of failing the source."""
    project = Project.create(tmp_path / "p", SHOP)
    db = project.root / "shop.db"
    sqlite(
        db,
        "create table items (id integer primary key, qty integer, modified text)",
        "insert into items values (1, 5, '2026-01-01'), (2, 7, '2026-01-01'), (3, 1, null)",
    )
    first = project.run("python", "-m", "ingestion")
    sqlite(
        db,
        "alter table items rename to old",
        "create table items (id integer primary key, qty text, modified text)",
        "insert into items select * from old",
        "insert into items values (4, 'lots', '2026-01-02'), (5, '9', '2026-01-02')",
    )
    changed = project.run("python", "-m", "ingestion")
    later = project.run("python", "-m", "ingestion")

    assert first.returncode == 0, first.stderr
    assert changed.returncode == 0, changed.stderr
    assert summary(changed.stdout)["shop"]["new columns"] == "items.qty__v_text"
    assert later.returncode == 0, later.stderr
    assert project.query("select id, qty, qty__v_text from raw.items order by id") == [
        (1, 5, None),
        (2, 7, None),
        (3, 1, None),
        (4, None, "lots"),
        (5, 9, None),
    ]


def test_a_pending_load_that_cannot_finish_is_dropped_and_read_again(tmp_path: Path) -> None:
    """A load the warehouse refuses (here a unique index someone put on raw) stays
    pending; the next run drops it with what it wrote and says so, instead of failing
    on it for good, and once the cause is gone the rows load."""
    project = Project.create(tmp_path / "p", SHOP)
    db = project.root / "shop.db"
    sqlite(
        db,
        "create table items (id integer primary key, qty integer, modified text)",
        "insert into items values (1, 5, '2026-01-01')",
    )
    assert project.run("python", "-m", "ingestion").returncode == 0
    with duckdb.connect(str(project.warehouse)) as con:
        con.execute("create unique index one_qty on raw.items (qty)")
    sqlite(db, "insert into items values (2, 5, '2026-01-02')")

    refused = project.run("python", "-m", "ingestion")
    retried = project.run("python", "-m", "ingestion")
    with duckdb.connect(str(project.warehouse)) as con:
        con.execute("drop index raw.one_qty")
    fixed = project.run("python", "-m", "ingestion")

    assert refused.returncode == 1
    assert "dropped a pending load that could not finish" in retried.stderr
    assert retried.returncode == 1  # read again, refused again: still named, not stuck
    assert fixed.returncode == 0, fixed.stderr
    assert project.query("select id, qty from raw.items order by id") == [(1, 5), (2, 5)]


# --------------------------------------------------------------------------- secrets


def files_holding(root: Path, *secrets: str) -> list[str]:
    return [
        str(path.relative_to(root))
        for path in root.rglob("*")
        if path.is_file() and any(s.encode() in path.read_bytes() for s in secrets)
    ]


def test_secrets_are_never_stored_or_printed(tmp_path: Path) -> None:
    token, password = "tok-7a1c9e3f", "pw-5d2b8e71"
    api = ItemsApi(items=[{"id": 1, "modified": 1}])
    with serve_items(api):
        base = api.url.replace("http://", f"http://reader:{password}@")
        config = CONFIG[CONFIG.index("[sources.catalog]") :].format(url="http://127.0.0.1:9")
        config = config.replace('base_url = "', 'auth = "bearer"\nbase_url = "')
        project = Project.create(tmp_path / "p", config, with_dbt=True)
        # one attempt: the closed port fails at once (retries have their own tests)
        env = {"SOURCES__CATALOG__API_TOKEN": token, "SOURCES__CATALOG__REQUEST_MAX_ATTEMPTS": "1"}
        loaded = project.run("python", "-m", "ingestion", "--api-url", base, **env)
        unreachable = f"http://reader:{password}@127.0.0.1:9"
        failed = project.run("python", "-m", "ingestion", "--api-url", unreachable, **env)
        run = project.run("python", "-m", "pipeline", "run", "--api-url", unreachable, **env)

    assert loaded.returncode == 0, loaded.stderr
    assert failed.returncode == 1 and run.returncode == 1
    assert "reader:***@127.0.0.1:9" in one_error(failed.stderr)
    for result in (loaded, failed, run):
        assert token not in result.stdout + result.stderr
        assert password not in result.stdout + result.stderr
    audit = project.query("select arguments from monitoring.audit_log order by started_at")
    assert any("reader:***@" in arguments for (arguments,) in audit)
    assert files_holding(project.root / "data", token, password) == []


def test_a_secret_in_config_toml_is_refused_saying_where_it_belongs(tmp_path: Path) -> None:
    for option, value in (
        ("api_token", "tok-in-config"),
        ("base_url", "http://me:pw-in-config@127.0.0.1:9"),
    ):
        base = "" if option == "base_url" else 'base_url = "http://127.0.0.1:9"\n'
        config = (
            f'[sources.catalog]\nkind = "rest_api"\n{base}{option} = "{value}"\n'
            '[[sources.catalog.resources]]\nname = "items"\nprimary_key = "id"\n'
            'endpoint = { path = "items", paginator = "single_page" }\n'
        )
        project = Project.create(tmp_path / option, config)
        result = project.run("python", "-m", "ingestion")
        assert result.returncode == 2
        error = one_error(result.stderr)
        assert f"sources.catalog.{option} holds a secret" in error
        assert ".dlt/secrets.toml" in error and "pw-in-config" not in error


def test_a_key_override_is_no_secret_and_rejected_rows_always_exist(tmp_path: Path) -> None:
    config = '[sources.readings]\nkind = "jsonl"\nfolder = "in"\nkey = "reading_id"\n'
    project = Project.create(tmp_path / "p", config)
    (project.root / "in").mkdir()
    (project.root / "in" / "r.jsonl").write_text('{"source": "s1", "v": 1}\n')

    result = project.run("python", "-m", "ingestion", SOURCES__READINGS__KEY="source")

    assert result.returncode == 0, result.stderr
    assert "| source | status | read |" in result.stdout  # the word is not masked
    assert project.query("select source, v from raw.readings") == [("s1", "1")]
    assert project.scalar("select count(*) from raw._rejected_rows") == 0


# --------------------------------------------------------------------------- counts


def test_a_run_with_nothing_new_loads_nothing_on_every_kind(tmp_path: Path) -> None:
    """Sources re-read whole (an API endpoint and a table without a cursor, rows whose
    cursor is NULL) report what they read again unchanged as unchanged, not loaded."""
    api = ItemsApi(items=[], tags=[{"tag": "blue"}, {"tag": "red"}])
    with serve_items(api):
        config = CONFIG.format(url=api.url).replace('cursor = "modified"\n', "") + (
            '[[sources.catalog.resources]]\nname = "tags"\nprimary_key = "tag"\n'
            'endpoint = { path = "v1/tags", data_selector = "results", '
            'paginator = "single_page" }\n'
        )
        project = Project.create(tmp_path / "p", config)
        inbox = project.root / "in"
        (inbox / "flights").mkdir(parents=True)
        (inbox / "weather").mkdir()
        (inbox / "flights" / "f.csv").write_text("carrier,flight\nAA,1\n")
        (inbox / "weather" / "w.jsonl").write_text('{"reading_id": "r1"}\n')
        sqlite(
            inbox / "shop.db",
            "create table items (id integer primary key, qty integer, modified text)",
            "insert into items values (1, 5, '2026-01-01'), (2, 7, null)",
        )
        first = project.run("python", "-m", "ingestion")
        again = project.run("python", "-m", "ingestion")
        sqlite(inbox / "shop.db", "update items set qty = 8 where id = 2")
        api.tags.append({"tag": "green"})
        changed = project.run("python", "-m", "ingestion")

    assert first.returncode == 0, first.stderr
    counts = {n: (r["read"], r["loaded"], r["unchanged"]) for n, r in summary(again.stdout).items()}
    assert counts == {
        "flights": ("0", "0", "0"),
        "weather": ("0", "0", "0"),
        "shop": ("2", "0", "2"),
        "catalog": ("2", "0", "2"),
    }
    counts = {n: (r["loaded"], r["unchanged"]) for n, r in summary(changed.stdout).items()}
    assert counts["shop"] == ("1", "1") and counts["catalog"] == ("1", "2")
    assert project.query("select id, qty from raw.items order by id") == [(1, 5), (2, 8)]
    assert project.scalar("select count(*) from raw.tags") == 3
