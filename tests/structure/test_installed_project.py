"""The tool as a user gets it: a wheel installed (not editable) into a fresh virtualenv
outside the repository, a project of their own made by `init`, and an upgrade.

Nothing of the repository is on the path of these commands: they run the venv's
`python` and `dbt` from the project's folder, as a user types them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from wheels import build_wheel

# Installs every dependency into a fresh virtualenv (most of its minute): CI runs it
# beside make test, as `make test-package`.
pytestmark = pytest.mark.package

CONFIG = """
[sources.flights]
kind = "csv"
folder = "data/inbox/flights"
key = "flight_id"
"""
MART_SQL = """select flight_id, carrier, dep_delay, day
from {{ ref('stg_flights__flights') }}
where is_current and _invalid_reason is null
"""
MART_YML = """version: 2
models:
  - name: fct_flights
    columns:
      - {name: flight_id, data_type: bigint, constraints: [{type: not_null}]}
      - {name: carrier, data_type: varchar}
      - {name: dep_delay, data_type: bigint}
      - {name: day, data_type: date}
"""


def export(month: int, flights: int = 20) -> str:
    rows = [
        f"{f},{'AA' if f % 2 else 'UA'},{f * month - 5},2024-{month:02}-01" for f in range(flights)
    ]
    return "flight_id,carrier,dep_delay,day\n" + "\n".join(rows) + "\n"


class Installed:
    """A virtualenv with the tool installed, and commands run in a project folder with it."""

    def __init__(self, venv: Path) -> None:
        self.venv = venv
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=600)

    def env(self) -> dict[str, str]:
        kept = {
            k: v
            for k, v in os.environ.items()
            if k in ("HOME", "LANG", "TMPDIR", "PIP_CONFIG_FILE")
        }
        return {
            **kept,
            "PATH": f"{self.venv / 'bin'}:/usr/bin:/bin",
            "DBT_PROFILES_DIR": "profiles",
            "DBT_USE_COLORS": "false",
        }

    def run(self, cwd: Path, *command: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(self.venv / "bin" / command[0]), *command[1:]],
            cwd=cwd,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, (
            f"{' '.join(command)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
        return done

    def install(self, wheel: Path) -> None:
        self.run(self.venv, "python", "-m", "pip", "install", "--quiet", "--upgrade", str(wheel))


def published(project: Path) -> list[tuple[str, str]]:
    with duckdb.connect(str(project / "data" / "analytics.duckdb"), read_only=True) as con:
        return con.execute(
            "select table_schema, table_name from information_schema.tables "
            "where table_schema <> 'meta' order by all"
        ).fetchall()


def test_an_installed_tool_runs_a_project_of_its_own_and_upgrades(tmp_path: Path) -> None:
    tool = Installed(tmp_path / "venv")
    tool.install(build_wheel(tmp_path / "v1"))
    project = tmp_path / "flights"

    tool.run(tmp_path, "python", "-m", "pipeline", "init", str(project))
    (project / ".dlt" / "config.toml").write_text(
        (project / ".dlt" / "config.toml").read_text() + CONFIG
    )
    inbox = project / "data" / "inbox" / "flights"
    inbox.mkdir(parents=True)
    (inbox / "2024-01.csv").write_text(export(1))
    tool.run(project, "python", "-m", "ingestion")
    tool.run(project, "python", "-m", "ingestion", "scaffold", "flights")
    (project / "models" / "marts" / "fct_flights.sql").write_text(MART_SQL)
    (project / "models" / "marts" / "_marts.yml").write_text(MART_YML)

    built = tool.run(project, "dbt", "build")
    assert re.search(r"PASS=\d+ WARN=0 ERROR=0 SKIP=0", built.stdout)
    tool.run(project, "python", "-m", "pipeline", "run")
    assert published(project) == [("marts", "fct_flights")]
    # the project holds none of the tool's code: its dbt package is a link into the venv
    site = next((tmp_path / "venv" / "lib").glob("python3*/site-packages"))
    assert (project / ".ml-warehouse").resolve() == site / "warehouse" / "dbt"
    assert sorted(p.name for p in project.rglob("*.py")) == []

    # an upgrade is `pip install -U`: the same project runs again, unchanged, with new data;
    # a release whose macros changed rebuilds every model with them
    note = {"warehouse/dbt/macros/cross_db.sql": "\n{# a later release #}\n"}
    tool.install(build_wheel(tmp_path / "v2", version="0.1.1", appended=note))
    version = tool.run(
        project, "python", "-c", "import importlib.metadata as m; print(m.version('ml-warehouse'))"
    )
    assert version.stdout.strip() == "0.1.1"
    (inbox / "2024-02.csv").write_text(export(2))
    upgraded = tool.run(project, "python", "-m", "pipeline", "run")
    assert "the dbt project or --vars changed" in upgraded.stdout
    assert "20 rows loaded" in upgraded.stdout
    assert published(project) == [("marts", "fct_flights")]
    with duckdb.connect(str(project / "data" / "analytics.duckdb"), read_only=True) as con:
        assert con.execute("select max(dep_delay) from marts.fct_flights").fetchone() == (33,)
    shutil.rmtree(tmp_path / "venv")
