"""Temporal fixtures: the time-skipping test server and the dev server, both from the
project's wheels (nothing downloaded), one per session; each test gets its own task
queue and a worker bound to its own database."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from musrenbang.stack import binary
from musrenbang.worker import build_worker


@pytest.fixture(scope="session")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=binary("temporal-test-server")
    )
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=binary("temporal"),
        dev_server_extra_args=[
            "--dynamic-config-value",
            "frontend.enableUpdateWorkflowExecution=true",
        ],
    )
    yield env
    await env.shutdown()


@pytest.fixture
def task_queue() -> str:
    return f"musrenbang-test-{uuid.uuid4().hex[:8]}"


async def running_worker(
    env: WorkflowEnvironment, queue: str, engine: AsyncEngine, webhook: str | None = None
) -> Worker:
    return build_worker(env.client, queue, engine, webhook)
