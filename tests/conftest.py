"""Shared fixtures: one real PostgreSQL server per session (the embedded wheel, or
MUSRENBANG_DATABASE_URL), and a fresh database per test cloned from a migrated template."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import WorkflowEnvironment

from musrenbang.embedded import (
    embedded_postgres,
    ensure_database,
    start_dev_server,
    start_test_server,
)
from musrenbang.events.append import EventWriter
from musrenbang.events.db import app_url, conninfo, create_engine, migrate

APP_USER = "musrenbang_app"
APP_PASSWORD = "musrenbang_app"
TEMPLATE = "musrenbang_test_template"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[URL]:
    """The owner URL of a PostgreSQL server (database `postgres`)."""
    external = os.environ.get("MUSRENBANG_DATABASE_URL")
    if external:
        yield make_url(external).set(database="postgres")
        return
    with (
        tempfile.TemporaryDirectory(prefix="musrenbang-pg-") as tmp,
        embedded_postgres(Path(tmp) / "pgdata") as url,
    ):
        yield url


@pytest.fixture(scope="session")
def pg_template(pg_server: URL) -> URL:
    with psycopg.connect(conninfo(pg_server), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(TEMPLATE))
        )
    url = ensure_database(pg_server, TEMPLATE)
    migrate(url, APP_USER, APP_PASSWORD)
    return url


@pytest.fixture
def owner_db(pg_server: URL, pg_template: URL) -> Iterator[URL]:
    """A fresh, migrated database for one test; its owner URL."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(conninfo(pg_server), autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(TEMPLATE)
            )
        )
    yield pg_server.set(database=name)
    with psycopg.connect(conninfo(pg_server), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
async def engine(owner_db: URL) -> AsyncIterator[AsyncEngine]:
    """An engine connected as the application role (INSERT and SELECT on events only)."""
    eng = create_engine(app_url(owner_db, APP_USER, APP_PASSWORD))
    yield eng
    await eng.dispose()


@pytest.fixture
async def writer(engine: AsyncEngine) -> AsyncIterator[EventWriter]:
    """The application's writer on the test's database, closed after the test."""
    own = EventWriter(engine.url)
    yield own
    await own.aclose()


@pytest.fixture
async def owner_engine(owner_db: URL) -> AsyncIterator[AsyncEngine]:
    """An engine connected as the owner (a superuser on the embedded server)."""
    eng = create_engine(owner_db)
    yield eng
    await eng.dispose()


@pytest.fixture
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """A fresh time-skipping server per test: workflows another test left without a
    worker would otherwise keep its clock from skipping."""
    env = await start_test_server()
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await start_dev_server(
        extra_args=["--dynamic-config-value", "frontend.enableUpdateWorkflowExecution=true"]
    )
    yield env
    await env.shutdown()


@pytest.fixture
def task_queue() -> str:
    return f"musrenbang-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def cycle_year(time_skipping_env: WorkflowEnvironment) -> int:
    """A cycle year whose deadlines are still ahead on the test's own time-skipping server
    (each test has a fresh one, and a fresh database, so no two tests meet). Not further
    ahead: a cycle a decade away timed out on the time-skipping server."""
    return (await time_skipping_env.get_current_time()).year + 2
