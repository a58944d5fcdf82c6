"""The dbt child of a run, started before the run knows it builds (steps.DbtAhead).

Python takes about 2 s to import dbt, most of a small build. This child starts
with the run and waits; when ingestion writes to the pipe `argv[1]` that it
loads something (warehouse.settings.LOADING_FD_ENV), the child imports dbt
while the load goes on. Then it runs the one command the run writes on stdin,
a JSON line `{"argv": [...], "env": {...}}`, exactly as the `dbt` command
would (same entry point, exit code and output). Its exit code when stdin
closes without a command tells the run what it did: 0 it never imported dbt,
3 it imported dbt in vain.
"""

from __future__ import annotations

import json
import os
import select
import sys

UNUSED, IMPORTED_UNUSED = 0, 3


def main() -> int:
    wake = int(sys.argv[1])
    imported = False
    ready, _, _ = select.select([wake, sys.stdin], [], [])
    if wake in ready and os.read(wake, 1):  # a byte: rows are coming (EOF: none came)
        import dbt.cli.main  # noqa: F401 - imported now, while ingestion loads

        imported = True
    os.close(wake)
    line = sys.stdin.readline()
    if not line:
        return IMPORTED_UNUSED if imported else UNUSED
    request = json.loads(line)
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = request["argv"]
    from dbt.cli.main import cli

    # named as the `dbt` script names itself (click would say `python -m pipeline.dbt_ahead`)
    return cli(prog_name=os.path.basename(sys.argv[0]))


if __name__ == "__main__":
    sys.exit(main())
