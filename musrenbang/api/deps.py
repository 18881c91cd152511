"""Request-scoped dependencies: a read connection, the Temporal client, the settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncConnection
from temporalio.client import Client

from musrenbang.config import Settings


async def _connection(request: Request) -> AsyncIterator[AsyncConnection]:
    # One read-only transaction per request, owned here; routes never commit.
    async with request.app.state.engine.connect() as conn:
        yield conn


def _client(request: Request) -> Client:
    client: Client = request.app.state.temporal
    return client


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


ConnDep = Annotated[AsyncConnection, Depends(_connection)]
TemporalDep = Annotated[Client, Depends(_client)]
SettingsDep = Annotated[Settings, Depends(_settings)]
