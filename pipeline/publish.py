"""Write-audit-publish: copy the marts into a new DuckDB file, then rename it into place.

DuckDB allows one writer or many readers per file, never both. Analysts read
`analytics.duckdb`, which no run ever opens: a run writes a new file beside
it, checks it, fsyncs it and `os.replace`s it over the old one. Readers that
have the old file open keep their snapshot (the old inode) and see the new
data when they reconnect; a failed or killed publish leaves the old file
byte-for-byte as it was (at worst a temp file, removed by the next publish).

What is copied is masked: PII columns (tagged `meta: pii` in the model YAML)
are hashed or nulled on the way (privacy/masking.py), the new file gets mode 0640
(ANALYTICS_FILE_MODE) and, with ANALYTICS_ENCRYPTION_KEY, DuckDB's encryption.
Open it with `open_analytics()`, which applies the key when one is configured.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from privacy import PrivacyError, masking
from privacy.masking import open_analytics
from warehouse import fresh
from warehouse.sql import literal, quote

from .steps import test_pause

SCHEMA = "marts"
META_SCHEMA = "meta"
NEW_CATALOG = "analytics_new"  # the temp file's catalog while it is written


class PublishError(Exception):
    """The new file could not be written or did not match the warehouse."""


@dataclass
class Published:
    path: Path
    tables: dict[str, int]
    masked: dict[str, str] = field(default_factory=dict)  # "table.column" -> hash|redact|keep
    encrypted: bool = False
    # Tables in the warehouse's marts that no current model of the project builds.
    leftovers: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Docs:
    """A model's description and its columns' (the dbt YAML's, from the manifest)."""

    description: str = ""
    columns: dict[str, str] = field(default_factory=dict)


def _current_nodes(manifest_path: Path, undeclared: list[str]) -> list[dict[str, Any]]:
    """The manifest nodes of every relation the project's current models and seeds build:
    enabled and not ephemeral, and not downstream of an undeclared source (the pipeline
    does not build those)."""
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        raise PublishError(
            f"no dbt manifest at {manifest_path}: run dbt build (or python -m pipeline run) first"
        ) from None
    children = manifest.get("child_map") or {}
    excluded: set[str] = set()
    frontier = [
        uid
        for uid, source in (manifest.get("sources") or {}).items()
        if source.get("source_name") in undeclared
    ]
    while frontier:
        for child in children.get(frontier.pop(), []):
            if child not in excluded:
                excluded.add(child)
                frontier.append(child)
    return [
        node
        for uid, node in (manifest.get("nodes") or {}).items()
        if node.get("resource_type") in ("model", "seed", "snapshot")
        and (node.get("config") or {}).get("materialized") != "ephemeral"
        and uid not in excluded
    ]


def _relation(node: dict[str, Any]) -> tuple[str, str]:
    return str(node.get("schema", "")).lower(), str(node.get("alias") or node["name"]).lower()


def built_relations(manifest_path: Path, undeclared: list[str]) -> set[tuple[str, str]]:
    """(schema, name), lower-case, of every relation the project's current models build."""
    return {_relation(node) for node in _current_nodes(manifest_path, undeclared)}


def project_marts(manifest_path: Path, undeclared: list[str]) -> dict[str, Docs]:
    """The names in `marts` that the project's current models build, with their docs."""
    marts = {}
    for node in _current_nodes(manifest_path, undeclared):
        schema, name = _relation(node)
        if schema == SCHEMA:
            columns = node.get("columns") or {}
            described = {c: str(col.get("description") or "").strip() for c, col in columns.items()}
            marts[name] = Docs(str(node.get("description") or "").strip(), described)
    return marts


def _comment(con: duckdb.DuckDBPyConnection, target: str, docs: Docs, columns: list[str]) -> None:
    """The model's description on the published table, each column's on its column."""
    if docs.description:
        con.execute(f"comment on table {target} is {literal(docs.description)}")
    described = {name.lower(): text for name, text in docs.columns.items() if text}
    for column in columns:
        if column.lower() in described:
            text = literal(described[column.lower()])
            con.execute(f"comment on column {target}.{quote(column)} is {text}")


def temp_files(analytics: Path) -> list[Path]:
    return sorted(analytics.parent.glob(f".{analytics.name}.*.tmp*"))


def _fsync(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(
    warehouse: Path,
    analytics: Path,
    run_id: str,
    dbt_invocation_id: str | None,
    dlt_load_ids: list[str],
    project_dir: Path | None = None,
    check_kind: str | None = None,
    marts: dict[str, Docs] | None = None,
) -> Published:
    """Copy the project's marts (`marts`, the relations its current models build, with their
    dbt docs, written as the tables' and columns' comments; None: every relation of schema
    `marts`), PII masked, into a new file and swap it in atomically.
    A table of `marts` that is not one of them is left out and listed in `leftovers`.

    `meta.publication` says which run wrote it, from which loads and dbt invocation,
    and which check that build did (full, scoped or none: pipeline/scope.py).

    The new file gets ANALYTICS_FILE_MODE (default 0640) before the rename, and
    is encrypted with ANALYTICS_ENCRYPTION_KEY when that is set (privacy/masking.py).
    """
    project_dir = project_dir or Path(os.environ.get("DBT_PROJECT_DIR", "."))
    try:
        rules = masking.pii_columns(project_dir)
        key, _ = masking.warehouse_hash_key(warehouse)
        masking.file_mode()  # a bad mode fails before any work
    except PrivacyError as exc:
        raise PublishError(str(exc)) from exc
    analytics.parent.mkdir(parents=True, exist_ok=True)
    for stale in temp_files(analytics):  # left by a killed publish; we hold the lock
        stale.unlink(missing_ok=True)
    temp = analytics.parent / f".{analytics.name}.{run_id}.tmp"
    try:
        provenance = [run_id, dbt_invocation_id, dlt_load_ids, check_kind, settings(key)]
        tables, masked, leftovers = _write(warehouse, temp, provenance, rules, key, marts)
        test_pause("publish")
        masking.restrict(temp)
        _fsync(temp)
        os.replace(temp, analytics)
        _fsync(analytics.parent, directory=True)
    finally:
        for leftover in (temp, temp.with_name(temp.name + ".wal")):
            leftover.unlink(missing_ok=True)
    return Published(analytics, tables, masked, masking.encryption_key() is not None, leftovers)


def refresh_fresh(warehouse: Path, analytics: Path) -> int | None:
    """After a publish: the speed layer (warehouse/fresh.py) drops what the snapshot before
    this one holds, or starts against this one; the events dropped (None: no speed layer)."""
    spec = fresh.fresh_spec()
    if spec is None:
        return None
    published = open_analytics(analytics)
    try:
        with duckdb.connect(str(warehouse), read_only=True) as con:
            snapshot = fresh.describe(published, con, spec)
    finally:
        published.close()
    if snapshot is None:
        return None
    store = fresh.store_path(analytics)
    if not store.exists():
        fresh.start(store, spec, snapshot)
        return 0
    return fresh.published(store, spec, snapshot)


def _write(
    warehouse: Path,
    temp: Path,
    provenance: list[Any],
    rules: dict[str, dict[str, masking.PiiColumn]],
    key: bytes,
    marts: dict[str, Docs] | None,
) -> tuple[dict[str, int], dict[str, str], list[str]]:
    con = duckdb.connect()
    encryption = masking.encryption_key()
    try:
        con.execute("set TimeZone = 'UTC'")
        crypto = masking.enable_encrypted_writes(con) if encryption else None
        masking.attach(con, temp, NEW_CATALOG, read_only=False, key=encryption)
        con.execute(f"use {NEW_CATALOG}")
        masking.set_hash_key(con, key)
        con.execute(f"attach {literal(str(warehouse.resolve()))} as wh (read_only)")
        present = [
            r[0]
            for r in con.execute(
                "select table_name from information_schema.tables "
                "where table_catalog = 'wh' and table_schema = ? order by table_name",
                [SCHEMA],
            ).fetchall()
        ]
        names = [n for n in present if marts is None or n.lower() in marts]
        leftovers = [f"{SCHEMA}.{n}" for n in present if n not in names]
        if not names:
            raise PublishError(
                f"the warehouse {warehouse} has no {SCHEMA} tables: run dbt first"
                if marts is None or marts
                else "the project has no marts yet: add a model under models/marts/"
            )
        con.execute(f"create schema {SCHEMA}")
        counts: dict[str, int] = {}
        masked: dict[str, str] = {}
        for name in names:
            source = f"wh.{SCHEMA}.{quote(name)}"
            target = f"{SCHEMA}.{quote(name)}"
            columns = [
                (r[0], r[1])
                for r in con.execute(
                    "select column_name, data_type from information_schema.columns "
                    "where table_catalog = 'wh' and table_schema = ? and table_name = ? "
                    "order by ordinal_position",
                    [SCHEMA, name],
                ).fetchall()
            ]
            chosen = masking.masked_select(source, columns, rules.get(name, {}))
            con.execute(f"create table {target} as {chosen.select}")
            expected = con.execute(f"select count(*) from {source}").fetchone()[0]  # type: ignore[index]
            copied = con.execute(f"select count(*) from {target}").fetchone()[0]  # type: ignore[index]
            if copied != expected:
                raise PublishError(
                    f"{SCHEMA}.{name}: copied {copied} rows, warehouse has {expected}"
                )
            kept = {c for c, action in chosen.applied.items() if action == "keep"}
            leaks = masking.email_columns(con, target, columns, kept)
            if leaks:
                raise PublishError(
                    f"{SCHEMA}.{name}.{leaks[0]} holds email addresses but is not tagged as PII: "
                    "add `config: {meta: {pii: email}}` to the column in its model YAML"
                )
            if marts:
                _comment(con, target, marts[name.lower()], [c for c, _ in columns])
            masking.warn_kept(f"{SCHEMA}.{name}", chosen.applied)
            masked.update({f"{name}.{c}": a for c, a in chosen.applied.items()})
            counts[name] = int(copied)
        con.execute("detach wh")
        con.execute(f"create schema {META_SCHEMA}")
        con.execute(
            f"""create table {META_SCHEMA}.publication as select
                ?::varchar as run_id, ?::varchar as dbt_invocation_id,
                ?::varchar[] as dlt_load_ids, ?::varchar as check_kind, ?::varchar as settings,
                ?::timestamptz as published_at, ?::json as tables, ?::json as pii_masking,
                ?::varchar as encrypted_with""",
            [
                *provenance,
                datetime.now(UTC),
                json.dumps(counts, sort_keys=True),
                json.dumps(masked, sort_keys=True),
                crypto,
            ],
        )
        con.execute(f"checkpoint {NEW_CATALOG}")
    finally:
        con.close()
    return counts, masked, leftovers


def settings(key: bytes) -> str:
    """A digest of what a publish writes with besides the data (the masking key, the
    encryption key, the file mode): a file written under other settings is not current."""
    digest = hashlib.sha256(b"ml-warehouse publish settings\0" + key)
    digest.update(f"\0{masking.encryption_key() or ''}\0{masking.file_mode():o}".encode())
    return digest.hexdigest()


def current_settings(warehouse: Path) -> str:
    return settings(masking.warehouse_hash_key(warehouse)[0])


def publication(analytics: Path) -> dict[str, object] | None:
    """What the published file says about the run that wrote it (None if not published)."""
    if not analytics.exists():
        return None
    con = open_analytics(analytics)
    try:
        cursor = con.execute(f"select * from {META_SCHEMA}.publication")
        names = [d[0] for d in cursor.description]
        row = cursor.fetchone()
    except duckdb.CatalogException:
        return None
    finally:
        con.close()
    return dict(zip(names, row, strict=True)) if row else None
