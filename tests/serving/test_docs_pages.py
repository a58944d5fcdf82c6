"""/docs and /redoc as a browser shows them: headless Chromium, every request that is not to
the API itself sent to a recording proxy that answers none. The pages must render their
operations with the proxy having seen nothing (FastAPI's default pages load their scripts
from a CDN: blank pages offline)."""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from serving_helpers import Server, start_server

from serving.api import SnapshotStore, create_app

pytestmark = pytest.mark.skipif(
    shutil.which("chromium") is None, reason="needs chromium (.ci/run installs it)"
)


# Chromium calls its vendor's services by itself (clock, accounts, updates, autofill); a
# page's scripts, styles and images never come from these hosts, and Google Fonts count.
BROWSER_OWN = (".google.com", ".gvt1.com", ".googleapis.com")
FONTS = ("fonts.googleapis.com", "fonts.gstatic.com")


@pytest.fixture
def proxy() -> Iterator[list[str]]:
    """An HTTP proxy on 127.0.0.1 that records what a page asks it for and serves nothing."""
    asked: list[str] = []

    class Refuse(BaseHTTPRequestHandler):
        def refuse(self) -> None:
            host = urlsplit(self.path if "://" in self.path else f"//{self.path}").hostname
            if host in FONTS or not (host or "").endswith(BROWSER_OWN):
                asked.append(f"{self.command} {self.path}")
            self.send_error(502)

        do_GET = do_POST = do_HEAD = do_CONNECT = refuse  # noqa: N815 - http.server's names

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    asked.append(f"port {server.server_port}")
    try:
        yield asked
    finally:
        server.shutdown()
        server.server_close()


def rendered(url: str, proxy_port: int, profile: Path) -> str:
    """The page's DOM once its scripts have run (virtual time lets them finish)."""
    done = subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            f"--proxy-server=http://127.0.0.1:{proxy_port}",
            "--virtual-time-budget=15000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_docs_and_redoc_render_their_operations_with_no_request_outside_the_api(
    tmp_path: Path, proxy: list[str], servers: list[Server]
) -> None:
    server = start_server(tmp_path / "analytics.duckdb")  # nothing published: docs still work
    servers.append(server)
    port = int(proxy.pop(0).split()[1])

    swagger = rendered(f"{server.url}/docs", port, tmp_path / "chromium-docs")
    for operation in ("/health", "/metadata", "/features/{user_id}", "/features"):
        assert f'data-path="{operation}"' in swagger
    assert "One user's features" in swagger

    redoc = rendered(f"{server.url}/redoc", port, tmp_path / "chromium-redoc")
    assert "One user's features" in redoc and "The run being served" in redoc
    assert proxy == []


def test_docs_pages_link_under_the_prefix_a_proxy_serves_them_at() -> None:
    """Behind a proxy at /features-api (root_path), every link of the pages carries it."""
    app = create_app(SnapshotStore(Path("missing.duckdb")))
    with TestClient(app, root_path="/features-api") as client:
        for page, links in {
            "/docs": (
                "openapi.json",
                "docs-assets/swagger-ui-bundle.js",
                "docs-assets/swagger-ui.css",
            ),
            "/redoc": ("openapi.json", "docs-assets/redoc.standalone.js"),
        }.items():
            html = client.get(page).text
            for link in links:
                assert f"/features-api/{link}" in html, (page, link)
        assert client.get("/features-api/docs-assets/swagger-ui.css").status_code == 200
