"""Activities that write to the log: `record_events` (run as a local activity inside
update handlers and timers) and `notify` (the webhook delivery, retried, then recorded)."""

from __future__ import annotations

from datetime import datetime

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from musrenbang.events.append import EventWriter
from musrenbang.events.model import NewEvent
from musrenbang.logging import get_logger
from musrenbang.workflows.contracts import EventSpec, NotifyInput, RecordInput

log = get_logger(__name__)


def _new_event(spec: EventSpec) -> NewEvent:
    return NewEvent(
        stream=spec.stream,
        type=spec.type,
        payload=spec.payload,
        actor=spec.actor,
        occurred_at=datetime.fromisoformat(spec.occurred_at),
        idempotency_key=spec.idempotency_key,
        metadata=spec.metadata,
    )


class RecordingActivities:
    """Holds the event writer (application role) and the webhook settings."""

    def __init__(self, writer: EventWriter, webhook_url: str | None) -> None:
        self.writer = writer
        self.webhook_url = webhook_url

    @activity.defn(name="record_events")
    async def record_events(self, inp: RecordInput) -> list[int]:
        """Appends the events in one transaction; a retry with the same keys writes nothing."""
        results = await self.writer.append(inp.log_id, [_new_event(e) for e in inp.events])
        replayed = sum(r.replayed for r in results)
        if replayed:
            log.info("events.replayed", log_id=inp.log_id, replayed=replayed)
        return [r.seq for r in results]

    @activity.defn(name="notify")
    async def notify(self, inp: NotifyInput) -> None:
        """POSTs the notice to the webhook; a failure raises so Temporal retries it.
        Each delivery is recorded as NotificationDelivered on the forum's stream."""
        if not self.webhook_url:
            return
        attempt = activity.info().attempt
        body = {
            "kind": inp.kind,
            "forum_id": inp.forum_id,
            "cycle_id": inp.cycle_id,
            "message": inp.message,
            "details": inp.details,
            "key": inp.idempotency_key,
        }
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                response = await client.post(
                    self.webhook_url, json=body, headers={"Idempotency-Key": inp.idempotency_key}
                )
        except httpx.HTTPError as exc:
            log.warning("notify.failed", forum_id=inp.forum_id, attempt=attempt, error=str(exc))
            raise ApplicationError(f"webhook unreachable: {exc}") from exc
        if response.status_code >= 300:
            log.warning(
                "notify.refused",
                forum_id=inp.forum_id,
                attempt=attempt,
                status=response.status_code,
            )
            raise ApplicationError(f"webhook answered {response.status_code}")
        delivered = EventSpec(
            stream=f"forum:{inp.forum_id}",
            type="NotificationDelivered",
            payload={
                "kind": inp.kind,
                "status": response.status_code,
                "attempt": attempt,
                "url": self.webhook_url,
            },
            actor={"system": True, "role": "system", "workflow": activity.info().workflow_id},
            occurred_at=inp.occurred_at,
            idempotency_key=inp.idempotency_key,
            metadata={"cycle_id": inp.cycle_id},
        )
        await self.record_events(RecordInput(inp.log_id, [delivered]))
