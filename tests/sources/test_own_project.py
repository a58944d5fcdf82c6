"""A project of one's own: scaffold, dbt build, pipeline run, publish.

The project is what `python -m pipeline init` writes, its `.dlt/config.toml`
declaring a CSV and a JSONL source. What the user adds is configuration and
their own mart.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from project import Project, summary

CONFIG = """
[sources.flights]
kind = "csv"
folder = "inbox/flights"
delimiter = ";"
rename = { FlightNo = "flight_id" }
key = "flight_id"

[sources.readings]
kind = "jsonl"
folder = "inbox/readings"
key = "reading_id"
cursor_field = "observed_at"
timezone = "America/New_York"
"""
READINGS = (
    '{"reading_id": 1, "temp_c": 4.5, "observed_at": "2024-01-01T00:00:00+01:00"}\n'
    '{"reading_id": 2, "temp_c": 5, "observed_at": "soon"}\n'
    '{"reading_id": 3, "temp_c": 6}\n'
    '{"reading_id": 4, "temp_c": 7, "observed_at": "2024-01-05T09:00:00"}\n'
    '{"reading_id": 5, "temp_c": 8, "observed_at": "2024-07-01"}\n'
)

MONTHS = 3
FLIGHTS_PER_MONTH = 40
MART_SQL = """
select flight_id, carrier, dep_delay, day
from {{ ref('stg_flights__flights') }}
where is_current and _invalid_reason is null
"""
MART_YML = """
version: 2
models:
  - name: fct_flights
    columns:
      - {name: flight_id, data_type: bigint, constraints: [{type: not_null}]}
      - {name: carrier, data_type: varchar}
      - {name: dep_delay, data_type: bigint}
      - {name: day, data_type: date}
"""


def export(month: int) -> str:
    """One month: flights 1-40 re-sent each month (new delays), one without a key in month 1."""
    lines = ["FlightNo;Carrier;DepDelay;Day"]
    for flight in range(1, FLIGHTS_PER_MONTH + 1):
        lines.append(
            f"{flight};{'AA' if flight % 2 else 'UA'};{flight * month - 20};2024-{month:02}-01"
        )
    if month == 1:
        lines.append(";DL;7;2024-01-02")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def scaffolded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Project, str]:
    """The project after its first load and `python -m ingestion scaffold flights`."""
    project = Project.create(tmp_path_factory.mktemp("own") / "p", CONFIG, with_dbt=True)
    folder = project.root / "inbox" / "flights"
    folder.mkdir(parents=True)
    for month in range(1, MONTHS + 1):
        (folder / f"flights-2024-{month:02}.csv").write_text(export(month))
    (project.root / "inbox" / "readings").mkdir()
    (project.root / "inbox" / "readings" / "r-1.jsonl").write_text(READINGS)
    loaded = project.run("python", "-m", "ingestion")
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    result = project.run("python", "-m", "ingestion", "scaffold", "flights")
    assert result.returncode == 0, result.stdout + result.stderr
    readings = project.run("python", "-m", "ingestion", "scaffold", "readings")
    assert readings.returncode == 0, readings.stdout + readings.stderr
    return project, result.stdout


def test_scaffold_writes_typed_staging_that_builds_and_never_overwrites(
    scaffolded: tuple[Project, str],
) -> None:
    project, output = scaffolded
    folder = project.root / "models" / "staging" / "flights"
    written = sorted(p.name for p in folder.iterdir())
    assert written == ["_flights__models.yml", "_flights__sources.yml", "stg_flights__flights.sql"]
    assert output.count("wrote ") == 3

    build = project.run("dbt", "build", "--select", "source:flights+")
    assert build.returncode == 0, build.stdout[-3000:]
    # the 2 on-run-start hooks, the model, the accounting test and 3 tests of the key
    assert "PASS=7 WARN=0 ERROR=0" in build.stdout
    types = dict(
        project.query(
            "select column_name, data_type from information_schema.columns"
            " where table_name = 'stg_flights__flights'"
        )
    )
    assert (types["flight_id"], types["dep_delay"], types["day"]) == ("BIGINT", "BIGINT", "DATE")
    assert project.query(
        "select is_current, _invalid_reason, count(*) from staging.stg_flights__flights"
        " group by all order by all nulls last"
    ) == [
        (False, None, FLIGHTS_PER_MONTH * (MONTHS - 1)),  # older versions of each flight
        (True, "missing_key", 1),
        (True, None, FLIGHTS_PER_MONTH),
    ]

    # jsonl: the cursor_field is the records' own time, typed whatever its values; a time
    # without an offset is a wall time in the source's timezone (EST in January, EDT in July)
    readings = project.run("dbt", "build", "--select", "source:readings+")
    assert readings.returncode == 0, readings.stdout[-3000:]
    assert project.query(
        "select reading_id, temp_c, observed_at::varchar, _invalid_reason"
        " from staging.stg_readings__readings order by reading_id"
    ) == [
        (1, 4.5, "2023-12-31 23:00:00", None),
        (2, 5.0, None, "invalid_observed_at"),
        (3, 6.0, None, "missing_observed_at"),
        (4, 7.0, "2024-01-05 14:00:00", None),
        (5, 8.0, "2024-07-01 04:00:00", None),
    ]

    model = folder / "stg_flights__flights.sql"
    model.write_text(model.read_text() + "\n-- edited by hand\n")
    again = project.run("python", "-m", "ingestion", "scaffold", "flights")
    assert again.returncode == 0
    assert again.stdout.count("(exists: not overwritten)") == 3
    assert model.read_text().endswith("-- edited by hand\n")


def test_a_project_of_only_its_own_sources_runs_green_and_publishes_its_marts(
    scaffolded: tuple[Project, str],
) -> None:
    project, _ = scaffolded
    marts = project.root / "models" / "marts" / "flights"
    marts.mkdir(parents=True)
    (marts / "fct_flights.sql").write_text(MART_SQL)
    (marts / "_flights__models.yml").write_text(MART_YML)

    run = project.run("python", "-m", "pipeline", "run")

    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    analytics = project.root / "data" / "analytics.duckdb"
    tables = project.query(
        "select table_schema, table_name from information_schema.tables"
        " where table_schema <> 'meta' order by all",
        analytics,
    )
    assert tables == [("marts", "fct_flights")]
    assert project.query("select count(*) from marts.fct_flights", analytics) == [
        (FLIGHTS_PER_MONTH,)
    ]
    assert project.query(
        "select min(dep_delay), max(dep_delay) from marts.fct_flights", analytics
    ) == [(1 * MONTHS - 20, FLIGHTS_PER_MONTH * MONTHS - 20)]


def mart(project: Project, name: str) -> None:
    """One mart over the flights, `name`, in place of any other."""
    folder = project.root / "models" / "marts"
    for old in folder.glob("fct_*"):
        old.unlink()
    (folder / f"{name}.sql").write_text(MART_SQL)
    (folder / f"_{name}.yml").write_text(MART_YML.replace("fct_flights", name))


def published_tables(project: Project) -> list[tuple[str, str]]:
    return project.query(
        "select table_schema, table_name from information_schema.tables"
        " where table_schema <> 'meta' order by all",
        project.root / "data" / "analytics.duckdb",
    )


CARRIERS = """
[sources.carriers]
kind = "csv"
folder = "inbox/carriers"
key = "code"
"""
CARRIERS_SQL = "select code, name from {{ ref('stg_carriers__carriers') }} where is_current\n"
CARRIERS_YML = """
version: 2
models:
  - name: fct_carriers
    columns:
      - {name: code, data_type: varchar}
      - {name: name, data_type: varchar}
"""


def test_tables_of_models_that_no_longer_exist_are_not_published_and_prune_drops_them(
    tmp_path: Path,
) -> None:
    """A renamed mart and a source no longer declared: their tables stay in the warehouse,
    are left out of the published file with a warning, and prune drops exactly them."""
    flights_only = CONFIG.split("[sources.readings]")[0]
    project = Project.create(tmp_path / "p", flights_only + CARRIERS, with_dbt=True)
    inbox = project.root / "inbox"
    (inbox / "flights").mkdir(parents=True)
    (inbox / "flights" / "flights-2024-01.csv").write_text(export(1))
    (inbox / "carriers").mkdir()
    (inbox / "carriers" / "c.csv").write_text("code,name\nAA,American\n")
    assert project.run("python", "-m", "ingestion").returncode == 0
    for source in ("flights", "carriers"):
        assert project.run("python", "-m", "ingestion", "scaffold", source).returncode == 0
    mart(project, "fct_flights")
    (project.root / "models" / "marts" / "carriers").mkdir()
    (project.root / "models" / "marts" / "carriers" / "fct_carriers.sql").write_text(CARRIERS_SQL)
    (project.root / "models" / "marts" / "carriers" / "_carriers.yml").write_text(CARRIERS_YML)
    first = project.run("python", "-m", "pipeline", "run")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert published_tables(project) == [("marts", "fct_carriers"), ("marts", "fct_flights")]

    mart(project, "fct_departures")  # renamed: fct_flights stays in the warehouse
    (project.root / ".dlt" / "config.toml").write_text(flights_only)  # carriers' models stay
    changed = project.run("python", "-m", "pipeline", "run")
    assert changed.returncode == 0, changed.stdout[-3000:] + changed.stderr[-3000:]
    assert published_tables(project) == [("marts", "fct_departures")]
    assert (
        "warning: not published, no model of this project builds them: "
        "marts.fct_carriers, marts.fct_flights; drop them with: python -m pipeline prune"
    ) in changed.stderr
    assert project.query("select count(*) from marts.fct_flights") == [(FLIGHTS_PER_MONTH,)]

    listed = project.run("python", "-m", "pipeline", "prune", "--dry-run")
    leftovers = "marts.fct_carriers, marts.fct_flights, staging.stg_carriers__carriers"
    assert listed.stdout.strip() == f"would drop 3: {leftovers}"
    dropped = project.run("python", "-m", "pipeline", "prune")
    assert dropped.stdout.strip() == f"dropped 3: {leftovers}"
    assert project.query(
        "select table_schema || '.' || table_name from information_schema.tables"
        " where table_schema in ('staging', 'marts') order by 1"
    ) == [("marts.fct_departures",), ("staging.stg_flights__flights",)]
    quiet = project.run("python", "-m", "pipeline", "run")
    assert quiet.returncode == 0 and "not published" not in quiet.stderr


def test_reset_starts_the_project_over_and_only_when_told(tmp_path: Path) -> None:
    project = Project.create(tmp_path / "p", CONFIG.split("[sources.readings]")[0], with_dbt=True)
    inbox = project.root / "inbox" / "flights"
    inbox.mkdir(parents=True)
    (inbox / "flights-2024-01.csv").write_text(export(1))
    assert project.run("python", "-m", "ingestion").returncode == 0
    state = project.root / "data" / ".dlt-pipelines"
    assert project.warehouse.exists() and state.exists()
    speed_layer = project.root / "data" / "analytics.fresh.sqlite"  # of a [fresh] declaration
    speed_layer.write_bytes(b"")

    asked = project.run("python", "-m", "pipeline", "reset")
    assert asked.returncode == 2
    assert asked.stderr.splitlines()[-1] == (
        "error: nothing removed; re-run with --yes to remove them"
    )
    assert project.warehouse.exists()

    done = project.run("python", "-m", "pipeline", "reset", "--yes")
    assert done.returncode == 0, done.stderr
    assert not project.warehouse.exists() and not any(state.iterdir())
    assert not speed_layer.exists()
    again = project.run("python", "-m", "ingestion")
    assert summary(again.stdout)["flights"]["loaded"] == str(FLIGHTS_PER_MONTH + 1)
