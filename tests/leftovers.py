"""No process outlives the tests: the test process adopts what its children leave behind
(Linux's child subreaper), and after the last test every process still below it is
stopped and named, so a failing test cannot leak a server into the next run."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import time
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36
# Helpers of the Python interpreter itself (started by a library's first use of
# multiprocessing), which end when the interpreter does: not something a test started.
INTERPRETER_HELPERS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")


def become_subreaper() -> bool:
    """Orphaned descendants (a server whose parent was killed on a timeout) are
    re-parented to this process instead of init; False where the kernel says no."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def descendants(root: int) -> dict[int, str]:
    """{pid: command line} of every live process below `root` (zombies are reaped)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        state, ppid = text[text.rindex(")") + 2 :].split()[:2]
        pid = int(stat.parent.name)
        if state == "Z":
            if int(ppid) == root:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
            continue
        parents[pid] = int(ppid)
    found, frontier = {}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in found:
                found[pid] = command_line(pid)
                frontier.append(pid)
    return found


def started_processes() -> dict[int, str]:
    """The processes below this one that the tests started (the interpreter's own aside)."""
    return {
        pid: command
        for pid, command in descendants(os.getpid()).items()
        if not any(helper in command for helper in INTERPRETER_HELPERS)
    }


def command_line(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()[:200]


def stop_leftovers(grace: float = 30) -> dict[int, str]:
    """What is still running below this process once `grace` seconds have let exiting
    processes go; those are killed. Empty when the tests stopped everything they started."""
    deadline = time.monotonic() + grace
    while (left := started_processes()) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return left
