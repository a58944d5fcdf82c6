"""A throwaway PostgreSQL cluster on a free loopback port, for tests and trials.

`make test-postgres` needs a real server but must not depend on one being
configured: this starts a private cluster (Debian's `initdb`/`pg_ctl`, trust
auth, 127.0.0.1 only) in a temp folder and removes it afterwards, even when
the work in between failed. Run as root, the server runs as the `postgres`
OS user (PostgreSQL refuses to run as root).

    python -m scale.pg_cluster -- dbt build --target postgres

runs one command with PGHOST/PGPORT/PGUSER/PGDATABASE pointing at the cluster.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

DATABASE = "warehouse"
SUPERUSER = "postgres"


def bin_dir() -> Path:
    """Where initdb and pg_ctl live: PATH first, else Debian's versioned folder."""
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if not candidates:
        raise RuntimeError(
            "PostgreSQL server binaries not found (initdb): apt-get install -y postgresql"
        )
    return Path(candidates[-1]).parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Cluster:
    """A running cluster: where it listens and the env that points clients at it."""

    root: Path
    port: int
    host: str = "127.0.0.1"
    user: str = SUPERUSER
    database: str = DATABASE

    @property
    def env(self) -> dict[str, str]:
        """libpq's variables, read by psql, dlt (warehouse/settings.py) and dbt's profile."""
        return {
            "PGHOST": self.host,
            "PGPORT": str(self.port),
            "PGUSER": self.user,
            "PGDATABASE": self.database,
            # Trust auth ignores it, but dlt's postgres credentials require one.
            "PGPASSWORD": "trust",
        }

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.database}"


def _as_server_user(command: list[str]) -> list[str]:
    """Run server commands as `postgres` when we are root (initdb refuses root)."""
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", SUPERUSER, "--", *command]


def _run(command: list[str], log: Path | None = None) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        detail = result.stderr.strip() or result.stdout.strip()
        if log is not None and log.exists():
            detail += "\n" + log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{' '.join(command)} failed: {detail}")


@contextlib.contextmanager
def running_cluster(port: int | None = None) -> Iterator[Cluster]:
    """Start a fresh cluster with database `warehouse`; stop and delete it on exit."""
    binaries = bin_dir()
    root = Path(tempfile.mkdtemp(prefix="mlw-pg-"))
    data, sockets, log = root / "data", root / "sockets", root / "server.log"
    sockets.mkdir()
    if os.geteuid() == 0:
        server_user = pwd.getpwnam(SUPERUSER)
        for path in (root, sockets):
            os.chown(path, server_user.pw_uid, server_user.pw_gid)
    cluster = Cluster(root=root, port=port or free_port())
    started = False
    try:
        _run(
            _as_server_user(
                [
                    str(binaries / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    SUPERUSER,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                ]
            )
        )
        options = (
            f"-p {cluster.port} -c listen_addresses=127.0.0.1 -k {sockets} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c timezone=UTC"
        )
        _run(
            _as_server_user(
                [str(binaries / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log)]
                + ["-w", "-t", "60", "start"]
            ),
            log,
        )
        started = True
        _run(
            [str(binaries / "createdb"), "-h", cluster.host, "-p", str(cluster.port)]
            + ["-U", SUPERUSER, DATABASE],
            log,
        )
        yield cluster
    finally:
        if started:
            subprocess.run(
                _as_server_user([str(binaries / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"]),
                capture_output=True,
                timeout=120,
            )
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scale.pg_cluster",
        description="Run one command against a throwaway PostgreSQL cluster (PG* env set).",
    )
    parser.add_argument("--port", type=int, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- command and its arguments")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give a command after --, e.g. -- dbt build --target postgres")
    try:
        with running_cluster(args.port) as cluster:
            print(f"postgres cluster at {cluster.url}", file=sys.stderr)
            return subprocess.run(command, env={**os.environ, **cluster.env}).returncode
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
