"""Every auth a real API needs, through dlt's own auth classes, against a real local
server that checks it: a bearer token, an API key in a header or the query, HTTP
basic, and OAuth2 client credentials (a token endpoint, then a bearer token).

Each secret comes from env (`SOURCES__<NAME>__<SECRET>`) or `.dlt/secrets.toml`; a
wrong one is refused by the server and the run fails with one line that holds no secret.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from project import Project, summary

SECRET = "s3cret-9f2c41"
RECORDS = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]


class AuthServer:
    """GET /items answers only a request carrying the secret the way `mode` says;
    POST /oauth/token trades client credentials for a token."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.url = ""
        self.token_requests = 0

    def allowed(self, handler: BaseHTTPRequestHandler) -> bool:
        header = handler.headers.get("Authorization", "")
        query = parse_qs(urlparse(handler.path).query)
        if self.mode == "bearer":
            return header == f"Bearer {SECRET}"
        if self.mode == "api_key_header":
            return handler.headers.get("X-API-Key") == SECRET
        if self.mode == "api_key_query":
            return query.get("key") == [SECRET]
        if self.mode == "http_basic":
            return header == "Basic " + base64.b64encode(f"me:{SECRET}".encode()).decode()
        return header == "Bearer issued-token-1"  # oauth2


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[AuthServer]:
    api = AuthServer(request.param)

    class Handler(BaseHTTPRequestHandler):
        def answer(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if api.allowed(self):
                self.answer(200, RECORDS)
            else:
                self.answer(401, {"error": "unauthorized"})

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length", 0))
            form = parse_qs(self.rfile.read(length).decode())
            api.token_requests += 1
            if form == {
                "client_id": ["warehouse"],
                "client_secret": [SECRET],
                "grant_type": ["client_credentials"],
            }:
                self.answer(200, {"access_token": "issued-token-1", "expires_in": 3600})
            else:
                self.answer(401, {"error": "invalid_client"})

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    api.url = f"http://127.0.0.1:{httpd.server_port}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield api
    finally:
        httpd.shutdown()
        httpd.server_close()


AUTH = {
    "bearer": ('auth = "bearer"', "API_TOKEN", "api_token"),
    "api_key_header": (
        'auth = { type = "api_key", name = "X-API-Key", location = "header" }',
        "API_KEY",
        "api_key",
    ),
    "api_key_query": (
        'auth = { type = "api_key", name = "key", location = "query" }',
        "API_KEY",
        "api_key",
    ),
    "http_basic": ('auth = { type = "http_basic", username = "me" }', "PASSWORD", "password"),
    "oauth2": (
        'auth = { type = "oauth2_client_credentials", client_id = "warehouse", '
        'access_token_url = "{url}/oauth/token" }',
        "CLIENT_SECRET",
        "client_secret",
    ),
}


def project_for(root: Path, mode: str, url: str) -> Project:
    auth = AUTH[mode][0].replace("{url}", url)
    config = (
        f'[sources.api]\nkind = "rest_api"\nbase_url = "{url}"\n{auth}\n'
        '[[sources.api.resources]]\nname = "items"\nprimary_key = "id"\n'
        'endpoint = { path = "items", paginator = "single_page" }\n'
    )
    return Project.create(root, config)


@pytest.mark.parametrize("server", list(AUTH), indirect=True)
def test_each_auth_loads_with_its_secret_and_fails_in_one_line_without_it(
    tmp_path: Path, server: AuthServer
) -> None:
    _, env_suffix, option = AUTH[server.mode]
    project = project_for(tmp_path / "env", server.mode, server.url)

    loaded = project.run("python", "-m", "ingestion", **{f"SOURCES__API__{env_suffix}": SECRET})
    wrong = project.run("python", "-m", "ingestion", **{f"SOURCES__API__{env_suffix}": "nope-1234"})
    missing = project.run("python", "-m", "ingestion")

    assert loaded.returncode == 0, loaded.stderr
    assert summary(loaded.stdout)["api"]["loaded"] == "2"
    assert project.query("select id, name from raw.items order by id") == [("1", "a"), ("2", "b")]
    assert wrong.returncode == 1
    (error,) = [line for line in wrong.stderr.splitlines() if line.startswith("error:")]
    assert "401" in error and SECRET not in wrong.stderr and "nope-1234" not in wrong.stderr
    assert missing.returncode == 1
    assert f"no {option} for the api API: set SOURCES__API__{env_suffix}" in missing.stderr
    # The same secret from .dlt/secrets.toml, the other place secrets live.
    from_file = project_for(tmp_path / "file", server.mode, server.url)
    (from_file.root / ".dlt" / "secrets.toml").write_text(f'[sources.api]\n{option} = "{SECRET}"\n')
    assert from_file.run("python", "-m", "ingestion").returncode == 0
    if server.mode == "oauth2":
        assert server.token_requests >= 2


@pytest.mark.parametrize(
    ("auth", "said"),
    [
        ('auth = "digest"', "sources.api.auth (env SOURCES__API__AUTH) is 'digest'; expected one"),
        (
            'auth = { type = "api_key", nme = "X" }',
            "sources.api.auth.nme is not an option there; its options: type, name, location",
        ),
        ('auth = { type = "http_basic" }', "sources.api.auth.username is required for http_basic"),
    ],
)
def test_a_bad_auth_declaration_is_named(tmp_path: Path, auth: str, said: str) -> None:
    config = (
        f'[sources.api]\nkind = "rest_api"\nbase_url = "http://127.0.0.1:9"\n{auth}\n'
        '[[sources.api.resources]]\nname = "items"\nprimary_key = "id"\n'
        'endpoint = { path = "items", paginator = "single_page" }\n'
    )
    result = Project.create(tmp_path / "p", config).run("python", "-m", "ingestion")
    assert result.returncode == 2
    assert said in result.stderr
