"""Database connections: the owner (migrations) and the application role (everything else)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def _psycopg(url: str | URL) -> URL:
    parsed = make_url(url)
    return parsed.set(drivername="postgresql+psycopg")


def app_url(owner_url: str | URL, user: str, password: str) -> URL:
    """The same server and database, as the application role."""
    return _psycopg(owner_url).set(username=user, password=password)


def migrations_config(owner_url: str | URL, app_user: str, app_password: str) -> Config:
    """Alembic's configuration for this database: the owner runs the revisions, which
    grant to the application role."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["owner_url"] = _psycopg(owner_url)
    config.attributes["app_role"] = app_user
    config.attributes["app_password"] = app_password
    return config


def migrate(owner_url: str | URL, app_user: str, app_password: str) -> None:
    """Brings the schema to the newest revision, as the owner."""
    command.upgrade(migrations_config(owner_url, app_user, app_password), "head")


def create_engine(url: str | URL, *, pool_size: int = 10) -> AsyncEngine:
    return create_async_engine(
        _psycopg(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=False,
        # A server that hangs (not one that refuses) must not hold a request for ever.
        connect_args={"options": "-c timezone=UTC", "connect_timeout": 10},
    )


def conninfo(url: URL) -> str:
    """A libpq connection string (psycopg's own form) for a SQLAlchemy URL."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


async def driver_connection(conn: AsyncConnection) -> Any:
    """The psycopg connection under a SQLAlchemy one, for server-side cursors, COPY and
    the reads on every request's path. A connection already in use is read off directly
    (`get_raw_connection` costs a greenlet switch, more than a short query's parse)."""
    sync = conn.sync_connection
    if sync is not None and not sync.closed and not sync.invalidated:
        raw = sync.connection
    else:
        raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    if driver is None:
        raise RuntimeError("the connection has been closed")
    return driver
