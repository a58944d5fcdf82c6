"""One source's dlt run: extract, normalize and load it into raw, with its report.

Imported only when a source has something to load (`python -m ingestion` asks
ingestion/unchanged.py first): dlt takes about half a second to import.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dlt
import duckdb

from privacy import masking, suppression
from warehouse import fresh
from warehouse.settings import (
    RAW_DATASET,
    analytics_path,
    locked_warehouse_message,
    warehouse_destination,
    warehouse_path,
)
from warehouse.sources import declared_sources

from . import unchanged
from .destination import make_pipeline, prune_load_history
from .kinds import follows, kind_function, kind_module, source_options
from .kinds.common import Flag, stored_name, tables_present
from .rejected import REJECTED_TABLE, drop_replaced_rejects, keep_on_refresh
from .summary import SourceReport


@dataclass
class Declared:
    """A declared source, its options resolved (config, env, secrets, then CLI flags)."""

    name: str
    kind: str
    options: dict[str, Any]
    max_rejected_rate: float

    def open_broker(self) -> Any:
        """The broker a streaming source reads (None for files and the other kinds): held
        by the CLI, which acknowledges it after the load."""
        if not follows(self.kind):
            return None
        return kind_module(self.kind).open_broker(self.name, **self.options)


def declare(name: str, args: argparse.Namespace) -> Declared:
    """The source `name` as declared, with --inbox and --api-url on top (each kind says
    what the flags mean to it: `with_flags` in its module)."""
    kind, options, rate = source_options(name)
    module = kind_module(kind)
    if hasattr(module, "with_flags"):
        inbox = Flag(Path(args.inbox), f"--inbox {args.inbox}") if args.inbox else None
        options = module.with_flags(name, options, inbox, args.api_url)
    return Declared(name, kind, options, rate)


def _make_source(source: Declared, args: argparse.Namespace, backend: Any = None) -> Any:
    """Build the dlt source of a declared source (a streaming one with its broker)."""
    options = dict(source.options)
    if follows(source.kind):
        options["stream_backend"] = backend
        if getattr(args, "follow", False):
            options["max_batch"] = args.max_batch
    return kind_function(source.kind)(source.name, **options)


def _columns(pipeline: dlt.Pipeline, schema_name: str) -> dict[str, set[str]]:
    """The columns of each table in the source's schema, as dlt knows them now."""
    if schema_name not in pipeline.schema_names:
        return {}
    tables = pipeline.schemas[schema_name].tables.items()
    return {name: set(table.get("columns", {})) for name, table in tables}


def _add_last_runs(report: SourceReport, pipeline: dlt.Pipeline, schema_name: str) -> None:
    """Add up the `last_run` counters each resource keeps in dlt state."""
    resources = pipeline.state.get("sources", {}).get(schema_name, {}).get("resources", {})
    for state in resources.values():
        last_run = state.get("last_run", {})
        report.rows_read += last_run.get("rows_read", 0)
        report.rows_collapsed += last_run.get("rows_collapsed", 0)
        report.rows_unchanged += last_run.get("rows_unchanged", 0)
        report.files_rejected += last_run.get("files_rejected", [])
        report.files_ignored += last_run.get("files_ignored", [])
        report.files_refused += last_run.get("files_refused", [])


def _loaded_rows(pipeline: dlt.Pipeline) -> tuple[int, int]:
    """Rows written by this run: (data rows, rejected rows), from dlt's normalize step."""
    info = pipeline.last_trace.last_normalize_info if pipeline.last_trace else None
    counts = info.row_counts if info else {}
    data = sum(n for table, n in counts.items() if not table.startswith("_dlt"))
    rejected = counts.get(REJECTED_TABLE, 0)
    return data - rejected, rejected


def run_source(name: str, args: argparse.Namespace, backend: Any = None) -> SourceReport:
    """Extract, normalize and load one source; errors become a one-line report.

    A broker `backend` (jsonl from Redis) is acknowledged only after
    `pipeline.run` returned, i.e. once the load holding its entries committed.
    Then the rejects gate: above the source's `max_rejected_rate` it fails.
    """
    report = SourceReport(name)
    started = time.monotonic()
    owned = None  # a backend opened here is closed here
    erased = None
    try:
        declared = declare(name, args)
        if backend is None:
            backend = owned = declared.open_broker()
        inputs = Inputs.before_load(declared, args)
        erased = suppression.load(warehouse_path())  # before dlt opens the warehouse
        pipeline = make_pipeline(name)
        recovered = finish_pending(pipeline, name)
        if recovered is None or not getattr(args, "state_synced", False):
            pipeline = state_from_warehouse(pipeline, name)
            args.state_synced = bool(getattr(args, "follow", False))  # --follow: its batches'
            recovered = recovered or []
        source = _make_source(declared, args, backend)
        suppression.apply(source, erased)
        keep_stored_types(pipeline, source)
        before = _columns(pipeline, source.name)
        if args.progress:  # dlt takes the collector on the pipeline, not on run()
            pipeline.collector = dlt.progress.log(10, logger=sys.stderr)
        if args.full_refresh:
            keep_on_refresh(pipeline, source.name)
            # On the pipeline, not run(): the resources see it (kinds.common.raw_to_check).
            pipeline.refresh = "drop_sources"
        load_info = pipeline.run(source)
        if args.full_refresh:
            drop_replaced_rejects(pipeline, source.name, list(load_info.loads_ids))
        report.new_columns = sorted(  # schema evolution: new columns of existing tables
            f"{table}.{column}"
            for table, columns in _columns(pipeline, source.name).items()
            if table in before
            for column in columns - before[table]
            if not column.startswith("_dlt")
        )
        _add_last_runs(report, pipeline, source.name)
        report.rows_loaded, report.rows_rejected = _loaded_rows(pipeline)
        if recovered:  # what the interrupted run left pending, loaded now, counts too
            loaded, rejected = _rows_of_loads(pipeline, source.name, recovered)
            report.rows_loaded += loaded
            report.rows_rejected += rejected
        report.suppressed = sum(erased.dropped.values()) if erased else 0
        report.fresh_events = sync_fresh(pipeline, name)
        if backend is not None:
            report.acked = backend.acknowledge()
        gate = refused_files(report) or rejects_gate(
            report, declared.max_rejected_rate, pipeline, load_info
        )
        if gate:
            report.status, report.error = "failed", gate
        elif inputs is not None:
            inputs.record(pipeline, report.files_ignored)
        try:
            prune_load_history(pipeline)
        except Exception:  # noqa: BLE001 - the load committed; an old record left costs only disk
            logging.getLogger(__name__).debug("load history not pruned", exc_info=True)
    except Exception as exc:  # one line per failed source; the others still load
        if backend is not None:
            backend.discard()
        if args.debug:
            logging.exception("source %s failed", name)
        if any(type(e).__name__ == "SignalReceivedException" for e in _chain(exc)):
            report.status = "interrupted"  # SIGTERM/SIGINT: stopped at a safe point (Interrupt)
        else:
            report.status = "failed"
            report.error = describe_error(exc)
    finally:
        if owned is not None:
            owned.close()
        if erased is not None:
            erased.close()
    report.seconds = time.monotonic() - started
    return report


def sync_fresh(pipeline: dlt.Pipeline, name: str) -> int | None:
    """The speed layer's events after a load of its source (warehouse/fresh.py): written
    before the broker's ack, so a crash in between only makes the next sync do it.
    None when `name` does not feed it."""
    spec = fresh.fresh_spec()
    if spec is None or spec.source != name or warehouse_destination() != "duckdb":
        return None
    analytics = analytics_path(warehouse_path())
    store = fresh.store_path(analytics)
    with pipeline.sql_client() as client:
        con = client.native_connection
        if not store.exists():
            if not analytics.exists():
                return None  # nothing published yet: the first publish holds every event
            published = masking.open_analytics(analytics)
            try:
                snapshot = fresh.describe(published, con, spec)
            finally:
                published.close()
            if snapshot is None:
                return None
            fresh.start(store, spec, snapshot)
        return fresh.sync(con, spec, store).events


@dataclass(frozen=True)
class Inputs:
    """What a source reads, taken before its load: recorded once it loaded, so the next run
    can skip it when nothing changed (ingestion/unchanged.py)."""

    name: str
    kind: str
    digest: str
    probe: dict[str, Any]
    state: str | None  # None: taken once the load is done (a stream's group, drained)
    tables: list[str]

    @classmethod
    def before_load(cls, source: Declared, args: argparse.Namespace) -> Inputs | None:
        """None when the kind cannot say where new data shows, or the warehouse is not
        DuckDB: the source then runs at every run."""
        ask = getattr(kind_module(source.kind), "probe", None)
        inbox = Flag(Path(args.inbox), f"--inbox {args.inbox}") if args.inbox else None
        probe = ask(source.name, source.options, inbox) if ask else None
        if probe is None or warehouse_destination() != "duckdb":
            return None
        state = None
        if not unchanged.after_load(probe):
            state = unchanged.probed_state(probe)
            if state is None:
                return None
        declaration = declared_sources()[source.name]
        digest = unchanged.inputs_digest(source.name, declaration, args.inbox, args.api_url)
        # from the options already resolved, not resolved again through dlt's config
        tables = [t.name for t in kind_module(source.kind).raw_tables(source.name, source.options)]
        return cls(source.name, source.kind, digest, probe, state, tables)

    def record(self, pipeline: dlt.Pipeline, ignored: list[str]) -> None:
        """After the load committed: a record that cannot be written only costs the next
        run its shortcut (that source runs, as without a record), never the load."""
        state = self.state if self.state is not None else unchanged.probed_state(self.probe)
        if state is None:  # a stream with entries again: nothing to skip next time
            return
        try:
            probe = self.probe
            settle = getattr(kind_module(self.kind), "settle_probe", None)
            if settle:  # what the load left in the source's state (an API's cursors)
                probe = settle(probe, pipeline.state.get("sources", {}).get(self.name, {}))
            with pipeline.sql_client() as client:
                unchanged.record(client, self.name, self.digest, probe, state, self.tables, ignored)
        except Exception:  # noqa: BLE001 - see above
            logging.getLogger(__name__).debug(
                "no nothing-new record for %s", self.name, exc_info=True
            )


def finish_pending(pipeline: dlt.Pipeline, name: str) -> list[str] | None:
    """Load what a killed or interrupted run left in dlt's working folder, then go on;
    the load ids it loaded (None: it could not, and was dropped).

    dlt's `pipeline.run` would load the pending packages and return without
    extracting anything new, so one re-run would not catch up; finishing them
    first makes the next run complete the job. A pending load that cannot finish
    (a value the raw column cannot take, loaded before the types were kept) is
    dropped with what it wrote, and its rows are read again (`state_from_warehouse`):
    a run never stays stuck behind it.
    """
    if not pipeline.has_pending_data:
        return []
    print(f"{name}: finishing the load an interrupted run left pending", file=sys.stderr)
    # Killed between normalize's commit (package renamed into load/) and its deletion
    # of the extracted copy ("do not kill this process"): that copy is stale. Normalizing
    # it again fails on the existing package forever, or would load it twice.
    done = {*pipeline.list_normalized_load_packages(), *pipeline.list_completed_load_packages()}
    stale = [i for i in pipeline.list_extracted_load_packages() if i in done]
    if stale:
        extracted = pipeline._get_normalize_storage().extracted_packages
        for load_id in stale:
            extracted.delete_package(load_id)
    try:
        if pipeline.list_extracted_load_packages():
            pipeline.normalize()
        if pipeline.list_normalized_load_packages():
            return list(pipeline.load().loads_ids)
    except Exception as exc:  # noqa: BLE001 - any failure: drop it, read its rows again
        pending = [
            *pipeline.list_normalized_load_packages(),
            *pipeline.list_extracted_load_packages(),
        ]
        _delete_loads(pipeline, name, pending)
        print(
            f"{name}: dropped a pending load that could not finish ({describe_error(exc)}); "
            "its rows are read again",
            file=sys.stderr,
        )
        return None
    return []


def _delete_loads(pipeline: dlt.Pipeline, schema_name: str, load_ids: list[str]) -> None:
    """Delete what these (failed) loads wrote to any table of the source: a load's jobs
    are not one transaction, so one table may hold rows of a load that failed."""
    if not load_ids or pipeline.destination.destination_name == "filesystem":
        return
    tables = (
        pipeline.schemas[schema_name].data_table_names()
        if schema_name in pipeline.schema_names
        else []
    )
    placeholders = ", ".join(["%s"] * len(load_ids))
    with pipeline.sql_client() as client:
        present = tables_present(client)
        for table in [t for t in tables if t in present]:
            client.execute_sql(
                f"delete from {client.make_qualified_table_name(table)}"
                f" where _dlt_load_id in ({placeholders})",
                *load_ids,
            )


def state_from_warehouse(pipeline: dlt.Pipeline, name: str) -> dlt.Pipeline:
    """The source's pipeline with its state (files read, positions, cursors) taken from
    the warehouse, not from what dlt keeps beside it: dlt's working folder is removed
    and state and schema restored from the last load the warehouse committed. A deleted
    or replaced warehouse file is then loaded again from the inputs, exactly once."""
    if holds_warehouse_state(pipeline):
        return pipeline  # restoring it would change nothing (and costs dlt a second or so)
    shutil.rmtree(pipeline.working_dir, ignore_errors=True)
    pipeline = make_pipeline(name)
    pipeline.sync_destination()
    return pipeline


def holds_warehouse_state(pipeline: dlt.Pipeline) -> bool:
    """Whether dlt's working folder holds the very state the warehouse committed last (the
    state of the newest completed load, the one dlt would restore): same version, same
    hash. A load that failed, a warehouse replaced or deleted, answer no."""
    if warehouse_destination() != "duckdb":
        return False
    try:
        local = json.loads(Path(pipeline.working_dir, "state.json").read_text(encoding="utf-8"))
        with duckdb.connect(str(warehouse_path()), read_only=True) as con:
            committed = con.execute(
                f"select s.version, s.version_hash from {RAW_DATASET}._dlt_pipeline_state s"
                f" join {RAW_DATASET}._dlt_loads l on l.load_id = s._dlt_load_id"
                " where s.pipeline_name = ? and l.status = 0 order by l.load_id desc limit 1",
                [pipeline.pipeline_name],
            ).fetchone()
    except (OSError, ValueError, duckdb.Error):
        return False
    return committed == (local.get("_state_version"), local.get("_version_hash"))


def keep_stored_types(pipeline: dlt.Pipeline, source: Any) -> None:
    """A declared type (a database's reflected column, an API's column hint) that differs
    from the type raw already has for that column is not applied.

    Applied, dlt would change its schema's type but not raw's column, and write
    values of the new type into the old column: the load fails, and every run after
    it. Left out, each value that fits the stored type is loaded into it and the
    others into a variant column (`qty__v_text`), which the summary reports as new.
    """
    if source.name not in pipeline.schema_names:
        return
    stored = pipeline.schemas[source.name].tables
    for resource in source.resources.values():
        hints = resource.columns
        table = resource.table_name
        if not isinstance(hints, dict) or not isinstance(table, str) or table not in stored:
            continue
        columns = stored[table].get("columns", {})
        for column, hint in hints.items():
            was = columns.get(stored_name(column), {}).get("data_type")
            if was and hint.get("data_type") not in (None, was):
                hint.pop("data_type")
                hint.pop("precision", None)
                hint.pop("scale", None)


def _rows_of_loads(
    pipeline: dlt.Pipeline, schema_name: str, load_ids: list[str]
) -> tuple[int, int]:
    """(data rows, rejected rows) these loads wrote, counted in the warehouse by load id."""
    tables = (
        pipeline.schemas[schema_name].data_table_names()
        if schema_name in pipeline.schema_names
        else []
    )
    placeholders = ", ".join(["%s"] * len(load_ids))
    counts = {}
    with pipeline.sql_client() as client:
        for table in tables:
            rows = client.execute_sql(
                f"select count(*) from {client.make_qualified_table_name(table)}"
                f" where _dlt_load_id in ({placeholders})",
                *load_ids,
            )
            counts[table] = rows[0][0] if rows else 0
    rejected = counts.pop(REJECTED_TABLE, 0)
    return sum(counts.values()), rejected


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and everything it wraps (dlt wraps step failures)."""
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = getattr(exc, "exception", None) or exc.__cause__ or exc.__context__
    return seen


def describe_error(exc: BaseException) -> str:
    """One line that says what failed and what to do.

    dlt wraps what a source raised in its own step exceptions; the sources raise
    errors whose messages are written for users (and hold no secrets), so the
    first non-dlt exception in the chain is the one to show.
    """
    chain = _chain(exc)
    for err in chain:
        locked = locked_warehouse_message(str(err))
        if locked:
            return locked
        if getattr(err, "errno", None) == errno.ENOSPC or "No space left on device" in str(err):
            return (
                f"no space left on the device of {warehouse_path()} or dlt's working folder; "
                "free some, then run again (the next run first finishes this load)"
            )
    cause = next((e for e in chain if not type(e).__module__.startswith("dlt")), chain[-1])
    first_line = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
    if isinstance(cause, (OSError, ValueError, RuntimeError)) and first_line:
        return first_line
    return f"{type(cause).__name__}: {first_line}"


def refused_files(report: SourceReport) -> str | None:
    """One line when segments changed in the part already loaded (the rest did load)."""
    if not report.files_refused:
        return None
    return (
        f"refused {', '.join(report.files_refused)}: a segment only grows; put new lines "
        f"in a new segment, or reload the source (python -m ingestion {report.name} "
        "--full-refresh); the other segments loaded"
    )


def rejects_gate(
    report: SourceReport, max_rate: float, pipeline: dlt.Pipeline, load_info: Any
) -> str | None:
    """One line when this run rejected more than `max_rate` of what it read (else None).

    The rows are loaded (raw keeps what came, rejects included); failing the
    source stops `python -m pipeline run` before the build, so nothing is
    published from a source that sent mostly garbage.
    """
    if not report.rows_read or report.rows_rejected <= max_rate * report.rows_read:
        return None
    reasons = _rejected_by_reason(pipeline, list(load_info.loads_ids), report.name)
    return (
        f"rejected {report.rows_rejected} of {report.rows_read} records "
        f"({report.rows_rejected / report.rows_read:.1%}), above "
        f"sources.{report.name}.max_rejected_rate = {max_rate:g}: {reasons}; "
        "see raw._rejected_rows"
    )


def _rejected_by_reason(pipeline: dlt.Pipeline, load_ids: list[str], source: str) -> str:
    """`reason in file, file (count)` for the rejects of these loads, the largest first."""
    try:
        with pipeline.sql_client() as client:
            table = client.make_qualified_table_name(REJECTED_TABLE)
            placeholders = ", ".join(["%s"] * len(load_ids))
            rows = client.execute_sql(
                f"select reason, split_part(location, ':', 1) as file, count(*) as n"
                f" from {table} where source = %s and _dlt_load_id in ({placeholders})"
                f" group by 1, 2 order by 3 desc, 2",
                source,
                *load_ids,
            )
    except Exception:  # noqa: BLE001 - the counts are in the summary; reasons are a bonus
        return "reasons in raw._rejected_rows"
    by_reason: dict[str, list[str]] = {}
    for reason, file, count in rows or []:
        by_reason.setdefault(reason, []).append(f"{file} ({count})")
    parts = [f"{reason} in {', '.join(files[:5])}" for reason, files in by_reason.items()]
    return "; ".join(parts[:5])
