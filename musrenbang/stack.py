"""`musrenbang up`: the whole system in the foreground on a developer's machine: the
embedded PostgreSQL and Temporal dev server (musrenbang/embedded.py), the worker and the
API, stopped in order on Ctrl-C."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from musrenbang.config import Settings
from musrenbang.embedded import HARD_STOP_SECONDS, Reaper, TemporalDevServer, embedded_owner_url
from musrenbang.events.tlog import Signer, generate_key
from musrenbang.runtime import app_engine, configured_owner_url, connect_temporal


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
        owner = (
            configured_owner_url(settings)
            if settings.database_url
            else embedded_owner_url(settings)
        )
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
