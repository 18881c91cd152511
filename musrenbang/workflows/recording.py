"""How workflows record: events are built deterministically here and appended by the
`record_events` local activity, with idempotency keys derived from the workflow id and
the update (or timer) that caused them, so a retried activity never writes twice."""

from __future__ import annotations

import contextlib
from dataclasses import fields
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from musrenbang.domain.access import system_actor
    from musrenbang.domain.catalogue import (
        cycle_stream,
        forum_stream,
        notification_workflow_id,
        proposal_stream,
    )
    from musrenbang.workflows.contracts import (
        ActorRef,
        CheckpointInput,
        DocumentInput,
        EventSpec,
        NotifyInput,
        RecordInput,
    )

# Far below Temporal's 2 MB payload limit even for long payloads.
CHUNK = 500
RECORD_TIMEOUT = timedelta(seconds=60)
NOTIFY_BY_CHILD = "notify-by-child-workflow"
# Forums sign a checkpoint of the log as they close (carried in the closing record) and
# once closed; the cycle, once the RKPD is adopted. Histories from before replay without.
CHECKPOINTS = "signed-checkpoints"
# A forum's closing record carries the SHA-256 of its Berita Acara (PDF).
BERITA_ACARA_PDF = "berita-acara-pdf"
# Only for histories from before NOTIFY_BY_CHILD; new notices use NotificationWorkflow.
NOTIFY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=10),
    maximum_attempts=8,
)


class Recorder:
    """Builds and records the events of one workflow (a forum or a cycle)."""

    def __init__(
        self,
        log_id: str,
        cycle_id: str,
        owner_id: str,
        stage: str | None = None,
        unit: str | None = None,
    ) -> None:
        self.log_id = log_id
        self.cycle_id = cycle_id
        self.owner_id = owner_id
        self.stage = stage
        self.unit = unit

    def _actor(self, actor: ActorRef | None, system: bool) -> tuple[dict[str, Any], str | None]:
        if system or actor is None:
            return system_actor(workflow.info().workflow_id), None
        data = {"subject": actor.subject, "role": actor.role}
        if actor.jurisdiction:
            data["jurisdiction"] = actor.jurisdiction
        if actor.fraksi:
            data["fraksi"] = actor.fraksi
        return data, actor.request_id

    def event(
        self,
        stream: str,
        type_: str,
        payload: dict[str, Any],
        actor: ActorRef | None = None,
        system: bool = False,
    ) -> EventSpec:
        who, correlation = self._actor(actor, system)
        metadata: dict[str, Any] = {
            "cycle_id": self.cycle_id,
            "workflow_id": workflow.info().workflow_id,
        }
        if correlation:
            metadata["correlation_id"] = correlation
        return EventSpec(stream, type_, payload, who, workflow.now().isoformat(), "", metadata)

    def forum_event(
        self,
        type_: str,
        payload: dict[str, Any],
        actor: ActorRef | None = None,
        system: bool = False,
    ) -> EventSpec:
        return self.event(forum_stream(self.owner_id), type_, payload, actor, system)

    def cycle_event(
        self,
        type_: str,
        payload: dict[str, Any],
        actor: ActorRef | None = None,
        system: bool = False,
    ) -> EventSpec:
        return self.event(cycle_stream(self.cycle_id), type_, payload, actor, system)

    def proposal_event(
        self,
        pid: str,
        type_: str,
        payload: dict[str, Any],
        actor: ActorRef | None = None,
        system: bool = False,
    ) -> EventSpec:
        if self.stage is not None:
            payload = {"stage": self.stage, "unit": self.unit, **payload}
        return self.event(proposal_stream(pid), type_, payload, actor, system)

    async def record(self, events: list[EventSpec], cause: str) -> list[int]:
        """Appends `events`; `cause` names what produced them (an update id, a timer)."""
        base = f"{workflow.info().workflow_id}:{cause}"
        for n, spec in enumerate(events):
            spec.idempotency_key = f"{base}:{n}"
        seqs: list[int] = []
        for start in range(0, len(events), CHUNK):
            seqs.extend(
                await workflow.execute_local_activity(
                    "record_events",
                    RecordInput(self.log_id, events[start : start + CHUNK]),
                    start_to_close_timeout=RECORD_TIMEOUT,
                    result_type=list[int],
                )
            )
        return seqs

    async def checkpoint(self, cause: str, reason: str) -> dict[str, Any] | None:
        """A signed checkpoint of the log as it stands, for `cause` (the same cause always
        gets the checkpoint first issued for it), or None for histories from before.
        Its summary is {"origin", "size", "root", "note"}; if the signer refused (the log
        is no longer consistent with its last checkpoint), {"refused": why}, and the
        caller goes on: a forum is never stopped by it."""
        if not workflow.patched(CHECKPOINTS):
            return None
        result: dict[str, Any] = await workflow.execute_local_activity(
            "issue_checkpoint",
            CheckpointInput(
                self.log_id,
                f"{workflow.info().workflow_id}:{cause}:checkpoint",
                reason,
                workflow.now().isoformat(),
            ),
            start_to_close_timeout=RECORD_TIMEOUT,
            result_type=dict,
        )
        return result

    async def berita_acara(self, closing: dict[str, Any]) -> dict[str, Any] | None:
        """The digest of the Berita Acara the closing record `closing` makes (the SHA-256
        of its PDF per paper), or None for histories from before. Never raises: a
        document that could not be made is recorded as such and the forum closes."""
        if not workflow.patched(BERITA_ACARA_PDF):
            return None
        try:
            result: dict[str, Any] = await workflow.execute_local_activity(
                "berita_acara_digest",
                DocumentInput(self.log_id, self.owner_id, closing),
                start_to_close_timeout=RECORD_TIMEOUT,
                retry_policy=RetryPolicy(maximum_attempts=3),
                result_type=dict,
            )
        except ActivityError as exc:
            return {"error": f"the document was not made: {exc.cause or exc}"[:300]}
        return result

    def notice(self, kind: str, message: str, details: dict[str, Any], cause: str) -> NotifyInput:
        """A reminder or escalation to deliver once the caller has let go of its lock."""
        return NotifyInput(
            self.log_id,
            self.owner_id,
            self.cycle_id,
            kind,
            message,
            details,
            f"{workflow.info().workflow_id}:{cause}:delivered",
            workflow.now().isoformat(),
        )

    def by_child(self) -> bool:
        """Whether notices go to a NotificationWorkflow of their own (histories recorded
        before that path delivered them in the forum, under its lock, and replay so)."""
        return workflow.patched(NOTIFY_BY_CHILD)

    async def deliver_here(self, notice: NotifyInput) -> None:
        """The delivery of forums started before NotificationWorkflow; a receiver that
        stays down no longer fails the forum, it only loses the notice (logged)."""
        try:
            await workflow.execute_activity(
                "notify",
                notice,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=NOTIFY_RETRY,
            )
        except ActivityError:
            workflow.logger.error("notify.given_up", extra={"kind": notice.kind})

    async def send(self, inp: NotifyInput) -> None:
        """Hands the notice to its own NotificationWorkflow and returns: the forum never
        waits on the webhook."""
        # Already started: handed over before (the forum was reset and replays its timers).
        with contextlib.suppress(WorkflowAlreadyStartedError):
            await workflow.start_child_workflow(
                "NotificationWorkflow",
                inp,
                id=notification_workflow_id(inp.idempotency_key),
                parent_close_policy=ParentClosePolicy.ABANDON,
            )


def plain(obj: Any) -> dict[str, Any]:
    """A dataclass's fields as a dict, one level deep. (`dataclasses.asdict` recurses and
    deep-copies, which inside the workflow sandbox costs seconds on large batches.)"""
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


def new_proposal_id() -> str:
    """An usulan's id: server-assigned, unique across regions and cycles. A client's own
    reference never becomes a stream or a key (it is unique within its cycle only)."""
    return str(workflow.uuid4())
