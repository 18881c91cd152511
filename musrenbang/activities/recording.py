"""Activities that write to the log: `record_events` (run as a local activity inside
update handlers and timers) and `notify` (the webhook delivery of one notice, run by its
own NotificationWorkflow, retried without end, then recorded)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import httpx
import psycopg
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.exceptions import ApplicationError

from musrenbang.domain.catalogue import EventType as ET
from musrenbang.domain.catalogue import forum_stream
from musrenbang.events import contacts
from musrenbang.events.append import EventWriter
from musrenbang.events.errors import Contention, EventLogError, IdempotencyConflict
from musrenbang.events.model import NewEvent
from musrenbang.logging import get_logger
from musrenbang.workflows.contracts import EventSpec, NotifyInput, RecordInput

log = get_logger(__name__)

# An outage of the receiver this long is itself recorded, once per notice.
DELAY_RECORDED_AFTER = timedelta(hours=1)
WEBHOOK_TIMEOUT = httpx.Timeout(10.0, connect=5.0)


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


# A worker ahead of its migrations or without its grants: an operator's fault that the
# next attempt may find mended. Retried, never a refusal of the events.
_DEPLOYMENT_FAULTS = (
    psycopg.errors.InsufficientPrivilege,
    psycopg.errors.UndefinedTable,
    psycopg.errors.UndefinedFunction,
    psycopg.errors.UndefinedColumn,
    psycopg.errors.UndefinedObject,
    psycopg.errors.InvalidSchemaName,
)


def deterministic_failure(exc: BaseException) -> ApplicationError | None:
    """The refusal to report when retrying `exc` cannot help (the same events would fail
    the same way), or None when it may (the database is down, a lock was contended, the
    schema or the grants are not there yet)."""
    if isinstance(exc, (Contention, *_DEPLOYMENT_FAULTS)):
        return None
    if isinstance(exc, IdempotencyConflict):
        return ApplicationError(str(exc), type="Conflict", non_retryable=True)
    if isinstance(exc, EventLogError | psycopg.DataError | psycopg.IntegrityError):
        return ApplicationError(
            f"the log refused these events: {exc}", type="Refused", non_retryable=True
        )
    if isinstance(exc, psycopg.ProgrammingError | ValueError | TypeError):
        return ApplicationError(
            f"the events cannot be recorded: {exc}", type="Refused", non_retryable=True
        )
    return None


OUTCOME_WORDS = {
    ET.PROPOSAL_ACCEPTED: "diterima",
    ET.PROPOSAL_REVISED: "diterima dengan perubahan",
    ET.PROPOSAL_REJECTED: "ditolak",
    ET.PROPOSAL_DEFERRED: "ditunda",
    ET.PROPOSAL_MERGED: "digabung dengan usulan serupa",
    ET.PROPOSAL_INCLUDED: "masuk RKPD",
    ET.PROPOSAL_NOT_ACCOMMODATED: "tidak diakomodasi",
}


class RecordingActivities:
    """Holds the event writer (application role) and the webhook settings."""

    def __init__(
        self, writer: EventWriter, webhook_url: str | None, engine: AsyncEngine | None = None
    ) -> None:
        self.writer = writer
        self.webhook_url = webhook_url
        self.engine = engine  # for the proposers' contacts (private.contacts)

    @activity.defn(name="record_events")
    async def record_events(self, inp: RecordInput) -> list[int]:
        """Appends the events in one transaction; a retry with the same keys writes nothing.
        A failure no retry can mend fails at once, non-retryable; others are retried."""
        try:
            results = await self.writer.append(inp.log_id, [_new_event(e) for e in inp.events])
        except Exception as exc:
            refusal = deterministic_failure(exc)
            if refusal is not None:
                log.warning("events.refused", log_id=inp.log_id, error=refusal.message)
                raise refusal from None
            log.warning(
                "events.retrying",
                log_id=inp.log_id,
                attempt=activity.info().attempt,
                error=f"{type(exc).__name__}: {exc}",
            )
            raise
        replayed = sum(r.replayed for r in results)
        if replayed:
            log.info("events.replayed", log_id=inp.log_id, replayed=replayed)
        return [r.seq for r in results]

    @activity.defn(name="notify")
    async def notify(self, inp: NotifyInput) -> None:
        """POSTs the notice to the webhook; a failure raises so Temporal retries it.
        The delivery is recorded once as NotificationDelivered on the forum's stream."""
        if not self.webhook_url:
            return
        if inp.kind == "proposer":
            await self._tell_proposers(inp)
            return
        info = activity.info()
        status = await self._deliver(inp, inp)
        await self._record(
            inp,
            ET.NOTIFICATION_DELIVERED,
            {"kind": inp.kind, "status": status, "attempt": info.attempt, "url": self.webhook_url},
            inp.idempotency_key,
        )

    async def _tell_proposers(self, inp: NotifyInput) -> None:
        """Tells each proposer who left a contact the outcome of their usulan and its
        reason, once each: the log records that it was told (never the contact)."""
        decided = list(inp.details.get("decisions", []))
        if self.engine is None or not decided:
            return
        async with self.engine.connect() as conn:
            reachable = await contacts.of(conn, [d["proposal_id"] for d in decided])
        info = activity.info()
        for d in decided:
            contact = reachable.get(d["proposal_id"])
            if contact is None:
                continue
            outcome = OUTCOME_WORDS.get(d["outcome"], d["outcome"])
            message = f"Usulan {d['receipt']}: {outcome} di {d['stage']}."
            if d.get("reason"):
                message += f" Alasan: {d['reason']}"
            one = replace(
                inp,
                message=message,
                details={
                    "to": contact,
                    "receipt": d["receipt"],
                    "outcome": d["outcome"],
                    "reason": d.get("reason"),
                },
                idempotency_key=f"{inp.idempotency_key}:{d['proposal_id']}",
            )
            status = await self._deliver(one, inp)
            told = {
                "kind": "proposer",
                "proposal_id": d["proposal_id"],
                "receipt": d["receipt"],
                "outcome": d["outcome"],
                "status": status,
                "attempt": info.attempt,
            }
            await self._record(one, ET.NOTIFICATION_DELIVERED, told, one.idempotency_key)

    async def _deliver(self, inp: NotifyInput, notice: NotifyInput) -> int:
        """POSTs one message; on a failure, records the outage of `notice` once it has
        lasted and raises, so Temporal retries."""
        try:
            return await self._post(inp)
        except Exception as exc:
            attempt = activity.info().attempt
            log.warning(
                "notify.failed",
                forum_id=inp.forum_id,
                kind=inp.kind,
                attempt=attempt,
                error=str(exc),
            )
            await self._record_delay(notice)
            raise ApplicationError(str(exc), type="WebhookUnavailable") from None

    async def _post(self, inp: NotifyInput) -> int:
        body = {
            "kind": inp.kind,
            "forum_id": inp.forum_id,
            "cycle_id": inp.cycle_id,
            "message": inp.message,
            "details": inp.details,
            "key": inp.idempotency_key,
        }
        assert self.webhook_url is not None  # noqa: S101 - checked by the caller
        try:
            async with httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT) as client:
                response = await client.post(
                    self.webhook_url, json=body, headers={"Idempotency-Key": inp.idempotency_key}
                )
        except httpx.HTTPError as exc:
            raise RuntimeError(f"webhook unreachable: {type(exc).__name__}") from None
        if response.status_code >= 300:
            raise RuntimeError(f"webhook answered {response.status_code}")
        return response.status_code

    async def _record_delay(self, inp: NotifyInput) -> None:
        """Once the receiver has been down long enough, that is recorded too (once). The
        times are the server's, so they hold on a time-skipping test server as well."""
        info = activity.info()
        first, now = info.scheduled_time, info.current_attempt_scheduled_time
        if now - first < DELAY_RECORDED_AFTER:
            return
        # The same content on every later attempt, so the key records it once.
        payload = {
            "kind": inp.kind,
            "since": first.isoformat(),
            "after_seconds": int(DELAY_RECORDED_AFTER.total_seconds()),
            "url": self.webhook_url,
        }
        key = inp.idempotency_key.removesuffix(":delivered") + ":delayed"
        try:
            await self._record(inp, ET.NOTIFICATION_DELAYED, payload, key)
        except Exception as exc:  # the log may be down too; the next attempt tries again
            log.warning("notify.delay_not_recorded", forum_id=inp.forum_id, error=str(exc))

    async def _record(
        self, inp: NotifyInput, type_: str, payload: dict[str, object], key: str
    ) -> None:
        event = EventSpec(
            stream=forum_stream(inp.forum_id),
            type=type_,
            payload=dict(payload),
            actor={"system": True, "role": "system", "workflow": activity.info().workflow_id},
            occurred_at=inp.occurred_at,
            idempotency_key=key,
            metadata={"cycle_id": inp.cycle_id},
        )
        try:
            await self.record_events(RecordInput(inp.log_id, [event]))
        except ApplicationError as exc:
            if exc.type != "Conflict":
                raise
            # Recorded by an earlier attempt that could not report back: once is enough.
            log.info("notify.already_recorded", forum_id=inp.forum_id, type=type_)
