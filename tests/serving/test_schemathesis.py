"""schemathesis against the running server's own OpenAPI spec: no 5xx, no schema violation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from serving_helpers import Server, start_server, write_analytics

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


@pytest.mark.parametrize("token", [None, "st-token"], ids=["open", "bearer"])
def test_schemathesis_finds_nothing(
    tmp_path: Path, servers: list[Server], token: str | None
) -> None:
    analytics = write_analytics(tmp_path / "analytics.duckdb", "run-st", 500)
    server = start_server(analytics, token=token)
    servers.append(server)
    auth = ["--header", f"Authorization: Bearer {token}"] if token else []
    result = subprocess.run(
        [str(SCHEMATHESIS), "run", f"{server.url}/openapi.json", "--checks", "all"]
        + ["--max-examples", "60", "--seed", "20260101", "--workers", "2"]
        + ["--generation-database", "none", "--no-color", "--report-dir", str(tmp_path / "st")]
        + auth,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    summary = result.stdout[-3000:] + result.stderr[-2000:]
    assert result.returncode == 0, summary
    assert "No issues found" in result.stdout, summary
    assert "Tested: 4" in result.stdout, summary  # /health, /metadata, GET and POST /features
