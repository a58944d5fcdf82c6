"""Erasure (right to be forgotten): every row of a user, in every table, and dlt's archive.

`python -m pipeline forget` calls `erase`, rebuilds the models and republishes;
the digests `erase` adds to the suppression list (privacy/suppression.py) keep
the users out of every later load.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import duckdb

from warehouse.settings import pipelines_dir
from warehouse.sql import quote

from . import PrivacyError, suppression
from .suppression import EMAIL, USER_ID

# Bookkeeping tables that hold no user data (and the erasure's own records).
ERASE_SKIP = {
    ("monitoring", "audit_log"),
    ("monitoring", "suppressed_users"),
    ("monitoring", "privacy_keys"),
    ("monitoring", "pipeline_runs"),
    ("monitoring", "pipeline_backfill_batches"),
    ("raw", "_source_inputs"),  # what each file source last read: folders and digests
}


@dataclass
class Erasure:
    """What `forget` removed: counts only, never the ids or emails."""

    users: int
    emails: int
    rows_deleted: dict[str, int]
    digests: list[str]

    @property
    def total(self) -> int:
        return sum(self.rows_deleted.values())


def canonical_ids(values: list[str]) -> list[str]:
    ids = []
    for value in values:
        text = suppression.canonical(USER_ID, value)
        if text is None or not re.fullmatch(r"[+-]?\d+", text):
            raise PrivacyError(f"--user-id {value!r}: a user id is an integer")
        ids.append(text)
    return sorted(set(ids), key=int)


def _base_tables(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    rows = con.execute(
        "select table_schema, table_name from information_schema.tables "
        "where table_type = 'BASE TABLE' and table_catalog = current_database() "
        "order by 1, 2"
    ).fetchall()
    return [(s, t) for s, t in rows if (s, t) not in ERASE_SKIP and not t.startswith("_dlt_")]


def _columns(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> list[tuple[str, str]]:
    return [
        (r[0], r[1])
        for r in con.execute(
            "select column_name, data_type from information_schema.columns "
            "where table_catalog = current_database() and table_schema = ? and table_name = ? "
            "order by ordinal_position",
            [schema, table],
        ).fetchall()
    ]


def erase(warehouse: Path, user_ids: list[str], audit_id: str | None = None) -> Erasure:
    """Delete every row of these users from every table; add them to the suppression list.

    A row goes when its `user_id` is one of them, when a text column is (or, in
    free text, contains) one of their emails (from every version in raw.users),
    or when a rejected row's payload names their id. Views follow their tables;
    the caller rebuilds the models and republishes.
    """
    ids = canonical_ids(user_ids)
    con = duckdb.connect(str(warehouse))
    try:
        con.execute("set TimeZone = 'UTC'")
        salt = suppression.ensure_salt(con)
        con.execute("set variable suppression_salt = ?", [salt])
        con.execute("create temp table erase_ids as select unnest(?::varchar[]) as id", [ids])
        tables = _base_tables(con)
        id_sql = suppression.canonical_sql(USER_ID, "user_id")
        email_sql = suppression.canonical_sql(EMAIL, "email")
        emails: set[str] = set()
        for schema, table in tables:
            names = {c for c, _ in _columns(con, schema, table)}
            if {"user_id", "email"} <= names:
                rows = con.execute(
                    f"select distinct {email_sql} from {quote(schema)}.{quote(table)} "
                    f"where {id_sql} in (select id from erase_ids) and email is not null"
                ).fetchall()
                emails.update(r[0] for r in rows if r[0])
        con.execute(
            "create temp table erase_emails as select unnest(?::varchar[]) as email",
            [sorted(emails)],
        )
        deleted: dict[str, int] = {}
        con.execute("begin")
        for schema, table in tables:
            conditions = _erase_conditions(_columns(con, schema, table), bool(emails))
            if not conditions:
                continue
            where = " or ".join(f"coalesce({c}, false)" for c in conditions)
            count = con.execute(
                f"delete from {quote(schema)}.{quote(table)} where {where}"
            ).fetchone()[0]  # type: ignore[index]
            if count:
                deleted[f"{schema}.{table}"] = int(count)
        digests = [suppression.digest(USER_ID, i, salt) for i in ids]
        digests += [suppression.digest(EMAIL, e, salt) for e in sorted(emails)]
        pairs = [(USER_ID, d) for d in digests[: len(ids)]] + [
            (EMAIL, d) for d in digests[len(ids) :]
        ]
        con.executemany(
            f"insert or ignore into {suppression.SUPPRESSED_TABLE} "
            "(kind, digest, suppressed_at, audit_id) values (?, ?, current_timestamp, ?)",
            [[k, d, audit_id] for k, d in pairs],
        )
        con.execute("commit")
        con.execute("checkpoint")
    finally:
        con.close()
    return Erasure(len(ids), len(emails), deleted, [d for d in digests[: len(ids)] if d])


def purge_load_packages(warehouse: Path) -> int:
    """Delete the data files of dlt's completed load packages (its archive of what it loaded).

    dlt keeps loaded files (Parquet, JSONL) under
    `<pipelines dir>/<pipeline>/load/loaded/<load id>/completed_jobs/` when told to
    (LOAD__DELETE_COMPLETED_JOBS=false, ingestion.destination) or from loads made
    before it deleted them; nothing reads them again, and they hold what raw held,
    erased users included.
    """
    removed = 0
    for path in pipelines_dir(warehouse).glob("*/load/loaded/*/completed_jobs/*"):
        if path.is_file():
            path.unlink()
            removed += 1
    return removed


def _erase_conditions(columns: list[tuple[str, str]], with_emails: bool) -> list[str]:
    conditions = []
    names = {name for name, _ in columns}
    if "user_id" in names:
        id_sql = suppression.canonical_sql(USER_ID, "user_id")
        conditions.append(f"{id_sql} in (select id from erase_ids)")
    for name, data_type in columns:
        if not data_type.upper().startswith("VARCHAR"):
            continue
        column = quote(name)
        if name == "payload":
            for pattern in (suppression.JSON_USER_ID, suppression.CSV_USER_ID):
                found = f"nullif(regexp_extract({column}, '{pattern}', 1), '')"
                conditions.append(
                    f"{suppression.canonical_sql(USER_ID, found)} in (select id from erase_ids)"
                )
        if with_emails:
            conditions.append(
                f"(contains({column}, '@') and ("
                f"lower(trim({column})) in (select email from erase_emails) or list_has_any("
                f"regexp_extract_all(lower({column}), '{suppression.EMAIL_TOKEN}'), "
                "(select list(email) from erase_emails))))"
            )
    return conditions
