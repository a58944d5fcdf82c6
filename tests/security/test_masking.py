"""What leaves the warehouse is masked: analytics.duckdb and feature exports hold no email."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import duckdb
import pytest
from project_env import ROOT
from security_site import HASH_KEY, Secured, sample_email, text_values

from pipeline.publish import publish
from privacy import masking

pytestmark = pytest.mark.slow


def test_hmac_in_sql_is_rfc2104() -> None:
    """The SQL HMAC equals Python's hmac for short, long (> block) and non-ASCII input."""
    con = duckdb.connect()
    for key in (b"k", b"x" * 100, HASH_KEY.encode()):
        masking.set_hash_key(con, key)
        for value in ("alice@example.com", "é@ü.de", ""):
            sql = masking.hmac_sql("?")
            got = con.execute(f"select {sql}", [value]).fetchone()[0]
            assert got == masking.hmac_hex(key, value)
    assert con.execute(f"select {masking.hmac_sql('null')}").fetchone()[0] is None


def test_pii_tags_from_yaml() -> None:
    rules = masking.pii_columns(Path(__file__).resolve().parents[2])
    users = rules["dim_users"]
    assert {c: (r.kind, r.action) for c, r in users.items()} == {
        "name": ("name", "redact"),
        "email": ("email", "hash"),
    }
    assert "user_features" not in rules  # no PII column among the ML features


def test_published_file_has_no_email(secured: Secured) -> None:
    user_id, email = sample_email(secured.warehouse)
    # The working warehouse keeps the original, in its values and in its bytes.
    assert secured.query(
        secured.warehouse, f"select count(*) from raw.users where email = '{email}'"
    )
    assert email.encode() in secured.warehouse.read_bytes()
    # The published file: neither in any value nor anywhere in the file.
    values = text_values(secured.analytics)
    assert values and not [v for v in values if email in v[2]]
    assert not [v for v in values if "@" in v[2]]  # no email at all
    assert email.encode() not in secured.analytics.read_bytes()
    # The hash is HMAC-SHA256 with the configured key: stable, so joins still work.
    (hashed, name), *_ = secured.query(
        secured.analytics, f"select email, name from marts.dim_users where user_id = {user_id}"
    )
    assert hashed == masking.hmac_hex(HASH_KEY.encode(), email) and name is None
    (meta,) = secured.query(secured.analytics, "select pii_masking from meta.publication")
    assert json.loads(meta[0]) == {"dim_users.email": "hash", "dim_users.name": "redact"}
    assert stat.S_IMODE(secured.analytics.stat().st_mode) == 0o640


def test_hashes_stable_across_publishes(
    secured_copy: Secured, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second publish gives the same hashes; a generated key (no env) is kept and reused."""
    site = secured_copy
    before = site.query(site.analytics, "select user_id, email from marts.dim_users order by 1")
    monkeypatch.setenv("PII_HASH_KEY", HASH_KEY)
    publish(site.warehouse, site.analytics, "again", None, [], ROOT)
    after = site.query(site.analytics, "select user_id, email from marts.dim_users order by 1")
    assert after == before
    monkeypatch.delenv("PII_HASH_KEY")
    monkeypatch.setenv("ANALYTICS_FILE_MODE", "0600")
    publish(site.warehouse, site.analytics, "generated-1", None, [], ROOT)
    first = site.query(site.analytics, "select user_id, email from marts.dim_users order by 1")
    publish(site.warehouse, site.analytics, "generated-2", None, [], ROOT)
    second = site.query(site.analytics, "select user_id, email from marts.dim_users order by 1")
    assert first == second != before  # another key, stable for this warehouse
    assert stat.S_IMODE(site.analytics.stat().st_mode) == 0o600


def test_keep_opt_out_is_explicit_and_logged(
    secured_copy: Secured, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`pii_publish: keep` publishes the column as is, with a warning and a record in meta."""
    project = tmp_path / "project"
    (project / "models").mkdir(parents=True)
    (project / "models" / "m.yml").write_text(
        "models:\n  - name: dim_users\n    columns:\n"
        "      - name: email\n        config: {meta: {pii: email, pii_publish: keep}}\n"
        "      - name: name\n        config: {meta: {pii: name}}\n"
    )
    site = secured_copy
    done = publish(site.warehouse, site.analytics, "optout", None, [], project)
    assert done.masked == {"dim_users.email": "keep", "dim_users.name": "redact"}
    err = capsys.readouterr().err
    assert "warning: marts.dim_users.email is PII published unmasked" in err
    _, email = sample_email(site.warehouse)
    assert (
        site.query(site.analytics, f"select count(*) from marts.dim_users where email = '{email}'")[
            0
        ][0]
        == 1
    )


def test_untagged_email_column_refuses_to_publish(secured_copy: Secured, tmp_path: Path) -> None:
    """The guard: a column holding emails without a `pii` tag stops the publish."""
    project = tmp_path / "empty"
    (project / "models").mkdir(parents=True)
    site = secured_copy
    before = site.analytics.read_bytes()
    from pipeline.publish import PublishError

    with pytest.raises(PublishError, match=r"marts\.dim_users\.email holds email addresses"):
        publish(site.warehouse, site.analytics, "untagged", None, [], project)
    assert site.analytics.read_bytes() == before  # the old file stays


def test_features_export_has_no_email(secured: Secured, tmp_path: Path) -> None:
    out = tmp_path / "features.parquet"
    done = secured.run(
        "-m", "pipeline", "features", "--as-of", "2026-02-02T00:00:00Z", "--out", str(out)
    )
    assert done.returncode == 0, done.stderr[-2000:]
    _, email = sample_email(secured.warehouse)
    assert email.encode() not in out.read_bytes()
    con = duckdb.connect()
    columns = con.execute(
        "select column_name from (describe select * from read_parquet(?)) "
        "where column_type = 'VARCHAR'",
        [str(out)],
    ).fetchall()
    for (column,) in columns:
        hits = con.execute(
            f"select count(*) from read_parquet(?) where contains(\"{column}\", '@')", [str(out)]
        ).fetchone()[0]
        assert hits == 0, column
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    manifest = json.loads(out.with_name(out.name + ".manifest.json").read_text())
    assert manifest["encrypted"] is False and manifest["pii_masking"] == {}
