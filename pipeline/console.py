"""What a run prints: one line per step, a live timer on a terminal, plain lines in a log.

On a terminal, the running step shows as `build ... 12s`, rewritten in place
every half second and replaced by the step's line when it ends (carriage
returns, no escape codes). Anywhere else (a file, cron's mail, a CI log) only
the finished lines are written. The children's own output (dbt's line per node, the ingestion
table, the monitor's alerts) is shown with `--verbose`, and whenever their
step fails, so the reason is on screen.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

TICK = 0.5


def is_terminal() -> bool:
    return sys.stdout.isatty()


def use_color() -> bool:
    """Colours (dbt's, when shown) only on a terminal, and never with NO_COLOR set."""
    return is_terminal() and not os.environ.get("NO_COLOR")


@contextmanager
def progress(step: str) -> Iterator[None]:
    """A `step ... Ns` line kept up to date on a terminal while the block runs."""
    if not is_terminal():
        yield
        return
    started = time.monotonic()
    done = threading.Event()
    width = 0

    def tick() -> None:
        nonlocal width
        while not done.wait(TICK):
            shown = f"{step} ... {time.monotonic() - started:.0f}s"
            width = len(shown)
            sys.stdout.write(f"\r{shown}")
            sys.stdout.flush()

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    try:
        yield
    finally:
        done.set()
        ticker.join()
        sys.stdout.write("\r" + " " * width + "\r")  # blank the timer: the step's line follows
        sys.stdout.flush()


def step_line(name: str, status: str, seconds: float, detail: str) -> str:
    return f"{name:<8} {status:<7} {seconds:6.1f}s  {detail}".rstrip()
