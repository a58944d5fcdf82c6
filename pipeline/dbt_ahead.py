"""The dbt child of a run, started before the run knows it builds (steps.DbtAhead).

Python takes about 2 s to import dbt, and dbt's first command in a process about
1 s more to build its schemas and serializers, most of a small build. This child
starts with the run and waits; when ingestion writes to the pipe `argv[1]` that
it loads something (warehouse.settings.LOADING_FD_ENV), the child imports dbt
and warms it up while the load goes on: a `dbt ls` of the project `argv[2]`
that selects nothing, against a copy of its partial parse (of the target
folder `argv[3]`) in a scratch folder, so that it reads no database and
writes nothing of the project's. Then it runs the one command the run writes on stdin,
a JSON line `{"argv": [...], "env": {...}}`, exactly as the `dbt` command
would (same entry point, exit code and output). Its exit code when stdin
closes without a command tells the run what it did: 0 it never imported dbt,
3 it imported and warmed up dbt in vain, 4 imported dbt in vain (no warm-up).
"""

from __future__ import annotations

import json
import logging
import multiprocessing.util
import os
import select
import shutil
import sys
import tempfile
from pathlib import Path
from typing import NoReturn

UNUSED, WARMED_UP_UNUSED, IMPORTED_UNUSED = 0, 3, 4


def main() -> int:
    wake, project_dir, target_dir = int(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    unused = UNUSED
    ready, _, _ = select.select([wake, sys.stdin], [], [])
    if wake in ready and os.read(wake, 1):  # a byte: rows are coming (EOF: none came)
        unused = WARMED_UP_UNUSED if warm_up(project_dir, target_dir) else IMPORTED_UNUSED
    os.close(wake)
    line = sys.stdin.readline()
    if not line:
        return unused
    request = json.loads(line)
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = request["argv"]
    from dbt.cli.main import cli

    try:
        # named as the `dbt` script names itself (click would say `python -m pipeline.dbt_ahead`)
        cli(prog_name=os.path.basename(sys.argv[0]))
    except SystemExit as done:  # click ends every command so, with dbt's exit code
        leave(done.code)
    return 0


def leave(code: object) -> NoReturn:
    """End the process with dbt's exit code. After a command on DuckDB, without Python's
    own teardown of dbt's objects (about 0.5 s, which the run would wait for): the
    database is closed first, as dbt-duckdb's exit handler would (its checkpoint), then
    the logs and the standard streams are flushed. Any other adapter exits as usual (its
    own exit handlers: Spark's stops its JVM)."""
    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager as duckdb_connections
    except ImportError:
        sys.exit(code)
    # dbt-duckdb keeps its database there; a message for an exit code is printed as usual
    if duckdb_connections._ENV is None or not isinstance(code, int | None):  # noqa: SLF001
        sys.exit(code)
    duckdb_connections._ENV.close()  # noqa: SLF001
    duckdb_connections._ENV = None  # noqa: SLF001
    # dbt's spawn-context locks are named semaphores: multiprocessing's own exit handler
    # unlinks them, else its resource tracker warns of leaked semaphores on stderr
    multiprocessing.util._exit_function()  # noqa: SLF001
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if isinstance(code, int) else 0)


def warm_up(project_dir: str, target_dir: Path) -> bool:
    """Import dbt, and, when the project was parsed before, run a silent `dbt ls` of nothing
    on a scratch copy of that parse (no parse on record: a full parse, too long to pay twice).
    Whether that `dbt ls` ran and passed."""
    from dbt.cli.main import cli

    parsed = target_dir / "partial_parse.msgpack"
    if not parsed.is_file():
        return False
    with tempfile.TemporaryDirectory(prefix="dbt-warm-up-") as scratch:
        shutil.copy(parsed, scratch)
        quiet = ["--log-level", "none", "--log-level-file", "none", "--no-write-json"]
        where = ["--project-dir", project_dir, "--target-path", scratch, "--log-path", scratch]
        try:
            cli(
                ["ls", *where, *quiet, "--select", "tag:ml-warehouse-warm-up"],
                standalone_mode=False,
            )
        except (Exception, SystemExit):  # noqa: BLE001 - a warm-up: the build says what is wrong
            return False
    return True


if __name__ == "__main__":
    sys.exit(main())
