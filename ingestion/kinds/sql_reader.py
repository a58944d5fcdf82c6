"""Config checks, type mapping and run bookkeeping for the `sql_table` kind."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any, ClassVar

import dlt
import sqlalchemy as sa
from dlt.extract.items_transform import ItemTransform
from dlt.sources.sql_database import TableLoader
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from ingestion.rejected import rejected_rows

from .common import (
    LOADED_AT_COLUMN,
    SourceConfigError,
    UnchangedRows,
    option,
    raw_column_name,
    start_run,
)


def check_credentials(source: str, credentials: str) -> str:
    """Fail early and clearly on a bad URL or a missing SQLite file; return the URL unchanged.

    SQLite creates an empty database when asked to open a missing file, which would turn a
    typo into a silent "0 rows". Messages never echo the URL (it may hold a password).
    """
    try:
        url = make_url(credentials)
    except (ArgumentError, ValueError) as exc:
        raise SourceConfigError(
            f"{option(source, 'credentials')} is not a valid SQLAlchemy URL "
            "(e.g. sqlite:///path/to/file.db)"
        ) from exc
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        in_memory = database in ("", ":memory:") or url.query.get("mode") == "memory"
        if not in_memory and not database.startswith("file:"):
            path = Path(database)
            if not path.is_file():
                raise FileNotFoundError(
                    f"database {path} does not exist: set {option(source, 'credentials')}"
                    " to an existing database"
                )
    return credentials


def missing_table_error(source: str, table: str) -> SourceConfigError:
    """The error for a source table that reflection cannot find."""
    return SourceConfigError(f"table {table!r} not found in the database of sources.{source}")


def colliding_columns(url: str, table: str) -> list[str]:
    """The source table's columns that load as one raw column (`userId`, `user_id`), if any."""
    engine = sa.create_engine(url)
    try:
        columns = [c["name"] for c in sa.inspect(engine).get_columns(table)]
    except sa.exc.NoSuchTableError:
        return []  # dlt's reflection says so, with the table named
    finally:
        engine.dispose()
    raw = [raw_column_name(c) for c in columns]
    twice = next((name for name in raw if raw.count(name) > 1), None)
    return [c for c, name in zip(columns, raw, strict=True) if name == twice]


def rejected_table(source: str, table: str, raw_table: str, columns: list[str]) -> Any:
    """A resource that rejects a whole source table whose columns collide: as a CSV file
    whose header has two columns loading as one, nothing of it loads and the reason says
    which columns (select them under other names in a view, and declare the view)."""
    name = raw_column_name(columns[0])

    @dlt.resource(name=raw_table)
    def rejected() -> Iterator[Any]:
        run = start_run(dlt.current.resource_state())
        run["rows_read"], run["rows_rejected"] = 1, 1
        yield rejected_rows(
            source,
            raw_table,
            [
                {
                    "location": table,
                    "reason": f"duplicate_column_{name}",
                    "payload": f"columns {', '.join(map(repr, columns))} all load as {name}",
                }
            ],
        )

    return rejected()


def adapt_type(sql_type: sa.types.TypeEngine[Any]) -> sa.types.TypeEngine[Any] | None:
    """Map reflected types to raw types.

    SQLAlchemy 2.1's Float is no longer a Numeric, so dlt would leave REAL columns untyped;
    declare them as float-returning numerics (double). Naive DATETIMEs are wall times in
    the source's `timezone` (RunRecorder), so the raw column is a timezone-aware
    timestamp like every other raw timestamp.
    """
    if isinstance(sql_type, sa.Float) and not sql_type.asdecimal:
        return sa.Numeric(asdecimal=False)
    if isinstance(sql_type, sa.DateTime) and not sql_type.timezone:
        return sa.DateTime(timezone=True)
    return sql_type


class AfterIncremental(ItemTransform[Any]):
    """A step that dlt places after the incremental filter (plain `add_map` goes before),
    given each chunk of rows whole."""

    # dlt orders steps by affinity: Incremental is 1, `add_limit` is 1.1.
    placement_affinity: ClassVar[float] = 1.05

    def __init__(self, rows_f: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]) -> None:
        super().__init__(rows_f)
        self._rows_f = rows_f

    def __call__(self, item: Any, meta: Any = None) -> Any:
        rows = self._rows_f(item if isinstance(item, list) else [item])
        return rows or None  # every row unchanged: nothing goes on


class RunRecorder:
    """Counts the rows one run reads, stamps them with `_loaded_at` and leaves out those
    raw already holds unchanged.

    The step runs after dlt's incremental filter, so rows re-read at the cursor boundary
    and dropped as already loaded are not counted. `start` is called before the first row
    is read, so a run that reads nothing still records zeros.
    """

    def __init__(self, raw_table: str, zone: tzinfo = UTC) -> None:
        self._last_run: dict[str, int] = {}
        self._loaded_at = datetime.now(UTC)
        self._zone = zone  # of the database's naive datetimes (the source's `timezone`)
        self._unchanged = UnchangedRows(raw_table)

    def start(self) -> None:
        self._loaded_at = datetime.now(UTC)
        self._last_run = start_run(dlt.current.resource_state(), rows_unchanged=0)

    def stamp(self, row: dict[str, Any]) -> dict[str, Any]:
        """Count one row, add `_loaded_at` and place naive datetimes in the source's zone."""
        self._last_run["rows_read"] += 1
        for name, value in row.items():
            if isinstance(value, datetime) and value.tzinfo is None:
                row[name] = value.replace(tzinfo=self._zone)
        row[LOADED_AT_COLUMN] = self._loaded_at
        return row

    def rows(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self._unchanged([self.stamp(row) for row in rows], self._last_run)

    def step(self) -> AfterIncremental:
        """The pipe step over the rows the incremental filter let through."""
        return AfterIncremental(self.rows)

    def loader_class(self) -> type[TableLoader]:
        """A sql_database table loader that starts this recorder when the read begins."""
        recorder = self

        class RecordingTableLoader(TableLoader):
            def load_rows(self, backend_kwargs: dict[str, Any] | None = None) -> Iterator[Any]:
                recorder.start()
                yield from super().load_rows(backend_kwargs)

        return RecordingTableLoader
