"""From the settings to what the processes run on: the PostgreSQL engine and the Temporal
client. Starts no server: `musrenbang api` and `musrenbang worker` are given a database URL
and a Temporal address (the embedded servers are `musrenbang up`'s, musrenbang/embedded.py)."""

from __future__ import annotations

import asyncio

from sqlalchemy import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from musrenbang.config import Settings
from musrenbang.events.db import app_url, create_engine


class NotConfigured(RuntimeError):
    """A setting the process cannot run without is missing."""


def configured_owner_url(settings: Settings) -> URL:
    """The owner's URL of the configured database (MUSRENBANG_DATABASE_URL)."""
    if not settings.database_url:
        raise NotConfigured(
            "MUSRENBANG_DATABASE_URL is not set: give the PostgreSQL owner's URL"
            " (`musrenbang up` runs the embedded stack on a developer's machine)"
        )
    return make_url(settings.database_url)


def app_engine(settings: Settings, owner: URL | None = None) -> AsyncEngine:
    """An engine as the application role (INSERT and SELECT on the log) on the database of
    `owner`, else on the configured one."""
    url = app_url(
        owner or configured_owner_url(settings), settings.app_db_user, settings.app_db_password
    )
    return create_engine(url)


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
