"""The run's dbt child (pipeline/dbt_ahead.py): it imports and warms up dbt only when
ingestion says rows are coming, and then is the `dbt` command, with the run's environment
of the moment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
from pipeline_sites import Site, clone
from project_env import ROOT

from pipeline.dbt_ahead import IMPORTED_UNUSED, UNUSED, WARMED_UP_UNUSED
from pipeline.steps import make_context, run_command

DBT = str(Path(sys.executable).with_name("dbt"))


def dbt_child(
    woken: bool,
    command: list[str] | None,
    target: Path,
    env: dict[str, str] | None = None,
    project: Path = ROOT,
) -> subprocess.CompletedProcess[str]:
    """Start the child as a run does, wake it (a byte) or not (the pipe's end), then send it
    `command` with `env`, or close its stdin."""
    wake, loading = os.pipe()
    child = subprocess.Popen(
        [sys.executable, "-m", "pipeline.dbt_ahead", str(wake), str(project), str(target)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        pass_fds=(wake,),
        env=env,
        text=True,
    )
    os.close(wake)
    if woken:
        os.write(loading, b"1")
    os.close(loading)
    asked = json.dumps({"argv": command, "env": env or dict(os.environ)}) + "\n" if command else ""
    out, err = child.communicate(asked, timeout=300)
    return subprocess.CompletedProcess(command or [], child.returncode, out, err)


def test_unused_it_says_whether_it_imported_dbt(tmp_path: Path) -> None:
    assert dbt_child(False, None, tmp_path).returncode == UNUSED
    # no parse on record in the target folder: no warm-up
    assert dbt_child(True, None, tmp_path).returncode == IMPORTED_UNUSED


def test_its_warm_up_reads_no_database_and_writes_nothing_of_the_project(
    published: Site, tmp_path: Path
) -> None:
    """It runs while ingestion writes the warehouse: the file is another process's."""
    site = clone(published, tmp_path / "site")
    target, logs = Path(site.env["DBT_TARGET_PATH"]), Path(site.env["DBT_LOG_PATH"])

    def files() -> dict[Path, tuple[int, int]]:
        found = [*target.rglob("*"), *logs.rglob("*")]
        return {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in found if p.is_file()}

    before = files()
    assert target / "partial_parse.msgpack" in before
    with duckdb.connect(str(site.warehouse)):  # this process holds the warehouse file
        done = dbt_child(True, None, target, env={**os.environ, **site.env})
    assert done.returncode == WARMED_UP_UNUSED, done.stdout + done.stderr
    assert (done.stdout, done.stderr) == ("", "")
    assert files() == before


def test_it_is_the_dbt_command_with_the_environment_it_is_sent(tmp_path: Path) -> None:
    profiles = str(tmp_path / "profiles-of-this-run")
    env = {**os.environ, "DBT_PROFILES_DIR": profiles}
    for woken in (True, False):  # not woken: it imports dbt once asked
        done = dbt_child(woken, [DBT, "debug", "--config-dir"], tmp_path, env)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip().endswith(profiles)

    missing = [DBT, "parse", "--project-dir", str(tmp_path / "missing")]
    by_hand = subprocess.run(missing, capture_output=True, text=True, timeout=120)
    done = dbt_child(True, missing, tmp_path)
    assert done.returncode == by_hand.returncode == 2
    assert done.stderr == by_hand.stderr


def test_after_a_command_on_duckdb_it_leaves_the_warehouse_closed_and_its_log_written(
    tmp_path: Path,
) -> None:
    """It ends without Python's teardown of dbt (pipeline.dbt_ahead.leave): the database is
    closed and checkpointed, dbt's log and output are complete, dbt's exit code stands, and
    no leaked semaphore is reported (multiprocessing's exit handler still runs)."""
    warehouse, logs = tmp_path / "warehouse.duckdb", tmp_path / "logs"
    env = {**os.environ, "WAREHOUSE_PATH": str(warehouse), "DBT_LOG_PATH": str(logs)}
    env["DBT_PROFILES_DIR"] = str(ROOT / "profiles")
    target = ["--project-dir", str(ROOT), "--target-path", str(tmp_path / "target")]
    con = duckdb.connect(str(warehouse))
    con.execute("create table t as select 1 as n")  # a warehouse with a table to read
    con.close()

    shown = [DBT, "show", "--inline", "select n + 1 as m from main.t", *target]
    done = dbt_child(True, shown, tmp_path / "target", env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "leaked semaphore" not in done.stderr
    assert done.stdout.split("Previewing inline node:")[1].split() == [
        "|",
        "m",
        "|",
        "|",
        "-",
        "|",
        "|",
        "2",
        "|",
    ]
    assert "Command `dbt show` succeeded" in (logs / "dbt.log").read_text()
    assert not Path(f"{warehouse}.wal").exists()
    with duckdb.connect(str(warehouse)) as con:  # the child holds the file no more
        con.execute("insert into t values (2)")

    failing = [DBT, "show", "--inline", "select * from main.no_such_table", *target]
    by_hand = subprocess.run(failing, capture_output=True, text=True, env=env, timeout=300)
    done = dbt_child(True, failing, tmp_path / "target", env)
    assert done.returncode == by_hand.returncode == 2  # dbt's code for a failed command
    assert "no_such_table" in done.stdout
    assert (logs / "dbt.log").read_text().count("Command `dbt show` failed") == 2


def test_a_dbt_child_that_is_gone_is_not_used(tmp_path: Path) -> None:
    """Killed (say, out of memory) before the build: the build's command runs in a new
    child, and the run's record says what became of the first."""
    ctx = make_context(tmp_path / "warehouse.duckdb", tmp_path)
    ctx.dbt_ahead.start(ctx)
    assert ctx.dbt_ahead.child is not None
    ctx.dbt_ahead.child.kill()
    ctx.dbt_ahead.child.wait()

    done = run_command([ctx.dbt, "debug", "--config-dir"], ctx, step=True)

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(ctx.env["DBT_PROFILES_DIR"])
    assert ctx.dbt_ahead.fate == "exited -9 before the build"
    ctx.dbt_ahead.stop(ctx)
