"""Helpers of the real-time tests: a test's stream and warehouse, and the --follow consumer."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import redis

from demo.produce import EventMaker, produce
from ingestion.kinds.redis_stream import RedisStream

ROOT = Path(__file__).resolve().parents[2]
GROUP = "warehouse"


@dataclass
class Stream:
    """One test's stream, consumer group and warehouse, with the env the CLI needs."""

    url: str
    name: str
    warehouse: Path
    env: dict[str, str]
    client: redis.Redis = field(repr=False)

    def backend(self, consumer: str = "ingestion-1", **kwargs: Any) -> RedisStream:
        return RedisStream(self.url, self.name, GROUP, consumer, **kwargs)

    def produce(
        self, count: int, prefix: str, rate: float = 50_000, defects: bool = False, seed: int = 0
    ) -> dict[str, Any]:
        """What `python -m demo.produce` does, in-process (saves a start-up)."""
        maker = EventMaker(prefix, 1, 1000, seed)
        return produce(self.client, self.name, rate, count, None, maker, defects)

    def produce_command(self, *args: str) -> dict[str, Any]:
        """`python -m demo.produce` into this stream; returns its summary."""
        result = run_command(
            "python", "-m", "demo.produce", "--redis-url", self.url,
            "--stream", self.name, *args, env=self.env,
        )  # fmt: skip
        return json.loads(result.stdout.strip().splitlines()[-1])

    def pending(self) -> int:
        return int(self.client.xpending(self.name, GROUP)["pending"])

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        with duckdb.connect(str(self.warehouse), read_only=True) as con:
            return con.execute(sql).fetchall()


def run_command(
    *command: str, env: dict[str, str], check: bool = True, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    if command[0] == "python":
        command = (sys.executable, *command[1:])
    elif command[0] == "dbt":
        command = (str(Path(sys.executable).with_name("dbt")), *command[1:])
    result = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(command)} exited {result.returncode}\n"
            f"stdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-4000:]}"
        )
    return result


class Follower:
    """`python -m ingestion events --follow` as a subprocess, its batch lines collected live."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ingestion", "events", "--follow", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def batches(self) -> list[dict[str, Any]]:
        """Parsed `batch N: ok read R loaded L rejected J collapsed C acked A lag G S s` lines."""
        parsed = []
        for line in list(self.lines):
            words = line.replace(":", "").split()
            if not words or words[0] != "batch":
                continue
            row: dict[str, Any] = {"batch": int(words[1]), "status": words[2]}
            for key, value in zip(words[3:-2:2], words[4:-2:2], strict=True):
                row[key] = None if value == "-" else int(value)
            parsed.append(row)
        return parsed

    def wait_until(self, predicate: Any, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self.batches()):
            if self.process.poll() is not None:
                self._reader.join(timeout=600)
                if predicate(self.batches()):
                    return
                raise AssertionError(
                    f"follow exited {self.process.returncode}: {self.lines}\n{self.stderr()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"timed out; batches so far: {self.lines}\n{self.stderr()}")
            time.sleep(0.05)

    def stop(self, timeout: float = 600) -> int:
        """SIGTERM, then wait: the loop finishes its batch and exits 0."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=600)
        return code

    def wait(self, timeout: float = 600) -> int:
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=600)
        return code

    def stderr(self) -> str:
        if self.process.poll() is None or self.process.stderr is None:
            return ""
        return self.process.stderr.read()
