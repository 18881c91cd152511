"""The API in-process (httpx over ASGI) against real PostgreSQL and the time-skipping
Temporal server, with a worker on the app's task queue."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import WorkflowEnvironment

from musrenbang.api.app import create_app
from musrenbang.api.auth import issue_token
from musrenbang.config import Settings
from musrenbang.events.tlog import Signer, generate_key
from musrenbang.worker import build_worker


@pytest.fixture
def settings(task_queue: str) -> Settings:
    return Settings(temporal_task_queue=task_queue, jwt_secret="test-secret-for-the-suite-only")


LOG_SIGNER, LOG_VERIFIER = generate_key("bappeda.test.musrenbang.local")


@pytest.fixture
async def api(
    time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, settings: Settings
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, engine=engine, temporal=time_skipping_env.client)
    signer = Signer.parse(LOG_SIGNER)  # the worker signs checkpoints with it
    async with build_worker(
        time_skipping_env.client, settings.temporal_task_queue, engine, signer=signer
    ):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test/api/v1") as client:
            yield client


@pytest.fixture
def token(settings: Settings) -> Any:
    def make(
        role: str, wilayah: str | None = None, opd: str | None = None, region: str | None = None
    ) -> dict[str, str]:
        subject = f"{role}.{opd or wilayah or 'pusat'}"
        if region is None and (opd or role == "dprd"):
            region = "13.72"  # Kota Solok, the region the API tests plan in
        token = issue_token(settings, subject, role, wilayah, opd, region=region)
        return {"Authorization": f"Bearer {token}"}

    return make
