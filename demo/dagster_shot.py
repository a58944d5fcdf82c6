"""`make dagster-shot`: docs/assets/dagster-asset-graph.png, the asset graph of this project
in the Dagster UI, taken with headless Chromium.

Starts `dagster-webserver` on 127.0.0.1 (a throwaway DAGSTER_HOME), opens its
asset lineage page in Chromium driven over the DevTools protocol, expands every
group (the UI's Alt+E), zooms out to fit, and captures the graph's own box at
twice the page's scale. Needs the dagster extra (.venv-dagster) and `chromium`.
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
from pathlib import Path
from typing import Any

GRAPH_BOX = """(() => {
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


async def capture(page_url: str, devtools: int, out: Path) -> None:
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

        await call("Page.navigate", url=page_url)
        await asyncio.sleep(10)  # the UI loads the code location's graph
        for kind in ("rawKeyDown", "keyUp"):  # Alt+E: expand all groups
            await call(
                "Input.dispatchKeyEvent",
                type=kind,
                modifiers=1,
                key="e",
                code="KeyE",
                windowsVirtualKeyCode=69,
            )
        await asyncio.sleep(3)
        for _ in range(2):  # Ctrl+wheel: zoom out until the graph fits
            await call(
                "Input.dispatchMouseEvent",
                type="mouseWheel",
                x=1100,
                y=700,
                deltaX=0,
                deltaY=120,
                modifiers=2,
            )
            await asyncio.sleep(0.3)
        await asyncio.sleep(2)
        found = await call("Runtime.evaluate", expression=GRAPH_BOX, returnByValue=True)
        left, top, width, height = found["result"]["value"]
        clip = {"x": left - 16, "y": top - 16, "width": width + 32, "height": height + 32}
        shot = await call("Page.captureScreenshot", format="png", clip={**clip, "scale": 2})
        out.write_bytes(base64.b64decode(shot["data"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.dagster_shot", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("docs/assets/dagster-asset-graph.png"))
    args = parser.parse_args(argv)
    chromium = shutil.which("chromium")
    if not chromium:
        print("chromium is not installed (apt-get install chromium)", file=sys.stderr)
        return 2
    port, devtools = free_port(), free_port()
    with tempfile.TemporaryDirectory() as home:
        Path(home, "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        webserver = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("dagster-webserver")),
                *("-h", "127.0.0.1", "-p", str(port), "-m", "orchestration.definitions"),
            ],
            env={**os.environ, "DAGSTER_HOME": home},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        browser = None
        try:
            graphql = f"http://127.0.0.1:{port}/graphql"
            wait_for(f"http://127.0.0.1:{port}/server_info", 120)
            wait_for(graphql, 60, json.dumps({"query": "mutation { setNuxSeen }"}).encode())
            browser = subprocess.Popen(
                [
                    chromium,
                    *("--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"),
                    *("--disable-background-networking", "--disable-component-update"),
                    *("--disable-sync", "--no-first-run", "--window-size=1800,1400"),
                    f"--remote-debugging-port={devtools}",
                    "about:blank",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            asyncio.run(capture(f"http://127.0.0.1:{port}/asset-groups", devtools, args.out))
        finally:
            for process in (browser, webserver):
                if process is not None:
                    process.terminate()
                    process.wait(timeout=30)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
