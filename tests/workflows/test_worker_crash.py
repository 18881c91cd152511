"""A worker process killed in the middle of a stage and replaced: nothing is lost and
nothing is written twice (the dev server, a real worker process, real PostgreSQL)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

from sqlalchemy import URL, text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from musrenbang.events.verify import verify_all
from musrenbang.workflows.contracts import CommandResult, SubmitRequest
from musrenbang.workflows.cycle import CycleWorkflow
from musrenbang.workflows.forum import ForumWorkflow
from tests.workflows.helpers import coordinator, draft, forum_handle, small_cycle

BATCH = 2000  # four local-activity chunks: the kill lands between them


def _worker(owner_db: URL, env: WorkflowEnvironment, queue: str) -> subprocess.Popen[bytes]:
    environ = {
        **os.environ,
        "MUSRENBANG_DATABASE_URL": owner_db.render_as_string(hide_password=False),
        "MUSRENBANG_TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
        "MUSRENBANG_TEMPORAL_TASK_QUEUE": queue,
        "MUSRENBANG_LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen([sys.executable, "-m", "musrenbang.cli", "worker"], env=environ)


async def _count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(
            (
                await conn.execute(
                    text("SELECT count(*) FROM audit.events WHERE type = 'ProposalSubmitted'")
                )
            ).scalar_one()
        )


async def test_killed_worker_loses_and_duplicates_nothing(
    dev_env: WorkflowEnvironment, owner_db: URL, engine: AsyncEngine, task_queue: str
) -> None:
    client = dev_env.client
    first = _worker(owner_db, dev_env, task_queue)
    second: subprocess.Popen[bytes] | None = None
    inp = small_cycle()
    try:
        cycle = await client.start_workflow(
            CycleWorkflow.run, inp, id=f"cycle-{inp.cycle_id}-{task_queue}", task_queue=task_queue
        )
        kel = inp.units["kelurahan"][0]
        forum = await forum_handle(client, cycle, inp, "kelurahan", kel)
        drafts = [draft(f"Usulan {i}", "jalan", 1_000_000) for i in range(BATCH)]
        request = SubmitRequest(coordinator(kel), drafts)
        pending = asyncio.create_task(
            forum.execute_update(ForumWorkflow.submit, request, id="submit-batch-1")
        )
        while (written := await _count(engine)) == 0:
            await asyncio.sleep(0.01)
        first.send_signal(signal.SIGKILL)
        first.wait()
        assert written < BATCH, "the worker must die mid-stage"
        second = _worker(owner_db, dev_env, task_queue)
        try:
            result: CommandResult = await asyncio.wait_for(pending, 120)
        except (WorkflowUpdateFailedError, RPCError):
            # The update was in flight on the dead worker: the client asks again with the
            # same update id, which the server deduplicates.
            result = await forum.execute_update(ForumWorkflow.submit, request, id="submit-batch-1")
        assert len(set(result.proposal_ids)) == BATCH
        async with engine.connect() as conn:
            streams = (
                await conn.execute(
                    text(
                        "SELECT count(DISTINCT stream), count(*) FROM audit.events"
                        " WHERE type = 'ProposalSubmitted'"
                    )
                )
            ).one()
            seqs = (await conn.execute(text("SELECT count(*), max(seq) FROM audit.events"))).one()
            check = await verify_all(conn)
        assert tuple(streams) == (BATCH, BATCH), "every usulan recorded exactly once"
        assert seqs[0] == seqs[1], "no gap in seq"
        assert check.ok
        await cycle.terminate()
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(10)
