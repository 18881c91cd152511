"""The Temporal worker: the cycle and forum workflows and the activities they call."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client
from temporalio.common import SearchAttributeIndexedValueType
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from musrenbang.activities.recording import RecordingActivities
from musrenbang.events.append import EventWriter
from musrenbang.workflows import search
from musrenbang.workflows.cycle import CycleWorkflow
from musrenbang.workflows.forum import ForumWorkflow
from musrenbang.workflows.notification import NotificationWorkflow

WORKFLOWS = [CycleWorkflow, ForumWorkflow, NotificationWorkflow]


class _Worker(Worker):
    """A worker that registers the workflows' search attributes before it takes a task (a
    workflow setting one the server does not know would fail every task and wedge), and
    closes its event writer's connections when it stops."""

    def __init__(self, client: Client, *args: Any, writer: EventWriter, **kwargs: Any) -> None:
        super().__init__(client, *args, **kwargs)
        self._client, self._writer = client, writer

    async def run(self) -> None:
        try:
            await register_search_attributes(self._client, self._client.namespace)
            await super().run()
        finally:
            await self._writer.aclose()


_INDEXED = {
    SearchAttributeIndexedValueType.KEYWORD: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    SearchAttributeIndexedValueType.DATETIME: IndexedValueType.INDEXED_VALUE_TYPE_DATETIME,
}


async def register_search_attributes(client: Client, namespace: str) -> None:
    """Registers the workflows' search attributes (workflows/search.py) where they are
    missing; a server that refuses says how to register them by hand."""
    for key in search.KEYS:
        request = AddSearchAttributesRequest(
            namespace=namespace, search_attributes={key.name: _INDEXED[key.indexed_value_type]}
        )
        try:
            await client.operator_service.add_search_attributes(request)
        except RPCError as exc:
            if exc.status == RPCStatusCode.ALREADY_EXISTS:
                continue
            raise RuntimeError(
                f"cannot register the search attribute {key.name} ({exc.message}); register it"
                f" with `temporal operator search-attribute create --namespace {namespace}"
                f" --name {key.name} --type {key.indexed_value_type.name.title()}`"
            ) from exc


def build_worker(
    client: Client, task_queue: str, engine: AsyncEngine, webhook_url: str | None = None
) -> Worker:
    writer = EventWriter(engine.url)
    acts = RecordingActivities(writer, webhook_url)
    return _Worker(
        client,
        writer=writer,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        activities=[acts.record_events, acts.notify],
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
