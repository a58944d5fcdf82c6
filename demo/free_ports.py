"""`python -m demo.free_ports PORT=WHAT ...`: exit 1 with one line naming the first port on
127.0.0.1 that something else holds, before `make dagster` starts anything on them."""

from __future__ import annotations

import socket
import sys


def taken(port: int) -> bool:
    try:
        socket.create_server(("127.0.0.1", port)).close()
    except OSError:
        return True
    return False


def main(argv: list[str]) -> int:
    for item in argv:
        port, _, what = item.partition("=")
        if taken(int(port)):
            print(
                f"error: port {port} ({what}) is taken on 127.0.0.1: stop what holds it "
                "(ss -ltnp shows it), then run this again",
                file=sys.stderr,
            )
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
