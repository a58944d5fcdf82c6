"""PII in what leaves the warehouse: masking, the PII guard, encryption, file modes, erasure.

Classification lives in the dbt YAML, on the columns: `config: {meta: {pii: email}}`.
What `publish` copies into analytics.duckdb (and what `features` exports) is
masked per column by its kind's default action, or by `pii_publish` in the same
meta:

    hash    HMAC-SHA256 with the masking key, as 64 hex chars: equal values stay
            equal, so joins and counts on the column still work (email, phone, ip)
    redact  null (name, address, free text, and any kind not listed)
    keep    the original value: the explicit opt-out, printed as a warning at
            every publish and recorded in meta.publication

The HMAC is computed in DuckDB, vectorised: SHA-256 over (key xor opad) ||
SHA-256((key xor ipad) || value), i.e. RFC 2104 exactly (a test compares it
with Python's `hmac`), not the length-extendable sha256(key || value). The key
is env `PII_HASH_KEY`; without it, a random key is generated once and kept in
the working warehouse (`monitoring.privacy_keys`), which already holds the
originals: hashes are then stable for that warehouse, and nothing secret ever
leaves it. After masking, a guard scans every text column that is not `keep`
for email addresses and refuses to publish if it finds one (an untagged column).

Erasure is in privacy/erasure.py, the suppression list in privacy/suppression.py.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import yaml

from warehouse.sql import literal, quote

from . import PrivacyError, suppression

HASH_KEY_ENV = "PII_HASH_KEY"
HASH_KEY_NAME = "pii_hash_key"
ENCRYPTION_KEY_ENV = "ANALYTICS_ENCRYPTION_KEY"
ALLOW_MBEDTLS_ENV = "ANALYTICS_ENCRYPTION_ALLOW_MBEDTLS"
FILE_MODE_ENV = "ANALYTICS_FILE_MODE"
DEFAULT_FILE_MODE = 0o640

ACTIONS = ("hash", "redact", "keep")
DEFAULT_ACTION = {"email": "hash", "phone": "hash", "ip": "hash", "user_handle": "hash"}
EMAIL_PATTERN = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"


# --- classification ---------------------------------------------------------------------


@dataclass(frozen=True)
class PiiColumn:
    model: str
    column: str
    kind: str
    action: str


def _column_meta(column: dict[str, Any]) -> dict[str, Any]:
    meta = dict(column.get("meta") or {})
    meta.update((column.get("config") or {}).get("meta") or {})
    return meta


def pii_columns(project_dir: Path) -> dict[str, dict[str, PiiColumn]]:
    """model name -> column -> its PII rule, from every models/**/*.yml."""
    found: dict[str, dict[str, PiiColumn]] = {}
    for path in sorted((project_dir / "models").rglob("*.yml")):
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise PrivacyError(f"cannot read PII tags from {path}: {exc}") from exc
        for model in doc.get("models") or []:
            for column in model.get("columns") or []:
                meta = _column_meta(column)
                kind = meta.get("pii")
                if not kind:
                    continue
                action = str(meta.get("pii_publish") or DEFAULT_ACTION.get(str(kind), "redact"))
                if action not in ACTIONS:
                    raise PrivacyError(
                        f"{path}: {model['name']}.{column['name']} has pii_publish {action!r}; "
                        f"use one of {', '.join(ACTIONS)}"
                    )
                found.setdefault(model["name"], {})[column["name"]] = PiiColumn(
                    model["name"], column["name"], str(kind), action
                )
    return found


# --- keys ----------------------------------------------------------------------------


def hash_key(con: duckdb.DuckDBPyConnection | None) -> tuple[bytes, str]:
    """(key, where it came from): env PII_HASH_KEY, else the warehouse's own generated key.

    `con` is a write connection to the warehouse (None: env only).
    """
    configured = os.environ.get(HASH_KEY_ENV)
    if configured:
        return configured.encode(), f"env {HASH_KEY_ENV}"
    if con is None:
        raise PrivacyError(f"no masking key: set {HASH_KEY_ENV}")
    for statement in suppression.DDL:
        con.execute(statement)
    table = suppression.KEYS_TABLE
    row = con.execute(f"select value from {table} where name = ?", [HASH_KEY_NAME]).fetchone()
    if row is None:
        con.execute(
            f"insert into {table} (name, value) values (?, ?)",
            [HASH_KEY_NAME, secrets.token_hex(32)],
        )
        row = con.execute(f"select value from {table} where name = ?", [HASH_KEY_NAME]).fetchone()
    return str(row[0]).encode(), f"generated, in {table}"  # type: ignore[index]


def warehouse_hash_key(warehouse: Path) -> tuple[bytes, str]:
    """The masking key for a warehouse (opens it for writing when the key must be created)."""
    if os.environ.get(HASH_KEY_ENV):
        return hash_key(None)
    con = duckdb.connect(str(warehouse))
    try:
        return hash_key(con)
    finally:
        con.close()


def hmac_pads(key: bytes) -> tuple[bytes, bytes]:
    """RFC 2104's inner and outer padded keys for SHA-256 (block size 64)."""
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = key.ljust(64, b"\0")
    return bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)


def set_hash_key(con: duckdb.DuckDBPyConnection, key: bytes) -> None:
    """Make the key available to `hmac_sql` as session variables (never in the SQL text)."""
    inner, outer = hmac_pads(key)
    con.execute("set variable pii_ipad = ?", [inner])
    con.execute("set variable pii_opad = ?", [outer])


def hmac_sql(expr: str) -> str:
    """HMAC-SHA256 of a text expression as lower-case hex; null stays null."""
    return (
        "sha256(getvariable('pii_opad') || unhex(sha256(getvariable('pii_ipad') "
        f"|| encode(cast({expr} as varchar)))))"
    )


def hmac_hex(key: bytes, value: str) -> str:
    """Python twin of `hmac_sql`: what a masked value is (to join your own data to it)."""
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


@dataclass
class Masking:
    """How one relation's columns are copied out; `applied` lists what was done."""

    select: str
    applied: dict[str, str] = field(default_factory=dict)


def masked_select(
    relation: str, columns: list[tuple[str, str]], rules: dict[str, PiiColumn]
) -> Masking:
    """`select` that copies `relation` with its PII columns masked (needs set_hash_key)."""
    parts = []
    applied = {}
    for name, data_type in columns:
        rule = rules.get(name)
        column = quote(name)
        if rule is None or rule.action == "keep":
            parts.append(column)
        elif rule.action == "hash":
            parts.append(f"{hmac_sql(column)} as {column}")
        else:
            parts.append(f"cast(null as {data_type}) as {column}")
        if rule is not None:
            applied[name] = rule.action
    return Masking(f"select {', '.join(parts)} from {relation}", applied)


def warn_kept(table: str, applied: dict[str, str]) -> list[str]:
    """One warning line per opted-out column (the opt-out is logged at every publish)."""
    lines = [
        f"warning: {table}.{column} is PII published unmasked (pii_publish: keep in its YAML)"
        for column, action in sorted(applied.items())
        if action == "keep"
    ]
    for line in lines:
        print(line, file=sys.stderr)
    return lines


def email_columns(
    con: duckdb.DuckDBPyConnection, relation: str, columns: list[tuple[str, str]], skip: set[str]
) -> list[str]:
    """Text columns of `relation` (not in `skip`) holding at least one email address."""
    texts = [n for n, t in columns if t.upper().startswith("VARCHAR") and n not in skip]
    if not texts:
        return []
    probes = ", ".join(
        f"bool_or(contains({quote(n)}, '@') and regexp_matches({quote(n)}, '{EMAIL_PATTERN}'))"
        for n in texts
    )
    row = con.execute(f"select {probes} from {relation}").fetchone() or ()
    return [n for n, hit in zip(texts, row, strict=True) if hit]


# --- encryption and file modes --------------------------------------------------------


def encryption_key() -> str | None:
    return os.environ.get(ENCRYPTION_KEY_ENV) or None


def enable_encrypted_writes(con: duckdb.DuckDBPyConnection) -> str:
    """Let this connection write encrypted files; returns which crypto library does it.

    DuckDB writes encrypted files only with OpenSSL from its httpfs extension
    (its built-in mbedtls is read-only for encryption: DuckDB calls writing
    with it "not securely encrypted"). Without httpfs the publish fails,
    unless ANALYTICS_ENCRYPTION_ALLOW_MBEDTLS=1 accepts that weaker mode.
    """
    try:
        con.execute("load httpfs")
        return "openssl (httpfs)"
    except duckdb.Error:
        pass
    if os.environ.get(ALLOW_MBEDTLS_ENV, "").strip().lower() in ("1", "true", "yes"):
        con.execute("set force_mbedtls_unsafe = 'true'")
        return "mbedtls (DuckDB: not securely encrypted)"
    raise PrivacyError(
        f"{ENCRYPTION_KEY_ENV} is set but DuckDB's httpfs extension (OpenSSL, needed to write "
        "encrypted files) is not installed: run `INSTALL httpfs` once in DuckDB on a machine "
        f"with internet, or set {ALLOW_MBEDTLS_ENV}=1 to accept DuckDB's built-in mbedtls, "
        "which DuckDB calls not securely encrypted (docs/security.md)"
    )


def attach_sql(path: Path, alias: str, read_only: bool, key: str | None) -> tuple[str, list[str]]:
    """ATTACH statement (and its parameters) for a possibly encrypted file."""
    options = []
    if read_only:
        options.append("read_only")
    if key:
        options.append("encryption_key ?")  # a parameter: the key never sits in SQL text
    suffix = f" ({', '.join(options)})" if options else ""
    return f"attach {literal(str(path))} as {alias}{suffix}", [key] if key else []


def attach(
    con: duckdb.DuckDBPyConnection, path: Path, alias: str, read_only: bool, key: str | None
) -> None:
    """ATTACH a possibly encrypted file; the key is a bound parameter, never in SQL text."""
    sql, params = attach_sql(path, alias, read_only, key)
    con.execute(sql, params)


def open_analytics(
    analytics: Path, read_only: bool = True, alias: str = "analytics"
) -> duckdb.DuckDBPyConnection:
    """A connection to the published file, decrypted with ANALYTICS_ENCRYPTION_KEY when set.

    The file is attached as catalog `alias` and made the default (`use`), so
    `select * from marts.dim_users` works as on a plain `duckdb.connect(path)`.
    Readers (features export, the speed layer, the feature API) open it through here.
    """
    con = duckdb.connect()
    try:
        con.execute("set TimeZone = 'UTC'")
        attach(con, analytics.resolve(), alias, read_only, encryption_key())
        con.execute(f"use {alias}")
    except BaseException:
        con.close()
        raise
    return con


def parquet_key(key: str) -> str:
    """The Parquet footer key derived from the encryption key (base64 of 32 bytes)."""
    import base64

    return base64.b64encode(hashlib.sha256(b"parquet-export|" + key.encode()).digest()).decode()


def file_mode() -> int:
    """ANALYTICS_FILE_MODE (octal, default 0640) for published files and exports."""
    text = os.environ.get(FILE_MODE_ENV, "").strip()
    if not text:
        return DEFAULT_FILE_MODE
    try:
        mode = int(text, 8)
    except ValueError as exc:
        raise PrivacyError(f"{FILE_MODE_ENV}={text!r}: use an octal mode such as 0640") from exc
    if not 0 <= mode <= 0o777:
        raise PrivacyError(f"{FILE_MODE_ENV}={text!r}: use an octal mode such as 0640")
    return mode


def restrict(path: Path) -> None:
    os.chmod(path, file_mode())
