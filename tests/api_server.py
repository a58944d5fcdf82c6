"""`python -m pipeline serve` in a child process on a free 127.0.0.1 port, for any test area."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """`python -m pipeline serve` in a child process; its output is read as it comes (a
    full pipe would stall the server), so a test can wait for a line."""

    process: subprocess.Popen[str]
    url: str
    analytics: Path
    token: str | None
    lines: list[str] = field(default_factory=list)
    _reader: threading.Thread | None = None

    def __post_init__(self) -> None:
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def client(self, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=600, **kwargs)

    def wait_for_log(self, text: str, timeout: float = 300) -> None:
        """Until the server has logged `text` (a deadline far beyond the expected time)."""
        deadline = time.monotonic() + timeout
        while not any(text in line for line in list(self.lines)):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise AssertionError(f"the server did not log {text!r}:\n{''.join(self.lines)}")
            time.sleep(0.02)

    def stop(self) -> str:
        """SIGINT (uvicorn's graceful stop); returns what the server logged."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=600)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._reader is not None:
            self._reader.join(timeout=600)
        return "".join(self.lines)


def start_server(analytics: Path, token: str | None = None, poll: float = 0.05) -> Server:
    """`python -m pipeline serve` on a free port; returns once /health answers."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "SERVE_API_TOKEN"}
    if token:
        env["SERVE_API_TOKEN"] = token
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "serve", "--analytics", str(analytics)]
        + ["--port", str(port), "--poll", str(poll)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    server = Server(process, f"http://127.0.0.1:{port}", analytics, token)
    deadline = time.monotonic() + 300  # a safety net: it answers in seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited {process.returncode}:\n{server.stop()}")
        try:
            if httpx.get(f"{server.url}/health", timeout=1).status_code in (200, 503):
                return server
        except httpx.TransportError:
            time.sleep(0.1)
    log = server.stop()
    raise AssertionError(f"server did not answer on {server.url} within 300 s:\n{log}")
