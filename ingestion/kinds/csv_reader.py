"""Reading a `csv` source's files: DuckDB parses, numpy finds where each record starts.

DuckDB's CSV reader is fast and keeps bad rows aside (`store_rejects`), but it
gives no line number for good rows, and the `line` it reports for bad rows counts
records, not physical lines (a quoted field with a newline is one "line" to it).
Raw needs the physical line of every row, so a vectorised scan of the file's
bytes finds each record's start (a newline ends a record only outside quotes) and
the records are lined up with DuckDB's rows, which it returns in file order.
DuckDB reads a file twice: once counting every column's values (which finds
the rejected records, keeping no row), then, once the records line up, as the
rows are loaded, streamed.
When the two disagree (a quote inside an unquoted field, one never closed,
`\\r`-only line endings) or DuckDB cannot read the file, and for UTF-16, the
file is read record by record with Python's csv module instead: slower, but
each bad record is rejected on its own line with its reason and the rest loads.
"""

from __future__ import annotations

import csv
import gzip
import logging
import re
import shutil
import tempfile
import zlib
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from warehouse.sql import quote, registered

from .common import (
    LOADED_AT_COLUMN,
    SourceConfigError,
    check_raw_names,
    is_gzip,
    open_bytes,
    option,
    raw_column_name,
)

# Lineage columns added to every raw row: the row key is `<file>:<line>`.
FILE_COLUMN = "_source_file"
LINE_COLUMN = "_source_line"
ROW_KEY_COLUMN = "_row_key"
_LINEAGE = frozenset({FILE_COLUMN, LINE_COLUMN, ROW_KEY_COLUMN, LOADED_AT_COLUMN})

# A file read record by record (read_records) is kept whole in DuckDB before its
# rows are yielded; beyond this much memory DuckDB spills it to disk (in dlt's
# working folder), so a large file loads in bounded memory.
PARSE_MEMORY_LIMIT = "512MB"

# DuckDB's reject_errors.error_type -> our short reason codes in raw._rejected_rows.
REJECT_REASONS: dict[str, str] = {
    "TOO MANY COLUMNS": "wrong_field_count",
    "MISSING COLUMNS": "wrong_field_count",
    "INVALID ENCODING": "invalid_utf8",
    "UNQUOTED VALUE": "invalid_quoting",
    "INVALID STATE": "invalid_csv",
    "CAST": "cast_error",
}
# A record DuckDB will not read (over its max_line_size): the file is read record by
# record instead, where a field may be up to MAX_FIELD_CHARS.
LONG_RECORD_ERROR = "LINE SIZE OVER MAXIMUM"
# A whole .gz file that does not decompress (damaged, or cut while being copied).
GZIP_REJECT_REASON = "invalid_gzip"
# A whole file whose records we cannot line up with the CSV reader's rows.
FILE_REJECT_REASON = "unreadable_file"
# A whole file whose header lacks the declared key: not this source's export. Other
# missing columns load as empty (a column that disappears from the export).
WRONG_HEADER_REASON = "wrong_header"

# Encodings DuckDB reads without an extension, whose quotes and newlines are single
# bytes the record scan can find; UTF-16 is read record by record (read_records).
ENCODINGS = ("utf-8", "latin-1")
DECLARABLE_ENCODINGS = (*ENCODINGS, "utf-16", "utf-16-le", "utf-16-be")
# read_records: records per insert into the parse table, and the longest field.
RECORDS_BATCH = 50_000
MAX_FIELD_CHARS = 64 * 1024 * 1024

_NEWLINE = 10
_CARRIAGE_RETURN = 13
_LOADED_AT_TYPE = pa.timestamp("us", tz="UTC")
_SCAN_BLOCK = 1 << 20

log = logging.getLogger(__name__)
_UNDECODED = re.compile("[\udc80-\udcff]")  # bytes the encoding could not read (surrogateescape)


@dataclass(frozen=True)
class CsvFormat:
    """How a source's files are written: the `csv` kind's format options."""

    source: str
    delimiter: str = ","
    quote: str = '"'
    encoding: str = "utf-8"
    header: bool = True
    columns: tuple[str, ...] = ()  # expected columns (names after `rename`); others are new
    rename: tuple[tuple[str, str], ...] = ()  # (as in the file, as in raw)
    key: tuple[str, ...] = ()  # columns every file must have (after `rename`)
    null_values: tuple[str, ...] = ()  # texts that mean null (raw holds null)

    def __post_init__(self) -> None:
        for name in ("delimiter", "quote"):
            value = getattr(self, name)
            if len(value.encode()) != 1:
                raise SourceConfigError(
                    f"{option(self.source, name)} must be one character, got {value!r}"
                )
        if self.encoding.lower().replace("_", "-") not in DECLARABLE_ENCODINGS:
            raise SourceConfigError(
                f"{option(self.source, 'encoding')} is {self.encoding!r}; "
                f"expected one of {', '.join(DECLARABLE_ENCODINGS)}"
            )
        check_raw_names(self.source, "columns", self.columns)
        check_raw_names(self.source, "rename", dict(self.rename).values())
        if not all(isinstance(v, str) for v in self.null_values):
            raise SourceConfigError(
                f'{option(self.source, "null_values")} is a list of texts, e.g. ["NA", "NULL"]'
            )
        if not self.header and not self.columns:
            raise SourceConfigError(
                f"{option(self.source, 'header')} is false: list the column names in "
                f"sources.{self.source}.columns"
            )

    def read_csv_sql(self, data: Path) -> tuple[str, list[Any]]:
        """DuckDB's reader of `data` with this fixed dialect (a header-only file is never
        mis-sniffed), as a table expression and its parameters."""
        names = ", names = ?" if not self.header else ""
        nulls = ", nullstr = ?" if self.null_values else ""
        sql = f"""
            read_csv(
                ?, header = ?, all_varchar = true, delim = ?, quote = ?, escape = ?,
                encoding = ?{names}{nulls},
                store_rejects = true, rejects_table = 'rejects', rejects_scan = 'reject_scans'
            )
        """
        params: list[Any] = [str(data), self.header, self.delimiter, self.quote, self.quote]
        params.append(self.python_encoding)
        if not self.header:
            params.append(list(self.columns))
        if self.null_values:  # an empty field stays null too
            params.append(["", *self.null_values])
        return sql, params

    @property
    def python_encoding(self) -> str:
        return self.encoding.lower().replace("_", "-")


class UnreadableFileError(Exception):
    """DuckDB could not read the file, or its records did not line up with DuckDB's rows.

    `reason` is the code the whole file is rejected with in raw._rejected_rows.
    """

    def __init__(self, message: str, reason: str = FILE_REJECT_REASON) -> None:
        super().__init__(message)
        self.reason = reason


def scan_records(
    blocks: Iterable[np.ndarray], quote: int = ord('"')
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Start byte, end byte (before the line terminator) and 1-based line of each record.

    A newline ends a record when an even number of quotes precede it (RFC 4180:
    quotes open and close fields and escape as ""), so newlines inside quoted
    fields stay within their record. The record's line is where it starts.
    `blocks` are the file's bytes in order (`file_blocks`); the counts of
    quotes and newlines before each block carry over, so what stays in memory
    is the records' offsets, not the file or every quote and newline in it.
    """
    terminator_parts, line_parts, cr_parts = [], [], []
    size = quotes_before = newlines_before = 0
    last_byte = 0  # of the previous block
    for chunk in blocks:
        newlines = np.flatnonzero(chunk == _NEWLINE)
        quotes = np.flatnonzero(chunk == quote)
        is_terminator = ((quotes_before + np.searchsorted(quotes, newlines)) & 1) == 0
        terminators = newlines[is_terminator]
        terminator_parts.append(terminators + size)
        # Line of a record = 1 + newlines before its start = 2 + index of its terminator.
        line_parts.append(np.flatnonzero(is_terminator) + newlines_before + 2)
        before = np.where(terminators > 0, chunk[np.maximum(terminators - 1, 0)], last_byte)
        cr_parts.append(before == _CARRIAGE_RETURN)
        size += chunk.size
        quotes_before += quotes.size
        newlines_before += newlines.size
        last_byte = int(chunk[-1]) if chunk.size else last_byte
    terminators = np.concatenate([np.empty(0, np.int64), *terminator_parts])
    starts = np.concatenate(([0], terminators + 1))
    ends = np.concatenate((terminators, [size]))
    lines = np.concatenate([[1], *line_parts])
    # A \r before the record's end belongs to its line terminator (\r\n), not to it,
    # so a blank CRLF line has length 0.
    has_cr = np.concatenate([np.empty(0, bool), *cr_parts, [last_byte == _CARRIAGE_RETURN]])
    if starts[-1] == size:  # the file ends with a newline: no record after it
        starts, ends, lines, has_cr = starts[:-1], ends[:-1], lines[:-1], has_cr[:-1]
    return starts, ends - (has_cr & (ends > starts)), lines


def raw_columns(
    header: list[str],
    file_name: str,
    renames: dict[str, str],
    sent: list[str] | None = None,
) -> list[str]:
    """The header's names (the parsed columns') as raw columns, after `rename`. Two that
    load as one column reject the file (which, named).

    `sent` is the header as the file has it: DuckDB's reader makes repeated names
    unique (`Amount,amount` -> `Amount`, `amount_1`), which would hide a collision.
    """
    given = sent if sent is not None and len(sent) == len(header) else header
    names = [raw_column_name(renames.get(c, c)) for c in given]
    for name in names:
        same = [c for c, n in zip(given, names, strict=True) if n == name]
        if len(same) > 1:
            raise UnreadableFileError(
                f"{file_name}: the header's columns {' and '.join(same)} all load as {name}: "
                "rename all but one (the source's `rename` option)",
                f"duplicate_column_{name}",
            )
    return names


def renamed(header: list[str], names: list[str], source: str) -> str:
    """A query of `source`'s columns (`header`) under their raw names."""
    columns = ", ".join(
        f"{quote(old)} as {quote(new)}" for old, new in zip(header, names, strict=True)
    )
    return f"select {columns} from {source}"


def decompressed(path: Path, folder: Path) -> Path:
    """A .gz export decompressed into `folder` (DuckDB's reader and the record scan then
    read the same bytes); a damaged or cut archive is rejected whole."""
    target = folder / "data.csv"
    try:
        with open_bytes(path) as source, target.open("wb") as sink:
            shutil.copyfileobj(source, sink, _SCAN_BLOCK)
    except (gzip.BadGzipFile, EOFError, zlib.error) as error:  # the disk's errors go up
        raise UnreadableFileError(
            f"{path.name}: not a complete gzip file ({error})", GZIP_REJECT_REASON
        ) from error
    return target


def file_blocks(path: Path, block: int = _SCAN_BLOCK) -> Iterator[np.ndarray]:
    """The file's bytes, `block` at a time (read, not mapped: its pages do not stay
    in the process's memory)."""
    with path.open("rb") as handle:
        while chunk := handle.read(block):
            yield np.frombuffer(chunk, np.uint8)


def record_texts(
    path: Path, spans: Iterable[tuple[int, int]], encoding: str = "utf-8"
) -> list[str]:
    """The records at these (start, end) byte offsets, in file order, as they appeared
    (bad bytes shown as U+FFFD). Read, not mapped: rejects spread over a large file
    would otherwise fault most of it into the process's memory."""
    texts = []
    with path.open("rb") as handle:
        for start, end in spans:
            handle.seek(start)
            texts.append(handle.read(end - start).decode(encoding, errors="replace"))
    return texts


class Read(NamedTuple):
    """What reading a file found: its raw columns, how many good rows, the rejected
    records, each good row's line, and the query that gives the good rows in order."""

    columns: list[str]
    rows_good: int
    rejects: list[dict[str, Any]]
    lines: np.ndarray
    query: str = ""
    params: Sequence[Any] = ()


NOTHING_READ = Read([], 0, [], np.empty(0, np.int64))


@dataclass
class CsvFile:
    """One parsed export: its good rows (a query of DuckDB's) with their lines, and its
    rejects."""

    name: str
    expected: tuple[str, ...]
    read: Read
    con: duckdb.DuckDBPyConnection | None = field(default=None, repr=False)
    spill: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)

    @property
    def rows_good(self) -> int:
        return self.read.rows_good

    @property
    def rejects(self) -> list[dict[str, Any]]:
        return self.read.rejects

    @property
    def lines(self) -> np.ndarray:
        return self.read.lines

    @property
    def rows_read(self) -> int:
        """Records in the file (good + rejected): the summary's `read`."""
        return self.rows_good + len(self.rejects)

    @property
    def new_columns(self) -> list[str]:
        """Columns beyond the declared ones (all of them when none are declared)."""
        return [c for c in self.read.columns if c not in self.expected]

    def batches(self, loaded_at: datetime, chunk_rows: int) -> Iterator[pa.Table]:
        """The good rows as Arrow tables with lineage, `chunk_rows` at a time."""
        if self.con is None or self.rows_good == 0:
            return
        good_rows = self.con.sql(self.read.query, params=self.read.params)
        reader = good_rows.to_arrow_reader(chunk_rows)
        offset = 0
        for batch in reader:
            offset += batch.num_rows
            if offset > self.rows_good:  # the file grew since it was counted
                break
            if batch.num_rows:
                lines = self.lines[offset - batch.num_rows : offset]
                yield self._with_lineage(batch, lines, loaded_at)
        if offset != self.rows_good:
            raise UnreadableFileError(
                f"{self.name}: the file changed while it was read (counted {self.rows_good} "
                "rows, then read another number); nothing of it was loaded: load it again "
                "once it is complete"
            )

    def _with_lineage(
        self, batch: pa.RecordBatch, lines: np.ndarray, loaded_at: datetime
    ) -> pa.Table:
        n = batch.num_rows
        data: dict[str, pa.Array] = {}
        for name in (*self.expected, *self.new_columns):
            if name in batch.schema.names:
                data[name] = batch.column(name).cast(pa.string())
            else:  # a file without this column: the column stays, empty
                data[name] = pa.nulls(n, pa.string())
        file_names = pa.repeat(pa.scalar(self.name, pa.string()), n)
        line_numbers = pa.array(lines, pa.int64())
        data[FILE_COLUMN] = file_names
        data[LINE_COLUMN] = line_numbers
        data[ROW_KEY_COLUMN] = pc.binary_join_element_wise(
            file_names, line_numbers.cast(pa.string()), ":"
        )
        data[LOADED_AT_COLUMN] = pa.repeat(pa.scalar(loaded_at, _LOADED_AT_TYPE), n)
        # dlt takes the raw table's columns from this schema: lineage is never null.
        schema = pa.schema(
            [
                pa.field(name, column.type, nullable=name not in _LINEAGE)
                for name, column in data.items()
            ]
        )
        return pa.Table.from_arrays(list(data.values()), schema=schema)

    def close(self) -> None:
        if self.con is not None:
            self.con.close()
            self.con = None
        if self.spill is not None:
            self.spill.cleanup()
            self.spill = None


SPILL_PREFIX = "csv-parse-"


def read_csv_file(path: Path, fmt: CsvFormat, spill_dir: str | None = None) -> CsvFile:
    """Parse one export and give every good and bad record its physical line.

    DuckDB's reader with the record scan first (fast); a file they cannot line
    up (a stray quote, an unterminated one, `\\r`-only line ends) or DuckDB
    cannot read, and a UTF-16 file, is read record by record instead
    (`read_records`), so its good rows load and each bad record is rejected on
    its own line. DuckDB spills beyond PARSE_MEMORY_LIMIT to a new folder in
    `spill_dir` (the dlt pipeline's working folder, on the warehouse's disk;
    default the system's temporary folder, which may be in memory), removed when
    the file is closed; a gzip file is decompressed there.

    Raises UnreadableFileError for a file that is not this source's (no key
    column, two columns in one) or not a complete gzip file.
    """
    spill = tempfile.TemporaryDirectory(prefix=SPILL_PREFIX, dir=spill_dir)
    con = None
    try:
        data = decompressed(path, Path(spill.name)) if is_gzip(path) else path
        con = duckdb.connect(
            config={"memory_limit": PARSE_MEMORY_LIMIT, "temp_directory": spill.name}
        )
        encoding = utf16_encoding(data) or fmt.python_encoding
        read = None
        if encoding == fmt.python_encoding and encoding in ENCODINGS:
            try:
                read = read_with_duckdb(path, data, fmt, con)
            except UnreadableFileError as error:
                if error.reason != FILE_REJECT_REASON:
                    raise
                log.info("%s: read record by record: %s", path.name, error)
        if read is None:
            read = read_records(path, data, fmt, encoding, con)
    except BaseException:
        if con is not None:
            con.close()
        spill.cleanup()
        raise
    return CsvFile(path.name, fmt.columns, read, con, spill)


def read_with_duckdb(
    path: Path, data: Path, fmt: CsvFormat, con: duckdb.DuckDBPyConnection
) -> Read:
    """DuckDB counts the file's values, the record scan finds each record's line.

    The count reads every column (DuckDB checks the encoding of only the columns
    a query reads) and keeps no row: the good rows are read again, streamed,
    when they are loaded (`CsvFile.batches`), so a file of any size is parsed in
    bounded memory, and in parallel with dlt's writing of the rows before. The
    record scan runs in a thread during the count; its result is taken first, so
    an error reading the file is the operating system's, not DuckDB's.
    """
    read_csv, params = fmt.read_csv_sql(data)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="record-scan") as pool:
        scan = pool.submit(scan_records, file_blocks(data), ord(fmt.quote))
        failure = None
        try:
            described = con.execute(f"describe select * from {read_csv}", params).fetchall()
            header = [row[0] for row in described]
            counts = ", ".join(f"count({quote(c)})" for c in header)
            counted = con.execute(f"select count(*), {counts} from {read_csv}", params).fetchall()
            rows_good = counted[0][0]
            errors = con.execute(
                "select line_byte_position, error_type::varchar from rejects "
                "order by line_byte_position, column_idx"
            ).fetchall()
            for table in ("rejects", "reject_scans"):  # the streamed reading stores its own
                con.execute(f"drop table {table}")
        except duckdb.Error as error:
            failure = error
        starts, ends, lines = scan.result()  # first: the system's error if the file is unreadable
    if not (ends > starts).any():  # empty, or only blank lines
        return NOTHING_READ
    if failure is not None:
        first_line = str(failure).strip().splitlines()[0]
        raise UnreadableFileError(f"{path.name}: {first_line}") from failure
    sent = header_as_sent(data, starts, ends, fmt) if fmt.header else None
    columns = header_columns(header, path.name, fmt, sent)

    if any(error_type == LONG_RECORD_ERROR for _, error_type in errors):
        # DuckDB's record limit (2 MB; raising it costs its buffers 16 times as much)
        raise UnreadableFileError(f"{path.name}: a record longer than DuckDB reads")
    # Which record each error belongs to: the last record starting at or before the
    # error's position (DuckDB's positions can point just past a record's first byte).
    rejected: dict[int, str] = {}
    for position, error_type in errors:
        index = int(np.searchsorted(starts, position, side="right")) - 1
        rejected.setdefault(index, REJECT_REASONS.get(error_type, "invalid_csv"))

    is_data = np.ones(starts.size, dtype=bool)
    is_data[0] = not fmt.header
    if len(columns) > 1:  # DuckDB skips blank lines, except in a one-column file
        is_data &= ends > starts
    is_good = is_data.copy()
    if rejected:
        is_good[np.fromiter(rejected, dtype=np.int64)] = False
    bad_index = sorted(rejected)
    if (
        (fmt.header and 0 in rejected)
        or not is_data[bad_index].all()
        or int(is_good.sum()) != rows_good
    ):
        raise UnreadableFileError(
            f"{path.name}: found {int(is_data.sum())} records but the CSV reader returned "
            f"{rows_good} rows and {len(rejected)} rejected rows"
        )

    spans = ((int(starts[i]), int(ends[i])) for i in bad_index)
    payloads = record_texts(data, spans, fmt.python_encoding)
    rejects = [
        {"location": f"{path.name}:{int(lines[i])}", "reason": rejected[i], "payload": payload}
        for i, payload in zip(bad_index, payloads, strict=True)
    ]
    return Read(
        columns, int(rows_good), rejects, lines[is_good], renamed(header, columns, read_csv), params
    )


def header_as_sent(
    data: Path, starts: np.ndarray, ends: np.ndarray, fmt: CsvFormat
) -> list[str] | None:
    """The header's names as the file writes them (DuckDB's reader renames repeated ones:
    `Amount,amount` -> `Amount`, `amount_1`); None when its first record is no plain line."""
    (text,) = record_texts(data, [(int(starts[0]), int(ends[0]))], fmt.python_encoding)
    try:
        reader = csv.reader([text.lstrip("\ufeff")], delimiter=fmt.delimiter, quotechar=fmt.quote)
        return next(reader, None)
    except csv.Error:
        return None


def header_columns(
    header: list[str], file_name: str, fmt: CsvFormat, sent: list[str] | None = None
) -> list[str]:
    """The parsed columns' raw names; a file without the key is not this source's."""
    columns = raw_columns(header, file_name, dict(fmt.rename), sent)
    missing = [k for k in fmt.key if k not in columns]
    if missing:  # no row can have its key
        expected = ", ".join(fmt.columns) or f"sources.{fmt.source}.key"
        raise UnreadableFileError(
            f"{file_name}: the header has no {missing[0]} column "
            f"(found: {', '.join(columns)[:200]}; expected: {expected})",
            WRONG_HEADER_REASON,
        )
    return columns


def utf16_encoding(data: Path) -> str | None:
    """ "utf-16" when the file starts with a UTF-16 byte order mark."""
    with data.open("rb") as f:
        return "utf-16" if f.read(2) in (b"\xff\xfe", b"\xfe\xff") else None


def read_records(
    path: Path, data: Path, fmt: CsvFormat, encoding: str, con: duckdb.DuckDBPyConnection
) -> Read:
    """Python's csv module, record by record, into table `rows`: the good rows with their
    first line, each bad record rejected at its line with its reason.

    A quote inside an unquoted field is text (`5'11"`); a record whose quotes do
    not close is `invalid_quoting` (`unterminated_quote` at the end of the file);
    a record with too many or too few fields `wrong_field_count`; bytes that are
    not `encoding` `invalid_utf8`. Any line end (`\\n`, `\\r\\n`, `\\r`) ends a record.
    """
    csv.field_size_limit(MAX_FIELD_CHARS)
    try:
        return _read_records(path, data, fmt, encoding, con)
    except UnicodeError as error:  # e.g. "utf-16" without its byte order mark
        raise UnreadableFileError(f"{path.name}: {error}", "invalid_encoding") from error


def _read_records(
    path: Path, data: Path, fmt: CsvFormat, encoding: str, con: duckdb.DuckDBPyConnection
) -> Read:
    lines: list[int] = []
    rejects: list[dict[str, Any]] = []
    columns: list[str] | None = None if fmt.header else list(fmt.columns)
    batch: list[list[str]] = []
    encoding = "utf-8-sig" if encoding == "utf-8" else encoding  # a BOM is no header text
    with data.open(encoding=encoding, errors="surrogateescape", newline="") as handle:
        text = _Remembered(handle)
        reader = csv.reader(text, delimiter=fmt.delimiter, quotechar=fmt.quote, strict=True)
        while True:
            first = reader.line_num + 1
            try:
                record = next(reader)
                reason = None
            except StopIteration:
                break
            except csv.Error as error:
                record = []
                reason = next((r for t, r in _CSV_ERRORS if t in str(error)), "invalid_quoting")
            payload = text.take()
            if reason is None and not record:
                continue  # a blank line
            if reason is None and _UNDECODED.search(payload):
                reason = "invalid_utf8"
            if columns is None:  # the header
                if reason:
                    raise UnreadableFileError(f"{path.name}: the header (line {first}): {reason}")
                columns = record
                renames = dict(fmt.rename)
                names = [raw_column_name(renames.get(c, c)) for c in columns]
                twice = next((n for n in names if names.count(n) > 1), None)
                if twice:
                    same = [c for c, n in zip(columns, names, strict=True) if n == twice]
                    raise UnreadableFileError(
                        f"{path.name}: the header's columns {' and '.join(same)} all load as "
                        f"{twice}: rename all but one (the source's `rename` option)",
                        f"duplicate_column_{twice}",
                    )
                continue
            if reason is None and len(record) != len(columns):
                reason = "wrong_field_count"
            if reason:
                rejects.append(
                    {
                        "location": f"{path.name}:{first}",
                        "reason": reason,
                        "payload": payload.rstrip("\r\n")
                        .encode("utf-8", "surrogateescape")
                        .decode("utf-8", "replace"),
                    }
                )
                continue
            batch.append(record)
            lines.append(first)
            if len(batch) == RECORDS_BATCH:
                _insert_rows(con, columns, batch, fmt.null_values)
                batch = []
    if columns is None:  # an empty file
        return NOTHING_READ._replace(rejects=rejects)
    _insert_rows(con, columns, batch, fmt.null_values)
    header = [row[0] for row in con.execute("describe rows").fetchall()]
    names = header_columns(header, path.name, fmt)
    return Read(
        names, len(lines), rejects, np.array(lines, np.int64), renamed(header, names, "rows")
    )


# Python's csv errors -> reasons (any other: invalid_quoting).
_CSV_ERRORS = (
    ("end of data", "unterminated_quote"),
    ("field larger than field limit", "line_too_long"),
)


def _insert_rows(
    con: duckdb.DuckDBPyConnection,
    columns: list[str],
    rows: list[list[str]],
    null_values: tuple[str, ...] = (),
) -> None:
    """Append records (text) to table `rows`, made on the first call."""
    nulls = {"", *null_values}  # an empty field is null, as DuckDB's reader has it
    table = pa.Table.from_arrays(
        [
            pa.array([None if r[i] in nulls else r[i] for r in rows], pa.string())
            for i in range(len(columns))
        ],
        names=columns,
    )
    with registered(con, "batch_rows", table):
        if con.execute("select count(*) from duckdb_tables() where table_name = 'rows'").fetchone()[
            0
        ]:
            con.execute("insert into rows select * from batch_rows")
        else:
            con.execute("create temp table rows as select * from batch_rows")


class _Remembered:
    """A line iterator that keeps the lines read since the last `take()` (a record's text)."""

    def __init__(self, handle: Iterable[str]) -> None:
        self._lines = iter(handle)
        self._taken: list[str] = []

    def __iter__(self) -> _Remembered:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self._taken.append(line)
        return line

    def take(self) -> str:
        text, self._taken = "".join(self._taken), []
        return text
