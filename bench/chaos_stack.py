"""The four processes of a production deployment, each its own process so that a crash
drill can kill any of them with SIGKILL and start it again: PostgreSQL (the embedded
server), the Temporal dev server (persisted to a file), `musrenbang worker` and
`musrenbang api`."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from musrenbang.embedded import binary, search_attribute_flags
from musrenbang.reaper import postmaster_of, stop_postgres, wait_gone

COMPONENTS = ("worker", "api", "temporal", "postgres")
_START_PG = (
    "import sys; from pathlib import Path; from musrenbang.embedded import"
    " start_embedded_postgres, ensure_database;"
    " url = start_embedded_postgres(Path(sys.argv[1]), stop_at_exit=False);"
    " print(ensure_database(url, 'musrenbang').render_as_string(hide_password=False))"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ChaosStack:
    """Starts, kills (-9) and restarts each component; logs go under `home`."""

    def __init__(self, home: Path) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.home = home.resolve()  # the server's command line names it so
        self.pgdata = self.home / "pgdata"
        self.api_port, self.temporal_port, self.ui_port = free_port(), free_port(), free_port()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.owner_url = ""

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}/api/v1"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "MUSRENBANG_HOME": str(self.home),
            "MUSRENBANG_DATABASE_URL": self.owner_url,
            "MUSRENBANG_TEMPORAL_ADDRESS": f"127.0.0.1:{self.temporal_port}",
            "MUSRENBANG_API_PORT": str(self.api_port),
            "MUSRENBANG_LOG_LEVEL": "WARNING",
            "MUSRENBANG_LOG_FORMAT": "json",
        }

    def _spawn(self, name: str, args: list[str]) -> None:
        log = (self.home / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(  # noqa: S603 - our own binaries
            args, env=self.env(), stdout=log, stderr=log, start_new_session=True
        )

    def start(self, name: str) -> None:
        if name == "postgres":
            self._start_postgres()
        elif name == "temporal":
            self._spawn(
                "temporal",
                [
                    binary("temporal"),
                    "server",
                    "start-dev",
                    "--db-filename",
                    str(self.home / "temporal.db"),
                    "--ip",
                    "127.0.0.1",
                    "--port",
                    str(self.temporal_port),
                    "--ui-port",
                    str(self.ui_port),
                    "--log-level",
                    "error",
                    *search_attribute_flags(),
                ],
            )
        else:
            self._spawn(name, [sys.executable, "-m", "musrenbang.cli", name])

    def _start_postgres(self) -> None:
        for attempt in range(20):  # a killed server's backends may take a moment to go
            run = subprocess.run(  # noqa: S603 - our own module
                [sys.executable, "-c", _START_PG, str(self.pgdata)],
                capture_output=True,
                text=True,
                check=False,
                timeout=120,
            )
            if run.returncode == 0:
                self.owner_url = run.stdout.strip().splitlines()[-1]
                return
            time.sleep(0.5 + attempt * 0.2)
        raise RuntimeError(f"PostgreSQL did not start again: {run.stderr[-2000:]}")

    def kill(self, name: str) -> None:
        """SIGKILL, as a crash would: no process of the component gets to clean up."""
        if name == "postgres":
            pid = postmaster_of(self.pgdata)
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                wait_gone(pid, 5)
            return
        proc = self.procs.get(name)
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def migrate(self) -> None:
        subprocess.run(
            [sys.executable, "-m", "musrenbang.cli", "migrate"],
            env=self.env(),
            check=True,
            capture_output=True,
        )

    def wait_api(self, seconds: float = 120) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.api_url}/health", timeout=3).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"the API was not healthy within {seconds:.0f} s")

    def stop_all(self) -> None:
        for name in ("api", "worker", "temporal"):
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
        stop_postgres(self.pgdata, owner=os.getpid())
