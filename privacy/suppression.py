"""The suppression list: users erased by `python -m pipeline forget` never load again.

`forget` stores salted SHA-256 digests of each erased user's id and emails in
`monitoring.suppressed_users` (never the values themselves). Every ingestion
run reads that list first and adds one pipe step to each resource of each
source, after the source's own steps, that drops the rows of those users:
users rows by user_id or email, events and orders by user_id, rejected rows by
a user_id or email found in their payload. So replaying an old CSV export, an
API page or a stream segment cannot bring an erased user back into raw.

The check is vectorised (DuckDB over the Arrow chunk); with an empty list no
step is added at all. The digest uses a random salt kept in the warehouse
(`monitoring.privacy_keys`), not the PII masking key, so rotating that key
never silently empties the suppression list.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import duckdb

from warehouse.sql import registered

if TYPE_CHECKING:  # imported where used: publish and forget read this module without Arrow
    import pyarrow as pa

SCHEMA = "monitoring"
SUPPRESSED_TABLE = f"{SCHEMA}.suppressed_users"
KEYS_TABLE = f"{SCHEMA}.privacy_keys"
SALT_NAME = "suppression_salt"
USER_ID, EMAIL = "user_id", "email"

DDL = [
    f"create schema if not exists {SCHEMA}",
    f"""create table if not exists {KEYS_TABLE} (
        name varchar primary key,
        value varchar not null,
        created_at timestamptz not null default current_timestamp
    )""",
    f"""create table if not exists {SUPPRESSED_TABLE} (
        kind varchar not null,
        digest varchar not null,
        suppressed_at timestamptz not null,
        audit_id varchar,
        primary key (kind, digest)
    )""",
]

_INTEGER = re.compile(r"^[+-]?\d+$")
EMAIL_TOKEN = r"[a-z0-9._%+-]+@[a-z0-9.-]+"
# A user id inside a rejected payload: a JSON "user_id" field, or a CSV line's first field.
JSON_USER_ID = r'"user_id"\s*:\s*"?\s*([+-]?[0-9]+)'
CSV_USER_ID = r'^\s*"?\s*([0-9]+)\s*"?\s*,'


def canonical(kind: str, value: Any) -> str | None:
    """The form that is hashed: ids as plain integers, emails trimmed and lower-case."""
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    if kind == USER_ID:
        return str(int(text)) if _INTEGER.match(text) else text
    return text.lower()


def digest(kind: str, value: Any, salt: str) -> str | None:
    """Python twin of `digest_sql` (tests prove they agree)."""
    text = canonical(kind, value)
    if text is None:
        return None
    return hashlib.sha256(f"{salt}|{kind}|{text}".encode()).hexdigest()


def canonical_sql(kind: str, expr: str) -> str:
    text = f"nullif(trim(cast({expr} as varchar)), '')"
    if kind == USER_ID:
        return (
            f"case when regexp_matches({text}, '^[+-]?[0-9]+$') "
            f"then cast(cast({text} as hugeint) as varchar) else {text} end"
        )
    return f"lower({text})"


def digest_sql(kind: str, expr: str) -> str:
    """SQL for the digest of `expr`; needs `set variable suppression_salt`."""
    return f"sha256(getvariable('suppression_salt') || '|{kind}|' || {canonical_sql(kind, expr)})"


def ensure_salt(con: duckdb.DuckDBPyConnection) -> str:
    """The warehouse's suppression salt, created on first use (write connection)."""
    for statement in DDL:
        con.execute(statement)
    row = con.execute(f"select value from {KEYS_TABLE} where name = ?", [SALT_NAME]).fetchone()
    if row:
        return str(row[0])
    salt = secrets.token_hex(32)
    con.execute(f"insert into {KEYS_TABLE} (name, value) values (?, ?)", [SALT_NAME, salt])
    return salt


def _table_exists(con: duckdb.DuckDBPyConnection, qualified: str) -> bool:
    schema, name = qualified.split(".")
    row = con.execute(
        "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
        [schema, name],
    ).fetchone()
    return bool(row and row[0])


@dataclass
class Suppression:
    """The digests to drop, and a scratch DuckDB to compare chunks against them."""

    salt: str
    digests: set[str]
    dropped: dict[str, int] = field(default_factory=dict)
    _con: duckdb.DuckDBPyConnection | None = field(default=None, repr=False)

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            import pyarrow as pa

            con = duckdb.connect()
            con.execute("set threads = 1")  # one ordered pass: the mask lines up with the rows
            con.execute("set variable suppression_salt = ?", [self.salt])
            con.register("suppressed", pa.table({"digest": sorted(self.digests)}))
            self._con = con
        return self._con

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    def keep_row(self, row: dict[str, Any]) -> bool:
        """Small dict items (orders pages): is this row nobody's erased data?"""
        for kind in (USER_ID, EMAIL):
            if kind in row and digest(kind, row[kind], self.salt) in self.digests:
                return False
        return True

    def hits(self, table: pa.Table) -> pa.ChunkedArray | None:
        """A boolean per row: does it belong to an erased user? None: nothing to check."""
        names = set(table.column_names)
        tests = []
        if USER_ID in names:
            tests.append(f"{digest_sql(USER_ID, USER_ID)} in (select digest from suppressed)")
        if EMAIL in names:
            tests.append(f"{digest_sql(EMAIL, EMAIL)} in (select digest from suppressed)")
        if "payload" in names:
            for pattern in (JSON_USER_ID, CSV_USER_ID):
                found = f"nullif(regexp_extract(payload, '{pattern}', 1), '')"
                tests.append(f"{digest_sql(USER_ID, found)} in (select digest from suppressed)")
            tests.append(
                "exists (select 1 from unnest(regexp_extract_all(lower(payload), "
                f"'{EMAIL_TOKEN}')) as t(e) where {digest_sql(EMAIL, 'e')} "
                "in (select digest from suppressed))"
            )
        if not tests:
            return None
        condition = " or ".join(f"coalesce({t}, false)" for t in tests)
        with registered(self.con, "incoming", table):
            return self.con.sql(f"select ({condition}) as hit from incoming").to_arrow_table()[
                "hit"
            ]

    def filter_table(self, table: pa.Table) -> tuple[pa.Table, int]:
        import pyarrow.compute as pc

        hit = self.hits(table)
        if hit is None:
            return table, 0
        dropped = int(pc.sum(hit).as_py() or 0)
        if not dropped:
            return table, 0
        return table.filter(pc.invert(hit)), dropped

    def count(self, resource: str, rows: int) -> None:
        if rows:
            self.dropped[resource] = self.dropped.get(resource, 0) + rows


def suppress_step(suppression: Suppression, resource: str) -> Any:
    """A dlt pipe step that drops erased users' rows from whatever a resource yields.

    Built here, not at import, so that readers of this module (publish, forget)
    do not pay for importing dlt.
    """
    from dlt.extract.items_transform import ItemTransform

    class SuppressStep(ItemTransform[Any, dict[str, Any]]):
        # After the resources' own steps (incremental 1, counters 1.05, add_limit 1.1).
        placement_affinity: ClassVar[float] = 1.2

        def __init__(self) -> None:
            super().__init__(lambda item: item)

        def __call__(self, item: Any, meta: Any = None) -> Any:
            return _suppress(suppression, resource, item)

    return SuppressStep()


def _suppress(suppression: Suppression, resource: str, item: Any) -> Any:
    """The item without erased users' rows; None when nothing is left."""
    import pyarrow as pa

    if isinstance(item, list):
        kept = [row for row in item if not isinstance(row, dict) or suppression.keep_row(row)]
        suppression.count(resource, len(item) - len(kept))
        return kept or None
    if isinstance(item, pa.RecordBatch):
        item = pa.Table.from_batches([item])
    if isinstance(item, pa.Table):
        kept_table, dropped = suppression.filter_table(item)
        suppression.count(resource, dropped)
        return kept_table if kept_table.num_rows else None
    if isinstance(item, dict):
        if suppression.keep_row(item):
            return item
        suppression.count(resource, 1)
        return None
    return item


def load(warehouse: Path) -> Suppression | None:
    """The warehouse's suppression list; None when it has none (no filtering needed).

    Raises duckdb.Error when the warehouse cannot be read: a run that cannot
    check the list must not load.
    """
    if not warehouse.exists():
        return None
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        if not _table_exists(con, SUPPRESSED_TABLE) or not _table_exists(con, KEYS_TABLE):
            return None
        rows = con.execute(f"select digest from {SUPPRESSED_TABLE}").fetchall()
        if not rows:
            return None
        salt = con.execute(f"select value from {KEYS_TABLE} where name = ?", [SALT_NAME]).fetchone()
    finally:
        con.close()
    if not salt:
        return None
    return Suppression(str(salt[0]), {r[0] for r in rows})


def apply(source: Any, suppression: Suppression | None) -> None:
    """Add the suppression step to every resource of a dlt source (no-op without a list)."""
    if suppression is None:
        return
    for name, resource in source.resources.items():
        resource.add_step(suppress_step(suppression, name))
