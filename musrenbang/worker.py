"""The Temporal worker: the cycle and forum workflows and the activities they call."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
)
from temporalio.common import SearchAttributeIndexedValueType
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from musrenbang.activities.checkpoints import CheckpointActivities
from musrenbang.activities.documents import DocumentActivities
from musrenbang.activities.recording import RecordingActivities
from musrenbang.config import Settings, get_settings
from musrenbang.events.append import EventWriter
from musrenbang.events.tlog import Signer, generate_key
from musrenbang.logging import get_logger
from musrenbang.workflows import search
from musrenbang.workflows.checkpoints import SCHEDULE_ID, CheckpointWorkflow
from musrenbang.workflows.cycle import CycleWorkflow
from musrenbang.workflows.forum import ForumWorkflow
from musrenbang.workflows.notification import NotificationWorkflow

T = TypeVar("T")
WORKFLOWS = [CycleWorkflow, ForumWorkflow, NotificationWorkflow, CheckpointWorkflow]
log = get_logger(__name__)


class _Worker(Worker):
    """A worker that registers the workflows' search attributes before it takes a task (a
    workflow setting one the server does not know would fail every task and wedge),
    makes sure the checkpoint schedule exists, and closes its connections when it stops."""

    def __init__(
        self,
        client: Client,
        *args: Any,
        writer: EventWriter,
        checkpoints: CheckpointActivities,
        checkpoint_every: timedelta | None,
        **kwargs: Any,
    ) -> None:
        super().__init__(client, *args, **kwargs)
        self._client, self._writer, self._checkpoints = client, writer, checkpoints
        self._every = checkpoint_every
        self.signer = checkpoints.signer

    async def run(self) -> None:
        try:
            await register_search_attributes(self._client, self._client.namespace)
            if self._every is not None:
                await ensure_checkpoint_schedule(self._client, self.task_queue, self._every)
            await super().run()
        finally:
            await self._writer.aclose()
            await self._checkpoints.aclose()


_INDEXED = {
    SearchAttributeIndexedValueType.KEYWORD: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    SearchAttributeIndexedValueType.DATETIME: IndexedValueType.INDEXED_VALUE_TYPE_DATETIME,
}


# Answers that say the server is not there (yet): a worker started while Temporal restarts
# waits for it, as its polling would, instead of exiting.
_TRANSIENT = {
    RPCStatusCode.UNAVAILABLE,
    RPCStatusCode.DEADLINE_EXCEEDED,
    RPCStatusCode.UNKNOWN,
    RPCStatusCode.CANCELLED,
    RPCStatusCode.RESOURCE_EXHAUSTED,
}


async def until_answered(call: Callable[[], Awaitable[T]], what: str) -> T:
    """`call()`, tried again (backoff up to 10 s) while the server is unreachable."""
    delay = 0.5
    while True:
        try:
            return await call()
        except RPCError as exc:
            if exc.status not in _TRANSIENT:
                raise
            log.warning("temporal.unavailable", doing=what, error=exc.message, retry_in=delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 10.0)


async def register_search_attributes(client: Client, namespace: str) -> None:
    """Registers the workflows' search attributes (workflows/search.py) where they are
    missing; a server that refuses says how to register them by hand."""
    for key in search.KEYS:
        request = AddSearchAttributesRequest(
            namespace=namespace, search_attributes={key.name: _INDEXED[key.indexed_value_type]}
        )
        try:
            await until_answered(
                lambda r=request: client.operator_service.add_search_attributes(r),  # type: ignore[misc]
                "register search attributes",
            )
        except RPCError as exc:
            if exc.status == RPCStatusCode.ALREADY_EXISTS:
                continue
            raise RuntimeError(
                f"cannot register the search attribute {key.name} ({exc.message}); register it"
                f" with `temporal operator search-attribute create --namespace {namespace}"
                f" --name {key.name} --type {key.indexed_value_type.name.title()}`"
            ) from exc


async def ensure_checkpoint_schedule(client: Client, task_queue: str, every: timedelta) -> None:
    """The Temporal Schedule that signs a checkpoint of every log that grew, every
    `every`. A server without schedules (the time-skipping test server) is told in the
    log; the forums and the cycle still sign theirs."""
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(
            CheckpointWorkflow.run, id=SCHEDULE_ID, task_queue=task_queue
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )
    try:
        try:
            await until_answered(
                lambda: client.create_schedule(SCHEDULE_ID, schedule), "create the schedule"
            )
        except ScheduleAlreadyRunningError:  # made before: it takes this worker's settings
            await until_answered(
                lambda: client.get_schedule_handle(SCHEDULE_ID).update(
                    lambda _: ScheduleUpdate(schedule=schedule)
                ),
                "update the schedule",
            )
    except RPCError as exc:
        log.warning("checkpoints.no_schedule", error=exc.message)


def load_signer(settings: Settings) -> Signer | None:
    """The log's signer key: the secret setting, else the file it names, else None."""
    if settings.log_signing_key is not None:
        return Signer.parse(settings.log_signing_key.get_secret_value())
    if settings.log_signing_key_file is not None:
        return Signer.parse(settings.log_signing_key_file.read_text())
    return None


def build_worker(
    client: Client,
    task_queue: str,
    engine: AsyncEngine,
    webhook_url: str | None = None,
    signer: Signer | None = None,
    checkpoint_every: timedelta | None = None,
    settings: Settings | None = None,
) -> _Worker:
    """The worker. Without a signer it takes the configured one; a development setup
    without any signs with a key of its own, made for this process (its verifier key is
    logged); production refuses to start without one."""
    settings = settings or get_settings()
    signer = signer or load_signer(settings)
    if signer is None:
        if settings.environment == "production":
            raise RuntimeError(
                "set MUSRENBANG_LOG_SIGNING_KEY or MUSRENBANG_LOG_SIGNING_KEY_FILE: production"
                " signs the log with a key of its own (`musrenbang audit keygen NAME`)"
            )
        signer = Signer.parse(generate_key("musrenbang.local")[0])
        log.warning("log.ephemeral_signing_key", verifier_key=signer.verifier().text())
    writer = EventWriter(engine.url)
    acts = RecordingActivities(writer, webhook_url, engine)
    checkpoints = CheckpointActivities(engine.url, writer, signer)
    documents = DocumentActivities(engine)
    return _Worker(
        client,
        writer=writer,
        checkpoints=checkpoints,
        checkpoint_every=checkpoint_every,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        activities=[
            acts.record_events,
            acts.notify,
            checkpoints.issue_checkpoint,
            checkpoints.checkpoint_logs,
            documents.berita_acara_digest,
        ],
        activity_executor=ThreadPoolExecutor(4),
        # Determinism is guarded by the import-linter contract on workflows/ and by the
        # replay tests. The sandbox's proxies made converting a large update (thousands
        # of decisions at the kota forum) take seconds, tripping the deadlock detector.
        workflow_runner=UnsandboxedWorkflowRunner(),
        max_concurrent_workflow_tasks=50,
        # A stop must not wait on a webhook that hangs: cut activities short, Temporal
        # retries them on the next worker.
        graceful_shutdown_timeout=timedelta(seconds=3),
    )


def configured_worker(
    settings: Settings, client: Client, engine: AsyncEngine, signer: Signer | None = None
) -> _Worker:
    """The production worker (`musrenbang worker`, `musrenbang up`): its task queue,
    webhook, signer and checkpoint schedule from the settings."""
    return build_worker(
        client,
        settings.temporal_task_queue,
        engine,
        settings.webhook_url,
        signer or load_signer(settings),
        timedelta(minutes=settings.checkpoint_interval_minutes),
        settings,
    )
