"""Stops what `musrenbang up` started once `up` is gone, however it went (Ctrl-C, a crash,
SIGKILL): no Temporal dev server or PostgreSQL is left running with no parent, holding a
port or a data directory.

`up` starts this process in a session of its own (so a Ctrl-C meant for `up` does not
reach it) with a pipe on its standard input, and writes one line per thing it starts:
``group <pgid>`` for a process group, ``postgres <pgdata>`` for the embedded server. The
pipe ends when `up` ends, whatever ended it; then every process named is stopped: asked
first, killed after a bound.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

ASK_SECONDS = 4.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wait_gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return not _alive(pid)


def stop_group(pgid: int) -> None:
    """SIGTERM to the group, SIGKILL to what is left after ASK_SECONDS."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if not _wait_gone(pgid, ASK_SECONDS):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            return


def postmaster_pid(pgdata: Path) -> int | None:
    try:
        first = (pgdata / "postmaster.pid").read_text().split("\n", 1)[0]
    except OSError:
        return None
    return int(first) if first.strip().isdigit() else None


def stop_postgres(pid: int) -> None:
    """Fast shutdown (SIGINT), then immediate (SIGQUIT), then SIGKILL."""
    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        if _wait_gone(pid, ASK_SECONDS):
            return


def main() -> int:
    groups: list[int] = []
    servers: list[int] = []
    for line in sys.stdin:  # ends when `up` does: the pipe's last writer is gone
        what, _, arg = line.strip().partition(" ")
        if what == "group" and arg.isdigit():
            groups.append(int(arg))
        elif what == "postgres":
            pid = postmaster_pid(Path(arg))
            if pid is not None:
                servers.append(pid)
        elif what == "forget" and arg.isdigit():  # stopped by `up` itself
            groups = [g for g in groups if g != int(arg)]
            servers = [p for p in servers if p != int(arg)]
    for pgid in groups:
        stop_group(pgid)
    for pid in servers:
        stop_postgres(pid)
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.exit(main())
