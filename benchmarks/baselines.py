"""The baselines `benchmarks/run.py` times, each in a child process of its own.

    python -m benchmarks.baselines duckdb-csv   --inbox DIR --db FILE
    python -m benchmarks.baselines dlt-csv      --inbox DIR --db FILE
    python -m benchmarks.baselines pandas-csv   --inbox DIR --db FILE
    python -m benchmarks.baselines duckdb-json  --inbox DIR --db FILE
    python -m benchmarks.baselines dlt-json     --inbox DIR --db FILE
    python -m benchmarks.baselines dlt-fs-read_csv --inbox DIR --db FILE  (or _duckdb, read_jsonl)
    python -m benchmarks.baselines monitor-probe --target-dir DIR --repeat R

Each prints one JSON line (rows and in-process seconds). Running them as child
processes, like the product's commands, means start-up and peak memory are
measured the same way for both sides.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# The demo events' fields (sources.events.fields in .dlt/config.toml).
EVENT_FIELDS = ("event_id", "user_id", "category", "value", "occurred_at")

# DuckDB's readers as the floors use them: the users exports (bad lines set aside,
# all text) and the event segments (fields as text, bad lines skipped).
READ_USERS = (
    "read_csv(?, header = true, all_varchar = true, delim = ',', quote = '\"', escape = '\"', "
    "store_rejects = true)"
)
READ_EVENTS = (
    "read_json(?, format = 'newline_delimited', columns = {"
    + ", ".join(f"'{key}': 'VARCHAR'" for key in EVENT_FIELDS)
    + "}, ignore_errors = true)"
)


def users_files(inbox: Path) -> list[str]:
    return sorted(str(p) for p in (inbox / "users").glob("*.csv"))


def events_files(inbox: Path) -> str:
    return str(inbox / "events" / "*.jsonl")


def duckdb_csv(inbox: Path, db: Path) -> dict[str, Any]:
    """The floor: DuckDB's own CSV reader into a table, bad lines set aside, all text."""
    import duckdb

    with duckdb.connect(str(db)) as con:
        con.execute(f"create table users as select * from {READ_USERS}", [users_files(inbox)])
        rows = con.execute("select count(*) from users").fetchone()[0]
    return {"rows": rows}


def dlt_csv(inbox: Path, db: Path) -> dict[str, Any]:
    """dlt's floor: DuckDB parses the exports as the floor does, dlt loads the parsed rows.

    What any loader built on dlt pays at least: importing dlt, a pipeline run
    (state, schema, load package) and dlt's Parquet round trip (Arrow -> Parquet
    file -> DuckDB), with no lineage, rejected rows or idempotence checks.
    """
    import duckdb

    rows = duckdb.sql(f"select * from {READ_USERS}", params=[users_files(inbox)]).to_arrow_table()
    return _dlt_load(rows, "users", db)


def _dlt_load(rows: Any, table: str, db: Path) -> dict[str, Any]:
    """Load an Arrow table with dlt into `db` (the product's pipeline settings)."""
    from ingestion.destination import make_pipeline

    make_pipeline(f"floor_{table}", db).run(rows, table_name=table, write_disposition="append")
    return {"rows": rows.num_rows}


def pandas_csv(inbox: Path, db: Path) -> dict[str, Any]:
    """What many projects do: pandas reads the CSV, DuckDB stores the DataFrame."""
    import duckdb
    import pandas as pd

    frames = [
        pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[], on_bad_lines="skip")
        for path in sorted((inbox / "users").glob("*.csv"))
    ]
    users = pd.concat(frames, ignore_index=True)
    with duckdb.connect(str(db)) as con:
        con.register("users_df", users)
        con.execute("create table users as select * from users_df")
        rows = con.execute("select count(*) from users").fetchone()[0]
    return {"rows": rows}


def duckdb_json(inbox: Path, db: Path) -> dict[str, Any]:
    """The floor: DuckDB's JSON reader into a table, fields as text, bad lines skipped."""
    import duckdb

    with duckdb.connect(str(db)) as con:
        con.execute(f"create table events as select * from {READ_EVENTS}", [events_files(inbox)])
        rows = con.execute("select count(*) from events").fetchone()[0]
    return {"rows": rows}


def dlt_json(inbox: Path, db: Path) -> dict[str, Any]:
    """dlt's floor for the events: DuckDB parses the segments, dlt loads the rows (see dlt_csv)."""
    import duckdb

    rows = duckdb.sql(f"select * from {READ_EVENTS}", params=[events_files(inbox)]).to_arrow_table()
    return _dlt_load(rows, "events", db)


def dlt_filesystem(reader: str, inbox: Path, db: Path) -> dict[str, Any]:
    """What a dlt user gets out of the box: dlt's `filesystem` source and one of its readers.

    Set up to survive the sample's bad lines where the reader can (pandas skips
    them, DuckDB ignores them); `read_jsonl` has no such option.
    """
    from dlt.sources.filesystem import filesystem, read_csv, read_csv_duckdb, read_jsonl

    from ingestion.destination import make_pipeline

    folder, glob = ("events", "*.jsonl") if reader == "read_jsonl" else ("users", "*.csv")
    readers = {
        "read_csv": lambda: read_csv(dtype=str, on_bad_lines="skip"),
        "read_csv_duckdb": lambda: read_csv_duckdb(all_varchar=True, ignore_errors=True),
        "read_jsonl": read_jsonl,
    }
    files = filesystem(bucket_url=(inbox / folder).resolve().as_uri(), file_glob=glob)
    pipeline = make_pipeline(f"peer_{reader}", db)
    info = pipeline.run((files | readers[reader]()).with_name(folder))
    info.raise_on_failed_jobs()
    with pipeline.sql_client() as client:
        table = client.make_qualified_table_name(folder)
        rows = client.execute_sql(f"select count(*) from {table}")
    return {"rows": rows[0][0]}


def _median_seconds(work: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def monitor_probe(target_dir: Path, project_dir: Path, repeat: int) -> dict[str, Any]:
    """The monitor's measurement of the largest mart vs plain scans of the same table.

    Uses the monitor's own `measure_table` on the warehouse dbt just built (read
    only, nothing written), so the time is the monitor's work on that table alone.
    """
    import duckdb

    from monitoring.config import Thresholds, project_vars
    from monitoring.manifest import discover, load_manifest, load_run_results
    from monitoring.metrics import DltLoads, measure_table, table_columns
    from warehouse.settings import warehouse_path

    run_results = load_run_results(target_dir)
    targets = discover(load_manifest(target_dir), run_results)
    thresholds = Thresholds(project_vars(project_dir, run_results))
    now = datetime.now(UTC)
    with duckdb.connect(str(warehouse_path()), read_only=True) as con:
        con.execute("set TimeZone = 'UTC'")
        marts = [t for t in targets if t.kind == "model"]
        sizes = {
            t.name: con.execute(f'select count(*) from "{t.schema}"."{t.identifier}"').fetchone()[0]
            for t in marts
        }
        target = max(marts, key=lambda t: sizes[t.name])
        table = f'"{target.schema}"."{target.identifier}"'
        columns = [name for name, _ in table_columns(con, target.schema, target.identifier)]
        # hash() of every column reads every value once (count(col) is answered from
        # statistics when a column has no nulls, so it is no scan).
        every_column = ", ".join(f'"{c}"' for c in columns)
        loads = DltLoads(con)
        measurement = measure_table(con, target, thresholds, now, loads)
        monitor = _median_seconds(
            lambda: measure_table(con, target, thresholds, now, loads), repeat
        )
        count = _median_seconds(
            lambda: con.execute(f"select count(*) from {table}").fetchall(), repeat
        )
        scan = _median_seconds(
            lambda: con.execute(f"select max(hash({every_column})) from {table}").fetchall(),
            repeat,
        )
    return {
        "table": target.name,
        "rows": sizes[target.name],
        "columns": len(columns),
        "monitor_scans": measurement.scans,
        "monitor_seconds": monitor,
        "count_seconds": count,
        "column_scan_seconds": scan,
    }


LOADS: dict[str, Callable[[Path, Path], dict[str, Any]]] = {
    "duckdb-csv": duckdb_csv,
    "dlt-csv": dlt_csv,
    "pandas-csv": pandas_csv,
    "duckdb-json": duckdb_json,
    "dlt-json": dlt_json,
    "dlt-fs-read_csv": lambda inbox, db: dlt_filesystem("read_csv", inbox, db),
    "dlt-fs-read_csv_duckdb": lambda inbox, db: dlt_filesystem("read_csv_duckdb", inbox, db),
    "dlt-fs-read_jsonl": lambda inbox, db: dlt_filesystem("read_jsonl", inbox, db),
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.baselines")
    parser.add_argument("baseline", choices=[*LOADS, "monitor-probe"])
    parser.add_argument("--inbox", type=Path)
    parser.add_argument("--db", type=Path)
    parser.add_argument("--target-dir", type=Path)
    parser.add_argument("--project-dir", type=Path, default=Path("."))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if args.baseline == "monitor-probe":
        result = monitor_probe(args.target_dir, args.project_dir, args.repeat)
    else:
        result = LOADS[args.baseline](args.inbox, args.db)
    result["seconds"] = time.perf_counter() - started
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
