"""Search attributes on the dev server: an operator finds every overdue forum of a
kecamatan with one visibility query, as the README shows."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import WorkflowEnvironment

from musrenbang.worker import build_worker
from musrenbang.workflows.contracts import ForumConfig, ForumInput
from musrenbang.workflows.forum import ForumWorkflow


async def _listed(env: WorkflowEnvironment, query: str) -> set[str]:
    return {wf.id async for wf in env.client.list_workflows(query)}


async def test_overdue_forums_of_a_kecamatan_are_one_query_away(
    dev_env: WorkflowEnvironment, engine: AsyncEngine, task_queue: str
) -> None:
    now = await dev_env.get_current_time()
    cycle = f"13.72-{task_queue[-4:]}"  # one of its own: the dev server is shared

    def forum(unit: str, seconds: float) -> ForumInput:
        return ForumInput(
            cycle_id=cycle,
            city="13.72",
            stage="kelurahan",
            level="kelurahan",
            unit=unit,
            next_stage="kecamatan",
            next_level="kecamatan",
            config=ForumConfig(
                deadline=(now + timedelta(seconds=seconds)).isoformat(), reminder_hours=[]
            ),
            intake=True,
        )

    async with build_worker(dev_env.client, task_queue, engine):
        late, punctual, elsewhere = [
            await dev_env.client.start_workflow(
                ForumWorkflow.run,
                forum(unit, secs),
                id=f"forum-{cycle}-{unit}",
                task_queue=task_queue,
            )
            for unit, secs in (
                ("13.72.01.1001", 1),
                ("13.72.01.1002", 3600),
                ("13.72.02.1001", 1),
            )
        ]
        query = (
            f"MusrenbangCycle = '{cycle}' AND MusrenbangStatus = 'overdue'"
            " AND MusrenbangUnit STARTS_WITH '13.72.01'"
        )
        for _ in range(100):
            found = await _listed(dev_env, query)
            if found:
                break
            await asyncio.sleep(0.2)
        assert found == {late.id}
        opened = await _listed(
            dev_env,
            f"MusrenbangCycle = '{cycle}' AND MusrenbangStatus = 'open'"
            " AND MusrenbangUnit STARTS_WITH '13.72.01'",
        )
        assert opened == {punctual.id}
        for handle in (late, punctual, elsewhere):
            await handle.terminate()
