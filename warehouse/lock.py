"""One writer at a time: an advisory lock file beside the warehouse.

DuckDB lets one process write a file, but a pipeline run is several processes
in a row (dlt, dbt, the monitor, publish), so DuckDB's own lock is free between
steps and a second run could slip in. `fcntl.flock` on `<warehouse>.lock`
covers the whole run. Every command of ours that writes the warehouse
(`python -m pipeline`, `python -m ingestion`, `python -m monitoring`) takes it;
that also keeps dlt's working folder to one process. A run's children share
its lock: the run hands them the locked file descriptor (`LOCK_FD_ENV`), and
flock on the same open file is granted to them at once. The kernel drops the
lock when the holder dies (even by `kill -9`), so a stale lock can never
outlive its run; the file's content (holder PID, command, start time, current step) is
only for messages, status and tests, never trusted as the lock itself.
A command that has to wait holds a shared flock on `<warehouse>.lock.queue`
meanwhile, so `--follow`, which takes the lock for one short batch after
another, sees it and lets it in instead of winning every race.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

SHARED_GRACE = 3.0
LOCK_FD_ENV = "WAREHOUSE_LOCK_FD"


class LockBusy(Exception):
    """Another run holds the warehouse."""

    def __init__(self, path: Path, holder: dict[str, Any] | None, warehouse: Path) -> None:
        self.path = path
        self.holder = holder or {}
        super().__init__(busy_message(self.holder, warehouse))


def busy_message(holder: dict[str, Any], warehouse: Path) -> str:
    """The one line a user sees when the warehouse is taken."""
    pid = holder.get("pid", "?")
    started = holder.get("started_at", "unknown time")
    command = holder.get("command")
    step = holder.get("step")
    extra = "".join(f", {x}" for x in (command, f"step {step}" if step else None) if x)
    return (
        f"another run (PID {pid}, started at {started}{extra}) holds the warehouse "
        f"{warehouse}; wait for it to finish or pass --wait SECONDS"
    )


def waiting_message(holder: dict[str, Any], warehouse: Path, wait: float) -> str:
    """The one line a command prints when it starts to wait for the warehouse."""
    pid = holder.get("pid", "?")
    extra = "".join(f", {x}" for x in (holder.get("command"), holder.get("step")) if x)
    return f"waiting up to {wait:g} s for the run holding {warehouse} (PID {pid}{extra})"


def holder_info(command: str, step: str) -> dict[str, Any]:
    """What a writer says about itself in the lock file (for messages and status)."""
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {"pid": os.getpid(), "command": command, "started_at": started, "step": step}


def lock_path(warehouse: Path) -> Path:
    return warehouse.with_name(warehouse.name + ".lock")


def read_holder(path: Path) -> dict[str, Any] | None:
    """What the lock file says about its holder (may be stale when nobody holds it)."""
    for _ in range(5):  # the holder rewrites it in place: retry a torn read
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        if not text.strip():
            return None
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            time.sleep(0.02)
    return None


class SharedLock:
    """A brief shared hold for readers of the warehouse (status): never while a run writes."""

    def __init__(self, warehouse: Path) -> None:
        self.path = lock_path(warehouse)
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class WarehouseLock:
    """Exclusive flock on `<warehouse>.lock`; `update()` publishes the current step."""

    def __init__(self, warehouse: Path) -> None:
        self.warehouse = warehouse
        self.path = lock_path(warehouse)
        self._fd: int | None = None
        self._info: dict[str, Any] = {}
        self.inherited = False

    @property
    def held(self) -> bool:
        return self._fd is not None or self.inherited

    def child_env(self) -> dict[str, str]:
        """What a child process needs in its environment to share this lock."""
        return {LOCK_FD_ENV: str(self._fd)} if self._fd is not None else {}

    def acquire(self, wait: float, info: dict[str, Any], poll: float = 0.2) -> None:
        """Take the lock, waiting up to `wait` seconds; raise LockBusy naming the holder.
        A wait that begins says so once on stderr, naming the holder."""
        if self._inherit():
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + max(wait, 0.0)
        told = False
        queue: int | None = None  # while waiting: a shared flock on the queue file
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    now = time.monotonic()
                    holder = read_holder(self.path)
                    # A shared holder (`status` reading the ledger) writes nothing, is brief.
                    grace = SHARED_GRACE if holder is None else 0.0
                    if now >= deadline + grace:
                        os.close(fd)
                        raise LockBusy(self.path, holder, self.warehouse) from None
                    if queue is None:
                        queue = os.open(self._queue_path(), os.O_RDWR | os.O_CREAT, 0o644)
                        fcntl.flock(queue, fcntl.LOCK_SH)
                    if holder is not None and not told:
                        message = waiting_message(holder, self.warehouse, wait)
                        print(message, file=sys.stderr, flush=True)
                        told = True
                    time.sleep(poll)
        finally:
            if queue is not None:
                os.close(queue)
        self._fd = fd
        self._info = dict(info)
        self._write()

    def _queue_path(self) -> Path:
        return self.path.with_name(self.path.name + ".queue")

    def others_waiting(self) -> bool:
        """Whether another command waits for the lock: one that takes it between short
        turns (`--follow`'s batches) lets it go first instead of winning every race."""
        try:
            fd = os.open(self._queue_path(), os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def take(self, wait: float, command: str, step: str) -> str | None:
        """`acquire` for a command of ours: None once held, else the one-line reason."""
        try:
            self.acquire(wait, holder_info(command, step))
        except LockBusy as exc:
            return str(exc)
        return None

    def _inherit(self) -> bool:
        """True when our parent holds the lock and handed us its descriptor."""
        text = os.environ.get(LOCK_FD_ENV, "")
        if not text.isdigit():
            return False
        fd = int(text)
        try:
            if not os.path.samestat(os.fstat(fd), os.stat(self.path)):
                return False
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the holder's own open file: granted
        except OSError:  # not open here, another file, or held by someone else
            return False
        self.inherited = True
        return True

    def update(self, **fields: Any) -> None:
        """Record progress (e.g. the current step) for status, messages and tests."""
        self._info.update(fields)
        self._write()

    def _write(self) -> None:
        if self._fd is None:
            return
        data = (json.dumps(self._info, default=str) + "\n").encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def release(self) -> None:
        self.inherited = False  # our parent's lock: it releases it
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> WarehouseLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
