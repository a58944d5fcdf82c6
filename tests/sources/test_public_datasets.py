"""Two public datasets nobody here wrote, shipped inside PyPI packages, taken from a
folder of exports to a published mart with no edit of a generated file.

- vega-datasets' `stocks.csv`: a composite key (`symbol`, `date`) and dates written
  `Jan 1 2000`;
- palmerpenguins' `penguins.csv`: no natural key at all, and `NA` for a missing value.

Declared, loaded, scaffolded, built and published as a user does it; every count is
checked against the files themselves.
"""

from __future__ import annotations

import csv
import importlib.resources
import shutil
from collections import Counter
from pathlib import Path

import duckdb
import pytest
from project import Project, summary

STOCKS = importlib.resources.files("vega_datasets") / "_data" / "stocks.csv"
PENGUINS = importlib.resources.files("palmerpenguins") / "data" / "penguins.csv"

CONFIG = """
[sources.stocks]
kind = "csv"
folder = "inbox/stocks"
key = ["symbol", "date"]

[sources.penguins]
kind = "csv"
folder = "inbox/penguins"
null_values = ["NA"]
"""
MARTS = {
    "stock_years.sql": """
select
    symbol,
    year(date) as year,
    count(*) as months,
    avg(price) as mean_price
from {{ ref('stg_stocks__stocks') }}
where is_current and _invalid_reason is null
group by 1, 2
""",
    "penguin_species.sql": """
select
    species,
    count(*) as penguins,
    count(body_mass_g) as weighed,
    avg(body_mass_g) as mean_body_mass_g
from {{ ref('stg_penguins__penguins') }}
where is_current and _invalid_reason is null
group by 1
""",
    "_public__models.yml": """
version: 2
models:
  - name: stock_years
    columns:
      - {name: symbol, data_type: varchar, constraints: [{type: not_null}]}
      - {name: year, data_type: bigint}
      - {name: months, data_type: bigint}
      - {name: mean_price, data_type: double}
  - name: penguin_species
    columns:
      - {name: species, data_type: varchar, constraints: [{type: not_null}]}
      - {name: penguins, data_type: bigint}
      - {name: weighed, data_type: bigint}
      - {name: mean_body_mass_g, data_type: double}
""",
}


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    project = Project.create(tmp_path_factory.mktemp("public") / "p", CONFIG, with_dbt=True)
    for name, data in (("stocks", STOCKS), ("penguins", PENGUINS)):
        folder = project.root / "inbox" / name
        folder.mkdir(parents=True)
        shutil.copy(str(data), folder / f"{name}.csv")
    return project


def test_public_datasets_load_scaffold_build_and_publish(project: Project) -> None:
    stocks, penguins = rows(Path(str(STOCKS))), rows(Path(str(PENGUINS)))

    loaded = project.run("python", "-m", "ingestion")
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    counts = summary(loaded.stdout)
    assert (counts["stocks"]["loaded"], counts["stocks"]["rejected"]) == (str(len(stocks)), "0")
    assert counts["penguins"]["loaded"] == str(len(penguins))
    missing_sex = sum(1 for row in penguins if row["sex"] == "NA")
    assert project.scalar("select count(*) from raw.penguins where sex is null") == missing_sex

    for name in ("stocks", "penguins"):
        scaffolded = project.run("python", "-m", "ingestion", "scaffold", name)
        assert scaffolded.returncode == 0, scaffolded.stderr
    marts = project.root / "models" / "marts" / "public"
    marts.mkdir(parents=True)
    for file_name, text in MARTS.items():
        (marts / file_name).write_text(text)

    built = project.run("dbt", "build", "--select", "source:stocks+", "source:penguins+")
    assert built.returncode == 0, built.stdout[-4000:]
    types = dict(
        project.query(
            "select table_name || '.' || column_name, data_type from information_schema.columns"
            " where table_schema = 'staging'"
        )
    )
    assert types["stg_stocks__stocks.date"] == "DATE"  # written `Jan 1 2000`
    assert types["stg_stocks__stocks.price"] == "DOUBLE"
    assert types["stg_penguins__penguins.body_mass_g"] == "BIGINT"  # `NA` is null, not text
    assert types["stg_penguins__penguins.bill_length_mm"] == "DOUBLE"
    # Every raw row is current and valid: the stocks' pairs are unique, the penguins keyless.
    assert project.query(
        "select count(*) filter (where is_current and _invalid_reason is null), count(*)"
        " from staging.stg_penguins__penguins"
    ) == [(len(penguins), len(penguins))]

    run = project.run("python", "-m", "pipeline", "run")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    with duckdb.connect(str(project.root / "data" / "analytics.duckdb"), read_only=True) as con:
        species = con.execute(
            "select species, penguins, weighed from marts.penguin_species order by 1"
        ).fetchall()
        years = con.execute(
            "select symbol, year, months from marts.stock_years order by 1, 2"
        ).fetchall()
    expected = Counter(row["species"] for row in penguins)
    weighed = Counter(row["species"] for row in penguins if row["body_mass_g"] != "NA")
    assert species == [(s, expected[s], weighed[s]) for s in sorted(expected)]
    by_year = Counter((row["symbol"], int(row["date"].rsplit(" ", 1)[1])) for row in stocks)
    assert years == sorted((s, y, n) for (s, y), n in by_year.items())


def test_scaffold_types_times_formats_and_keyword_names_so_the_model_builds(
    tmp_path: Path,
) -> None:
    config = (
        '[sources.log]\nkind = "csv"\nfolder = "in"\nkey = "id"\n'
        'formats = { odd = "%d-%b-%y" }\nnull_values = ["NULL"]\n'
    )
    project = Project.create(tmp_path / "p", config, with_dbt=True)
    (project.root / "in").mkdir()
    (project.root / "in" / "log.csv").write_text(
        "id,select,from,when,order,seen_at,day,odd,us_time,n\n"
        "1,a,b,c,4,2013-01-01T10:00:00Z,2013-01-01,01-Jan-13,01/02/2013 10:30,NULL\n"
        "2,d,e,f,5,2013-01-02T11:30:00+01:00,2013-01-02,15-Feb-13,12/31/2013 23:59,7\n"
    )
    assert project.run("python", "-m", "ingestion").returncode == 0
    assert project.run("python", "-m", "ingestion", "scaffold", "log").returncode == 0

    built = project.run("dbt", "build", "--select", "source:log+")

    assert built.returncode == 0, built.stdout[-4000:]
    assert project.query(
        'select id, "select", "order", seen_at::varchar, day::varchar, odd::varchar,'
        " us_time::varchar, n, _invalid_reason from staging.stg_log__log order by id"
    ) == [
        (
            1,
            "a",
            4,
            "2013-01-01 10:00:00",
            "2013-01-01",
            "2013-01-01",
            "2013-01-02 10:30:00",
            None,
            None,
        ),
        (
            2,
            "d",
            5,
            "2013-01-02 10:30:00",
            "2013-01-02",
            "2013-02-15",
            "2013-12-31 23:59:00",
            7,
            None,
        ),
    ]
