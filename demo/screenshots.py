"""`make screenshots`: the pictures in docs/assets/, taken with headless Chromium from what
a fresh `make run` leaves (data/ and target/quality_report.html):

- api-docs.png: the feature API's /docs page (`python -m pipeline serve` on 127.0.0.1);
- quality-report.png: the first screen of the quality report;
- dagster-asset-graph.png: the lineage of marts/user_features in the Dagster UI, after a
  Dagster run of every asset on a copy of data/ (make run's warehouse stays as it is).

Needs the dagster extra (.venv-dagster) and `chromium`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from demo.api import serve

ASSETS = Path("docs/assets")
DATA = Path("data")
REPORT = Path("target/quality_report.html")
SERVING_PYTHON = Path(".venv/bin/python")
TOKEN = "demo-token"
CHROMIUM_FLAGS = (
    *("--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run"),
    *("--disable-background-networking", "--disable-component-update", "--disable-sync"),
)
# Two lineage views, each narrow enough to read at page width: a raw table with the models
# that read it, and a mart with the models it is built from.
GRAPH_PAGES = {
    "dagster-source-lineage.png": "/assets/users/users?view=lineage&lineageScope=downstream"
    "&lineageDepth=1",
    "dagster-mart-lineage.png": "/assets/marts/dim_users?view=lineage&lineageScope=upstream"
    "&lineageDepth=2",
}
# The graph's box once every node shows its live data (no "Loading..." left), else null.
GRAPH_BOX = """(() => {
  if (document.body.innerText.includes('Loading')) return null;
  const boxes = Array.from(document.querySelectorAll('svg foreignObject'))
    .map(e => e.getBoundingClientRect()).filter(r => r.width > 0);
  const left = Math.min(...boxes.map(r => r.left));
  const top = Math.min(...boxes.map(r => r.top));
  const right = Math.max(...boxes.map(r => r.right));
  const bottom = Math.max(...boxes.map(r => r.bottom));
  return [left, top, right - left, bottom - top];
})()"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, timeout: float, body: bytes | None = None) -> Any:
    """GET (or POST `body` as JSON to) `url` until it answers with JSON."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            request = urllib.request.Request(
                url, data=body, headers={"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


async def graph_shot(page_url: str, devtools: int, out: Path) -> None:
    """The asset graph's own box on `page_url`, once its nodes are drawn, at twice the scale."""
    import websockets  # the dagster extra brings it (uvicorn[standard])

    targets = wait_for(f"http://127.0.0.1:{devtools}/json", 30)
    page = next(t for t in targets if t["type"] == "page")
    async with websockets.connect(page["webSocketDebuggerUrl"], max_size=2**27) as ws:
        counter = 0

        async def call(method: str, **params: Any) -> dict[str, Any]:
            nonlocal counter
            counter += 1
            await ws.send(json.dumps({"id": counter, "method": method, "params": params}))
            while True:
                message = json.loads(await ws.recv())
                if message.get("id") == counter:
                    return message.get("result", {})

        async def graph_box() -> list[float] | None:
            found = await call("Runtime.evaluate", expression=GRAPH_BOX, returnByValue=True)
            return found.get("result", {}).get("value")

        await call("Page.navigate", url=page_url)
        deadline, last = time.monotonic() + 90, None
        while True:  # drawn when the box stops changing: the nodes and their live data are in
            box = await graph_box()
            if box and box == last:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"no asset graph drawn on {page_url}")
            last = box
            await asyncio.sleep(2)
        left, top, width, height = box
        clip = {"x": left - 16, "y": top - 16, "width": width + 32, "height": height + 32}
        shot = await call(
            "Page.captureScreenshot",
            format="png",
            clip={**clip, "scale": 2},
            captureBeyondViewport=True,
        )
        out.write_bytes(base64.b64decode(shot["data"]))


def page_shot(url: str, out: Path, width: int, height: int) -> None:
    """The first screen of `url` (its scripts run first), at twice the scale."""
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                "chromium",
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                f"--window-size={width},{height}",
                "--force-device-scale-factor=2",
                "--virtual-time-budget=15000",
                f"--screenshot={out.resolve()}",
                url,
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )


@contextmanager
def started(command: list[str], env: dict[str, str], ready: str) -> Iterator[None]:
    """A server of ours for the `with` block, once `ready` answers."""
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                wait_for(ready, 1)
                break
            except OSError:
                if process.poll() is not None:
                    error = process.stderr.read().decode() if process.stderr else ""
                    raise RuntimeError(f"{command[0]} stopped: {error[-2000:]}") from None
                if time.monotonic() > deadline:
                    raise
        yield
    finally:
        process.terminate()
        process.wait(timeout=60)


def api_docs(assets: Path) -> list[Path]:
    """The API runs in the project's .venv (the serving extra; Dagster's venv has none)."""
    out = assets / "api-docs.png"
    port = free_port()
    python = SERVING_PYTHON if SERVING_PYTHON.exists() else Path(sys.executable)
    serve_api = [str(python), "-m", "pipeline", "serve", "--port", str(port)]
    serve_api += ["--analytics", str(DATA / "analytics.duckdb")]
    with started(serve_api, dict(os.environ), f"http://127.0.0.1:{port}/health"):
        page_shot(f"http://127.0.0.1:{port}/docs", out, 1000, 900)
    return [out]


def quality_report(assets: Path) -> list[Path]:
    out = assets / "quality-report.png"
    page_shot(REPORT.resolve().as_uri(), out, 1100, 820)
    return [out]


def dagster_graph(assets: Path) -> list[Path]:
    """A Dagster run of every asset on a copy of data/, then its lineage views in the UI."""
    with tempfile.TemporaryDirectory() as tmp, serve(DATA / "inbox", token=TOKEN) as orders_api:
        work = Path(tmp)
        shutil.copy2(DATA / "warehouse.duckdb", work / "warehouse.duckdb")
        (work / "home").mkdir()
        (work / "home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        env = {
            **os.environ,
            "WAREHOUSE_PATH": str(work / "warehouse.duckdb"),
            "DBT_TARGET_PATH": str(work / "target"),
            "DBT_LOG_PATH": str(work / "logs"),
            "DAGSTER_HOME": str(work / "home"),
            "SOURCES__ORDERS__API_TOKEN": TOKEN,
        }
        location = ("-m", "orchestration.definitions")
        config = {"resources": {"warehouse": {"config": {"api_url": orders_api}}}}
        subprocess.run(
            [beside("dagster"), "asset", "materialize", "--select", "*", *location]
            + ["--config-json", json.dumps(config)],
            env=env,
            check=True,
            capture_output=True,
            timeout=900,
        )
        port, devtools = free_port(), free_port()
        webserver = [beside("dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), *location]
        with started(webserver, env, f"http://127.0.0.1:{port}/server_info"):
            graphql = f"http://127.0.0.1:{port}/graphql"
            wait_for(graphql, 60, json.dumps({"query": "mutation { setNuxSeen }"}).encode())
            browser = [
                "chromium",
                *CHROMIUM_FLAGS,
                f"--user-data-dir={work / 'chromium'}",
                "--window-size=2400,1800",
                f"--remote-debugging-port={devtools}",
                "about:blank",
            ]
            with started(browser, env, f"http://127.0.0.1:{devtools}/json/version"):
                for file, page in GRAPH_PAGES.items():
                    url = f"http://127.0.0.1:{port}{page}"
                    asyncio.run(graph_shot(url, devtools, assets / file))
    return [assets / file for file in GRAPH_PAGES]


def beside(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


SHOTS = {"api": api_docs, "report": quality_report, "dagster": dagster_graph}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.screenshots", description=__doc__)
    parser.add_argument("shots", nargs="*", help=f"any of {', '.join(SHOTS)} (default: all)")
    args = parser.parse_args(argv)
    if unknown := [name for name in args.shots if name not in SHOTS]:
        parser.error(f"no screenshot {unknown[0]!r}: choose from {', '.join(SHOTS)}")
    if not shutil.which("chromium"):
        print("chromium is not installed (apt-get install chromium)", file=sys.stderr)
        return 2
    missing = [p for p in (DATA / "analytics.duckdb", REPORT) if not p.exists()]
    if missing:
        print(f"{missing[0]} is missing: run `make run` first", file=sys.stderr)
        return 2
    for name in args.shots or SHOTS:
        for written in SHOTS[name](ASSETS):
            print(f"wrote {written}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
