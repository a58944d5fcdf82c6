"""`features`: ML training data from the published marts, as of a time or per label.

The feature logic lives in one place, the dbt model `user_features` (var
`features_as_of`). We ask dbt to compile it once with a sentinel as-of time,
then run that SQL with the sentinel replaced by each wanted time, against the
published `analytics.duckdb` attached read-only: exports read audited data,
never take the writer lock and never block (or wait for) a run. Compiling
needs no data, so dbt gets a scratch database of its own, not the warehouse.

With `--spine labels.csv` (user_id, label_ts) every row gets the features
computed from data at or before its own label_ts (one query per distinct
label_ts). Every export writes `<out>.manifest.json`: rows, columns, as-of,
the dlt load ids and dbt invocation behind the published data, the git
commit, and the file's sha256.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from privacy import PrivacyError, masking
from warehouse.sql import literal

from .publish import open_analytics, publication
from .steps import Context, dbt_command, one_line, run_command

MODEL = "user_features"
SENTINEL = "1970-01-01 00:00:07"  # an as-of no real data uses; replaced in the compiled SQL
CATALOG = "pipeline_features"  # the scratch database's name = the catalog in compiled SQL
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class ExportError(Exception):
    """One line for the user; exit 1 (2 for bad input)."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


def parse_as_of(text: str) -> datetime:
    """ISO 8601; `Z`/offsets converted to UTC, naive taken as UTC."""
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise ExportError(
            f"--as-of {text!r}: use an ISO timestamp, e.g. 2026-01-15T00:00:00Z", EXIT_USAGE
        ) from exc
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def compile_features(ctx: Context) -> str:
    """The compiled SQL of user_features with the sentinel as-of (dbt compile, scratch DB)."""
    work = ctx.target_dir / "pipeline_features"
    work.mkdir(parents=True, exist_ok=True)
    with open(work / ".lock", "w") as guard:  # one compile at a time in this folder
        fcntl.flock(guard, fcntl.LOCK_EX)
        env = dict(ctx.env)
        env.update(
            WAREHOUSE_PATH=str(work / f"{CATALOG}.duckdb"),
            DBT_TARGET_PATH=str(work / "target"),
            DBT_LOG_PATH=str(work / "logs"),
        )
        scratch = Context(Path(env["WAREHOUSE_PATH"]), ctx.analytics, ctx.project_dir, work, env)
        vars_ = json.dumps({"features_as_of": SENTINEL.replace(" ", "T") + "Z"})
        command = dbt_command(scratch, "compile", "--select", MODEL, "--vars", vars_)
        done = run_command(command, scratch, capture_stdout=True)  # compile echoes the SQL
        if done.returncode != 0:
            print(done.stdout[-4000:], file=sys.stderr)
            raise ExportError(f"dbt compile --select {MODEL} failed (dbt's output above)")
        compiled = sorted((work / "target" / "compiled").rglob(f"{MODEL}.sql"))
        if not compiled:
            raise ExportError(f"dbt compile wrote no SQL for {MODEL}")
        sql = compiled[0].read_text(encoding="utf-8")
    if f"'{SENTINEL}'" not in sql:
        raise ExportError(f"{MODEL} does not use var features_as_of: cannot compute as-of features")
    return sql


def at(sql: str, as_of: datetime) -> str:
    return sql.replace(f"'{SENTINEL}'", f"'{as_of:%Y-%m-%d %H:%M:%S}'")


def open_published(analytics: Path) -> duckdb.DuckDBPyConnection:
    if not analytics.exists():
        raise ExportError(f"nothing published at {analytics}: run `python -m pipeline run` first")
    try:
        return open_analytics(analytics, read_only=True, alias=CATALOG)
    except duckdb.Error as exc:
        raise ExportError(f"cannot open {analytics}: {one_line(str(exc))}") from exc


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def git_commit(project_dir: Path) -> dict[str, Any]:
    """HEAD and whether the tree has changes (read-only git calls)."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "--no-optional-locks", "-C", str(project_dir), *args],
                capture_output=True,
                text=True,
                timeout=20,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"git_commit": commit, "git_dirty": bool(status) if status is not None else None}


def export(
    ctx: Context, out: Path, as_of: datetime | None = None, spine: Path | None = None
) -> dict[str, Any]:
    """Write the Parquet file and its manifest; returns the manifest."""
    if spine is not None and not spine.exists():
        raise ExportError(f"no spine file {spine}", EXIT_USAGE)
    con = open_published(ctx.analytics)  # fail fast, before the slow compile
    con.close()
    sql = compile_features(ctx)
    published = publication(ctx.analytics) or {}
    out.parent.mkdir(parents=True, exist_ok=True)
    temp = out.with_name(f".{out.name}.tmp")
    con = open_published(ctx.analytics)
    try:
        if spine is None:
            assert as_of is not None
            con.execute(f"create temp table export as select * from ({at(sql, as_of)}) as f")
            extra: dict[str, Any] = {"as_of": f"{as_of:%Y-%m-%dT%H:%M:%SZ}", "spine": None}
            query = "select * from export order by user_id"
        else:
            extra = _spine_export(con, sql, spine)
            query = "select * exclude (_spine_row) from export order by _spine_row"
        query, pii = _masked(con, query)
        encryption = masking.encryption_key()
        options, reader = "format parquet", "read_parquet(?)"
        if encryption:
            masking.enable_encrypted_writes(con)
            # PRAGMA takes no parameters; the derived key is base64 (no quotes to escape).
            con.execute(
                f"pragma add_parquet_key('export_key', '{masking.parquet_key(encryption)}')"
            )
            options += ", encryption_config {footer_key: 'export_key'}"
            reader = "read_parquet(?, encryption_config = {footer_key: 'export_key'})"
        con.execute(f"copy ({query}) to {literal(str(temp))} ({options})")
        columns = con.execute(
            f"select column_name, column_type from (describe select * from {reader})",
            [str(temp)],
        ).fetchall()
        rows = con.execute(f"select count(*) from {reader}", [str(temp)]).fetchone()[0]  # type: ignore[index]
    except PrivacyError as exc:
        temp.unlink(missing_ok=True)
        raise ExportError(str(exc)) from exc
    finally:
        con.close()
    masking.restrict(temp)
    os.replace(temp, out)
    manifest = {
        "file": out.name,
        "rows": int(rows),
        "columns": [{"name": n, "type": t} for n, t in columns],
        "model": MODEL,
        **extra,
        "published_run_id": published.get("run_id"),
        "published_at": str(published.get("published_at")) if published else None,
        "dbt_invocation_id": published.get("dbt_invocation_id"),
        "dlt_load_ids": list(published.get("dlt_load_ids") or []),
        **git_commit(ctx.project_dir),
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "pii_masking": pii,
        "encrypted": bool(encryption),
        "sha256": sha256(out),
    }
    manifest_path = manifest_file(out)
    temp_manifest = manifest_path.with_name(f".{manifest_path.name}.tmp")
    temp_manifest.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    masking.restrict(temp_manifest)
    os.replace(temp_manifest, manifest_path)
    return manifest


def _masked(con: duckdb.DuckDBPyConnection, query: str) -> tuple[str, dict[str, str]]:
    """The export query with the model's PII columns masked, after the email guard.

    The published marts are masked already; this applies the `pii` tags of
    user_features itself (none today) and refuses a column that holds emails.
    """
    rules = masking.pii_columns(Path(os.environ.get("DBT_PROJECT_DIR", "."))).get(MODEL, {})
    con.execute(f"create temp table export_out as {query}")
    columns = [(r[0], r[1]) for r in con.execute("describe export_out").fetchall()]
    chosen = masking.masked_select("export_out", columns, rules)
    if chosen.applied:
        key = os.environ.get(masking.HASH_KEY_ENV)
        if not key and "hash" in chosen.applied.values():
            raise PrivacyError(
                f"{MODEL} has columns to hash: set {masking.HASH_KEY_ENV} for the export"
            )
        masking.set_hash_key(con, (key or "").encode())
        con.execute(f"create temp table export_masked as {chosen.select}")
        relation = "export_masked"
    else:
        relation = "export_out"
    kept = {c for c, a in chosen.applied.items() if a == "keep"}
    leaks = masking.email_columns(con, relation, columns, kept)
    if leaks:
        raise PrivacyError(
            f"the export's column {leaks[0]} holds email addresses but is not tagged as PII: "
            f"add `config: {{meta: {{pii: email}}}}` to it in {MODEL}'s YAML"
        )
    masking.warn_kept(MODEL, chosen.applied)
    return f"select * from {relation}", chosen.applied


def manifest_file(out: Path) -> Path:
    return out.with_name(out.name + ".manifest.json")


def _spine_export(con: duckdb.DuckDBPyConnection, sql: str, spine: Path) -> dict[str, Any]:
    """One row per spine row: user_id, label_ts and the features as of that label_ts."""
    try:
        con.execute(
            f"""create temp table spine as
            select row_number() over () as _spine_row, user_id::bigint as user_id,
                (label_ts::timestamptz at time zone 'UTC')::timestamp as label_ts
            from read_csv({literal(str(spine))}, header = true, all_varchar = true)"""
        )
    except duckdb.Error as exc:
        raise ExportError(
            f"spine {spine}: needs columns user_id,label_ts (ISO timestamps): "
            f"{str(exc).splitlines()[0]}",
            EXIT_USAGE,
        ) from exc
    bad = con.execute("select count(*) from spine where user_id is null or label_ts is null")
    if bad.fetchone()[0]:  # type: ignore[index]
        raise ExportError(f"spine {spine}: empty user_id or label_ts", EXIT_USAGE)
    times = [r[0] for r in con.execute("select distinct label_ts from spine order by 1").fetchall()]
    for i, label_ts in enumerate(times):
        select = (
            f"select s._spine_row, s.user_id, s.label_ts, f.* exclude (user_id) from spine as s "
            f"left join ({at(sql, label_ts)}) as f on f.user_id = s.user_id "
            f"where s.label_ts = ?"
        )
        if i == 0:
            con.execute(f"create temp table export as {select}", [label_ts])
        else:
            con.execute(f"insert into export {select}", [label_ts])
    if not times:
        con.execute(
            f"create temp table export as select s._spine_row, s.user_id, s.label_ts, "
            f"f.* exclude (user_id) from spine as s left join ({at(sql, datetime(1970, 1, 1))}) "
            f"as f on f.user_id = s.user_id"
        )
    bounds = con.execute("select min(label_ts), max(label_ts), count(*) from spine").fetchone()
    return {
        "as_of": None,
        "spine": {
            "file": str(spine),
            "sha256": sha256(spine),
            "rows": int(bounds[2]),  # type: ignore[index]
            "distinct_label_ts": len(times),
            "label_ts_min": str(bounds[0]) if bounds and bounds[0] else None,  # type: ignore[index]
            "label_ts_max": str(bounds[1]) if bounds and bounds[1] else None,  # type: ignore[index]
        },
    }


def command_features(args: argparse.Namespace, ctx: Context) -> int:
    try:
        as_of = parse_as_of(args.as_of) if args.as_of else None
        manifest = export(ctx, args.out, as_of=as_of, spine=args.spine)
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    except PrivacyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except duckdb.Error as exc:
        if args.debug:
            raise
        print(f"error: features export failed: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_FAILED
    when = f"as of {manifest['as_of']}" if manifest["as_of"] else "point-in-time per label_ts"
    print(
        f"wrote {args.out}: {manifest['rows']} rows, {len(manifest['columns'])} columns, {when}\n"
        f"manifest: {manifest_file(args.out)} (sha256 {manifest['sha256'][:12]}...)"
    )
    return EXIT_OK
