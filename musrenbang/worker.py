"""The Temporal worker: the cycle and forum workflows and the activities they call."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from musrenbang.activities.recording import RecordingActivities
from musrenbang.workflows.cycle import CycleWorkflow
from musrenbang.workflows.forum import ForumWorkflow

WORKFLOWS = [CycleWorkflow, ForumWorkflow]


def build_worker(
    client: Client, task_queue: str, engine: AsyncEngine, webhook_url: str | None = None
) -> Worker:
    acts = RecordingActivities(engine, webhook_url)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        activities=[acts.record_events, acts.notify],
        activity_executor=ThreadPoolExecutor(4),
        # Determinism is guarded by the import-linter contract on workflows/ and by the
        # replay tests. The sandbox's proxies made converting a large update (thousands
        # of decisions at the kota forum) take seconds, tripping the deadlock detector.
        workflow_runner=UnsandboxedWorkflowRunner(),
        max_concurrent_workflow_tasks=50,
    )
