"""The steps of a run, each the command a user would type, run as a child process.

Why subprocesses rather than dlt's and dbt's Python APIs in this process:
dbt's in-process `dbtRunner` can keep the DuckDB file attached until the
process ends (dbt-core #11980), and the next step (and the ledger, written
from this process) needs the file free; a child that exits has certainly let
go. A child can also be stopped without stopping the run's bookkeeping, and
its memory goes back when it ends. The price is the imports of each step (dbt's
about 2 s, which a run's dbt child pays while ingestion loads: DbtAhead).
`python -m ingestion` is reused as is (its summary, exit codes and one-line
errors), never re-implemented here. Children are killed when the pipeline
process dies (Linux `PR_SET_PDEATHSIG`), so `kill -9` of a run does not leave
an orphan dbt writing the warehouse after the lock is gone.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from warehouse import dbt_package
from warehouse.audit import redact
from warehouse.lock import LOCK_FD_ENV
from warehouse.settings import LOADING_FD_ENV, analytics_path
from warehouse.sources import exclude_undeclared

from .console import use_color
from .dbt_ahead import IMPORTED_UNUSED, UNUSED, WARMED_UP_UNUSED

PR_SET_PDEATHSIG = 1


@dataclass
class StepResult:
    """One row of the run summary."""

    name: str
    status: str = "skipped"  # ok | failed | skipped
    seconds: float = 0.0
    detail: str = ""
    exit_code: int | None = None
    error: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    # The child's own words, shown under the step's line: its output when it failed,
    # and its stderr (one-line errors and warnings) unless it streamed with --verbose.
    output: str = ""
    errors: str = ""


@dataclass(frozen=True)
class Context:
    """Where things are, for every step of one run."""

    warehouse: Path
    analytics: Path
    project_dir: Path
    target_dir: Path
    env: dict[str, str]
    # --verbose: the children's output (dbt's line per node) as it comes.
    verbose: bool = False
    # a run's dbt child, started with it (`python -m pipeline run` only)
    dbt_ahead: DbtAhead = field(default_factory=lambda: DbtAhead())

    @property
    def python(self) -> str:
        return sys.executable

    @property
    def dbt(self) -> str:
        beside = Path(sys.executable).with_name("dbt")
        return str(beside) if beside.exists() else (shutil.which("dbt") or "dbt")


def make_context(warehouse: Path, project_dir: Path, verbose: bool = False) -> Context:
    """Where one run's steps work; the project's link to the tool's dbt package is made
    (or re-pointed at this install) first, so its dbt commands find the package."""
    dbt_package.link(project_dir)
    env = dict(os.environ)
    if not use_color():
        env["DBT_USE_COLORS"] = "false"  # dbt colours its lines even into a file
    env["WAREHOUSE_PATH"] = str(warehouse)
    if "DBT_PROFILES_DIR" not in env:
        env["DBT_PROFILES_DIR"] = str(project_dir / "profiles")
    target = Path(env.get("DBT_TARGET_PATH") or project_dir / "target")
    return Context(warehouse, analytics_path(warehouse), project_dir, target, env, verbose)


def _libc_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl  # resolved before fork: no imports after
    except (OSError, AttributeError):
        return None


_PRCTL = _libc_prctl()


def _die_with_parent(parent: int) -> Callable[[], None]:
    def child() -> None:
        if _PRCTL is not None:
            _PRCTL(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(137)

    return child


def start_child(
    command: Sequence[str],
    ctx: Context,
    capture_stdout: bool,
    step: bool,
    stdin: int | None = None,
    handed: Sequence[int] = (),
) -> subprocess.Popen[str]:
    """Start a child with the run's environment and descriptors (the lock, the loading
    pipe, `handed`).

    Unless the run is verbose, its stdout is captured; so is a step's stderr,
    shown under the step's line (a live timer holds the terminal's last line).
    """
    capture = capture_stdout or not ctx.verbose
    named = [int(ctx.env[name]) for name in (LOCK_FD_ENV, LOADING_FD_ENV) if name in ctx.env]
    return subprocess.Popen(
        list(command),
        env=ctx.env,
        stdin=stdin,
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.PIPE if step and not ctx.verbose else None,
        text=True,
        pass_fds=[*named, *handed],
        preexec_fn=_die_with_parent(os.getpid()),  # noqa: PLW1509 - prctl only, resolved above
    )


def run_command(
    command: Sequence[str], ctx: Context, capture_stdout: bool = False, step: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run a child to completion; if this process is interrupted, stop the child first.
    A dbt step's command goes to the run's dbt child when it has one (DbtAhead)."""
    asked = None
    child = ctx.dbt_ahead.take(command, capture_stdout, step)
    if child is not None:
        asked = json.dumps({"argv": list(command), "env": ctx.env}) + "\n"
    else:
        child = start_child(command, ctx, capture_stdout, step)
    try:
        out, err = child.communicate(asked)
    except BaseException:
        child.terminate()
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        raise
    return subprocess.CompletedProcess(list(command), child.returncode, out or "", err or "")


class DbtAhead:
    """The run's dbt child (pipeline/dbt_ahead.py): started with the run, it imports and
    warms up dbt once ingestion says it loads something, so that the ~3 s dbt takes to
    start overlap the load, and runs the build's dbt command; a run with nothing new never
    imports dbt.

    `fate` is what became of it, for the run's record: "ran dbt", or, unused, "dbt never
    imported", "dbt imported and warmed up in vain" or "dbt imported in vain" (no warm-up);
    None when the run started none.
    """

    def __init__(self) -> None:
        self.child: subprocess.Popen[str] | None = None
        self.dbt: str | None = None
        self.fate: str | None = None
        self._loading: int | None = None

    def start(self, ctx: Context) -> None:
        """Start the child (after the lock is taken: it holds it too) and put the pipe's write
        end in the environment of the children that follow (ingestion). Not when the `dbt`
        the run calls is another install's than this Python's."""
        if Path(ctx.dbt).parent != Path(ctx.python).parent:
            return
        wake, self._loading = os.pipe()
        try:
            where = [str(ctx.project_dir), str(ctx.target_dir)]
            command = [ctx.python, "-m", "pipeline.dbt_ahead", str(wake), *where]
            self.child = start_child(command, ctx, False, True, subprocess.PIPE, handed=[wake])
        except OSError:  # no child: the build starts dbt as a plain command
            self.loaded(ctx)
            return
        finally:
            os.close(wake)
        self.dbt = ctx.dbt
        ctx.env[LOADING_FD_ENV] = str(self._loading)

    def loaded(self, ctx: Context) -> None:
        """Ingestion is over: the children that follow get no pipe, and the child whose
        ingestion never wrote to it sees its end."""
        ctx.env.pop(LOADING_FD_ENV, None)
        if self._loading is not None:
            os.close(self._loading)
            self._loading = None

    def take(
        self, command: Sequence[str], capture_stdout: bool, step: bool
    ) -> subprocess.Popen[str] | None:
        """The child, for a dbt step's command (once); else None. A child that is gone
        (killed, out of memory) is not used: the command runs in a new one."""
        child = self.child
        if child is None or not step or capture_stdout or command[0] != self.dbt:
            return None
        self.child = None
        if child.poll() is not None:
            child.communicate()
            self.fate = f"exited {child.returncode} before the build"
            return None
        self.fate = "ran dbt"
        return child

    def stop(self, ctx: Context, kill: bool = False) -> None:
        """End an unused child: told there is no command, it says whether it imported dbt
        (its exit code, once any import it began is done); with `kill` (an interrupted
        run), or interrupted now, killed."""
        self.loaded(ctx)
        child, self.child = self.child, None
        if child is None:
            return
        try:
            if kill:
                child.kill()
            child.communicate("")
        except BaseException:
            child.kill()
            child.wait()
            raise
        fates = {
            UNUSED: "dbt never imported",
            WARMED_UP_UNUSED: "dbt imported and warmed up in vain",
            IMPORTED_UNUSED: "dbt imported in vain",
        }
        self.fate = fates.get(child.returncode, "stopped" if kill else f"exited {child.returncode}")


def announce(step: str, command: Sequence[str], ctx: Context) -> None:
    """With --verbose, the command a step runs, above its output."""
    if ctx.verbose:
        shown = " ".join(Path(command[0]).name if i == 0 else c for i, c in enumerate(command))
        print(redact(f"\n== {step}: {shown}"), flush=True)


def tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def test_pause(step: str) -> None:
    """Test hook: PIPELINE_TEST_PAUSE="publish:30" sleeps inside that step (to kill it there),
    first writing the step's name to the file PIPELINE_TEST_PAUSED names, if set, so that a
    test waits for the pause and not for a guess at how long the step takes."""
    spec = os.environ.get("PIPELINE_TEST_PAUSE", "")
    for item in spec.split(","):
        name, _, seconds = item.partition(":")
        if name.strip() == step and seconds:
            if announce := os.environ.get("PIPELINE_TEST_PAUSED"):
                Path(announce).write_text(step, encoding="utf-8")
            time.sleep(float(seconds))


# --- ingest -------------------------------------------------------------------------------


def read_ingest_summary(path: Path) -> list[dict[str, Any]] | None:
    """The sources of `python -m ingestion --summary-json`: a dict per source (None if the
    child wrote none: it died, or failed before any source)."""
    try:
        return list(json.loads(path.read_text(encoding="utf-8"))["sources"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def ingest(
    ctx: Context,
    sources: Sequence[str],
    inbox: str | None,
    api_url: str | None,
    full_refresh: bool,
    debug: bool,
) -> StepResult:
    result = StepResult("ingest")
    summary = ctx.target_dir / "ingest_summary.json"
    summary.unlink(missing_ok=True)
    command = [ctx.python, "-m", "ingestion", *sources, "--summary-json", str(summary)]
    if inbox:
        command += ["--inbox", inbox]
    if api_url:
        command += ["--api-url", api_url]
    if full_refresh:
        command.append("--full-refresh")
    if debug:
        command.append("--debug")
    announce("ingest", command, ctx)
    done = run_command(command, ctx, capture_stdout=True, step=True)
    result.errors = done.stderr
    if ctx.verbose:
        print(done.stdout, end="", flush=True)  # the ingestion summary table (already redacted)
    result.exit_code = done.returncode
    reports = read_ingest_summary(summary)
    if reports is not None:
        result.data["rows_loaded"] = sum(r["rows_loaded"] for r in reports)
        result.data["rows_rejected"] = sum(r["rows_rejected"] for r in reports)
        result.data["sources"] = {r["name"]: r["status"] for r in reports}
        result.data["dlt_pipelines"] = [r["name"] for r in reports if r["dlt_pipeline"]]
    if done.returncode != 0:
        result.status = "failed"
        result.error = f"python -m ingestion exited {done.returncode} (see its errors)"
        result.output = "" if ctx.verbose else done.stdout
    else:
        result.status = "ok"
    return result


# --- build --------------------------------------------------------------------------------


def read_run_results(ctx: Context, since: float) -> dict[str, Any] | None:
    """dbt's run_results.json, if this invocation wrote it (mtime after `since`)."""
    path = ctx.target_dir / "run_results.json"
    try:
        if path.stat().st_mtime < since - 1:
            return None
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def summarize_results(results: dict[str, Any] | None) -> tuple[str | None, str]:
    """(invocation id, `PASS=n WARN=n ERROR=n` line) from run_results.json."""
    if not results:
        return None, ""
    counts: dict[str, int] = {}
    for r in results.get("results", []):
        status = str(r.get("status", "?")).lower()
        key = {"success": "pass", "pass": "pass", "fail": "error", "runtime error": "error"}.get(
            status, status
        )
        counts[key] = counts.get(key, 0) + 1
    line = " ".join(f"{k.upper()}={counts[k]}" for k in sorted(counts))
    return (results.get("metadata") or {}).get("invocation_id"), line


def _failed(results: dict[str, Any] | None) -> list[tuple[str, dict[str, Any]]]:
    """(node name, its result) for every node that errored or failed."""
    found = []
    for r in (results or {}).get("results", []):
        if str(r.get("status", "")).lower() in ("error", "fail", "runtime error"):
            parts = str(r.get("unique_id", "?")).split(".")  # type.package.name[.hash]
            found.append((parts[2] if len(parts) > 2 else parts[-1], r))
    return found


def failed_nodes(results: dict[str, Any] | None, limit: int = 3) -> list[str]:
    return [name for name, _ in _failed(results)][:limit]


def node_errors(results: dict[str, Any] | None) -> list[str]:
    """`  <node>: <dbt's message>` for every node that errored or failed."""
    return [
        f"  {name}: {one_line(str(r.get('message') or r.get('status')))[:400]}"
        for name, r in _failed(results)
    ]


def dbt_command(ctx: Context, verb: str, *args: str) -> list[str]:
    """A dbt command on the project; a build leaves out the models of undeclared sources."""
    command = [ctx.dbt, verb, "--project-dir", str(ctx.project_dir), *args]
    if verb == "build":
        command += exclude_undeclared(ctx.project_dir)
    return command


def dbt_step(name: str, ctx: Context, command: list[str]) -> StepResult:
    """Run one dbt invocation; its run_results.json gives the invocation id and counts."""
    announce(name, command, ctx)
    started = time.time()
    done = run_command(command, ctx, step=True)
    result = dbt_outcome(name, ctx, command, done.returncode, started, done.stdout or "")
    result.errors = done.stderr
    return result


def dbt_outcome(
    name: str, ctx: Context, command: Sequence[str], exit_code: int, started: float, stdout: str
) -> StepResult:
    """The step result of a dbt invocation that ended with `exit_code` (whoever ran it)."""
    result = StepResult(name)
    results = read_run_results(ctx, started)
    invocation, counts = summarize_results(results)
    result.exit_code = exit_code
    result.data["dbt_invocation_id"] = invocation
    result.data["command"] = redact(" ".join(["dbt", *command[1:]]))  # for the audit log
    result.detail = counts
    if exit_code == 0:
        result.status = "ok"
    else:
        result.status = "failed"
        failing = failed_nodes(results)
        what = f": {', '.join(failing)}" if failing else " (see dbt's output)"
        result.error = f"dbt {command[1]} failed{what}"
        if not ctx.verbose:  # name every failed node with its error; dbt's own words if none
            result.output = "\n".join(node_errors(results)) or tail(stdout)
    return result


def build(
    ctx: Context,
    select: str | None,
    vars_: str | None,
    full_refresh: bool,
    unit_tests: bool = True,
) -> StepResult:
    command = dbt_command(ctx, "build")
    if select:
        command += ["--select", *select.split()]
    if not unit_tests:
        command += ["--exclude-resource-type", "unit_test"]
    if vars_:
        command += ["--vars", vars_]
    if full_refresh:
        command.append("--full-refresh")
    return dbt_step("build", ctx, command)


# --- monitor ------------------------------------------------------------------------------


def monitor(ctx: Context, debug: bool, check: str | None = None) -> StepResult:
    """`python -m monitoring`; `check` says which check the build did, for its report.

    A build that was not a full check (`check` given) gets an incremental
    measurement: the full one comes with the full check.
    """
    result = StepResult("monitor")
    alerts_path = ctx.target_dir / "quality_alerts.json"
    command = [
        ctx.python,
        "-m",
        "monitoring",
        "--target-dir",
        str(ctx.target_dir),
        "--project-dir",
        str(ctx.project_dir),
        "--alerts-json",
        str(alerts_path),
    ]
    if check:
        command += ["--check", check, "--incremental"]
    if debug:
        command.append("--debug")
    announce("monitor", command, ctx)
    started = time.time()
    done = run_command(command, ctx, step=True)
    result.errors = done.stderr
    result.exit_code = done.returncode
    errors = warnings = None
    try:
        if alerts_path.stat().st_mtime >= started - 1:
            alerts = json.loads(alerts_path.read_text(encoding="utf-8")).get("alerts", [])
            severities = [str(a.get("severity") or a.get("status") or "") for a in alerts]
            errors = sum(s == "error" for s in severities)
            warnings = len(severities) - errors
    except (OSError, json.JSONDecodeError):
        pass
    result.data.update(alerts_error=errors, alerts_warn=warnings)
    if errors is not None:
        report = ctx.target_dir / "quality_report.html"
        result.detail = f"{errors} error, {warnings} warning alerts (report: {report})"
    if done.returncode == 0:
        result.status = "ok"
    else:
        result.status = "failed"
        result.output = "" if ctx.verbose else (done.stdout or "")
        result.error = (
            f"the monitor raised {errors} error alert(s)"
            if done.returncode == 1 and errors
            else f"python -m monitoring exited {done.returncode} (see its output)"
        )
    return result


def one_line(text: str) -> str:
    return re.sub(r"\s+", " ", redact(text)).strip()
