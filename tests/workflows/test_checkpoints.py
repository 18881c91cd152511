"""The checkpoint schedule: a Temporal Schedule, made by the worker, signs a checkpoint of
every log that grew, and none of a log that did not."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import WorkflowEnvironment

from musrenbang.events import tlog
from musrenbang.events.append import EventWriter
from musrenbang.worker import build_worker
from musrenbang.workflows.checkpoints import SCHEDULE_ID
from tests.events.helpers import submitted


async def _checkpoints(engine: AsyncEngine) -> list[tuple[int, str]]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT size, note FROM audit.checkpoints ORDER BY size"))
        return [(r.size, r.note) for r in rows]


async def test_the_schedule_signs_a_log_while_it_grows(
    dev_env: WorkflowEnvironment, engine: AsyncEngine, task_queue: str
) -> None:
    skey, vkey = tlog.generate_key("bappeda.schedule.test")
    writer = EventWriter(engine.url)
    await writer.append("36.71", [submitted(f"p{i}") for i in range(5)])
    worker = build_worker(
        dev_env.client,
        task_queue,
        engine,
        signer=tlog.Signer.parse(skey),
        checkpoint_every=timedelta(seconds=1),
    )
    try:
        async with worker:
            for _ in range(150):
                if await _checkpoints(engine):
                    break
                await asyncio.sleep(0.2)
            [(size, note)] = await _checkpoints(engine)
            assert size == 5
            assert tlog.parse_checkpoint(tlog.verify_note(note, [vkey])).size == 5
            await asyncio.sleep(3)  # the log grew only by the checkpoint's own record
            assert len(await _checkpoints(engine)) == 1
            await writer.append("36.71", [submitted("late")])
            for _ in range(150):
                if len(await _checkpoints(engine)) == 2:
                    break
                await asyncio.sleep(0.2)
            sizes = [s for s, _ in await _checkpoints(engine)]
            assert sizes == [5, 7]  # five, its CheckpointIssued, and the late one
            async with engine.connect() as conn:
                reasons = (
                    (
                        await conn.execute(
                            text(
                                "SELECT payload->>'reason' FROM audit.events"
                                " WHERE type = 'CheckpointIssued' ORDER BY seq"
                            )
                        )
                    )
                    .scalars()
                    .all()
                )
            assert reasons[:2] == ["schedule", "schedule"]
    finally:
        await dev_env.client.get_schedule_handle(SCHEDULE_ID).delete()
        await writer.aclose()
