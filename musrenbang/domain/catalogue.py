"""One catalogue of the names the system gives things: ids of cycles, forums and their
workflows, the streams of the log, and the types of its events. Everything that builds or
parses one of these names takes it from here."""

from __future__ import annotations

from enum import StrEnum


class EventType(StrEnum):
    """Every type of event the log holds (DESIGN.md, "Events")."""

    # a cycle (stream cycle:<cycle_id>)
    CYCLE_OPENED = "CycleOpened"
    STAGE_OPENED = "StageOpened"
    POKIR_WINDOW_CLOSED = "PokirWindowClosed"
    RKPD_ADOPTED = "RkpdAdopted"
    # a forum (stream forum:<forum_id>)
    FORUM_OPENED = "ForumOpened"
    FORUM_CLOSED = "ForumClosed"
    FORUM_AUTO_CLOSED = "ForumAutoClosed"
    DEADLINE_REMINDER_SENT = "DeadlineReminderSent"
    DEADLINE_MISSED = "DeadlineMissed"
    ESCALATION_RAISED = "EscalationRaised"
    DEADLINE_EXTENDED = "DeadlineExtended"
    NOTIFICATION_DELIVERED = "NotificationDelivered"
    NOTIFICATION_DELAYED = "NotificationDelayed"
    # an usulan (stream proposal:<proposal_id>)
    PROPOSAL_SUBMITTED = "ProposalSubmitted"
    POKIR_SUBMITTED = "PokirSubmitted"
    PROPOSAL_ACCEPTED = "ProposalAccepted"
    PROPOSAL_REVISED = "ProposalRevised"
    PROPOSAL_REJECTED = "ProposalRejected"
    PROPOSAL_DEFERRED = "ProposalDeferred"
    PROPOSAL_MERGED = "ProposalMerged"
    PROPOSAL_PRIORITIZED = "ProposalPrioritized"
    PROPOSAL_ASSIGNED = "ProposalAssigned"
    PROPOSAL_INCLUDED = "ProposalIncluded"
    PROPOSAL_NOT_ACCOMMODATED = "ProposalNotAccommodated"
    PROPOSAL_NOT_DELIBERATED = "ProposalNotDeliberated"
    PROPOSAL_FORWARDED = "ProposalForwarded"
    # a log (stream log:<log_id>)
    CHECKPOINT_ISSUED = "CheckpointIssued"


# The events that bring an usulan into a cycle, and those that end its path with a reason.
ORIGINS = (EventType.PROPOSAL_SUBMITTED, EventType.POKIR_SUBMITTED)
CLOSINGS = (EventType.FORUM_CLOSED, EventType.FORUM_AUTO_CLOSED)


def cycle_id(region: str, year: int) -> str:
    """`36.71-2028`: the cycle of a region (its log) and an RKPD year."""
    return f"{region}-{year}"


def forum_id(cycle: str, stage: str, unit: str) -> str:
    """`36.71-2028-kelurahan-36.71.01.1001`: one forum of one stage for one unit."""
    return f"{cycle}-{stage}-{unit}"


def cycle_workflow_id(cycle: str) -> str:
    return f"cycle-{cycle}"


def forum_workflow_id(cycle: str, stage: str, unit: str) -> str:
    return f"forum-{forum_id(cycle, stage, unit)}"


def notification_workflow_id(key: str) -> str:
    """The workflow delivering the notice whose idempotency key is `key`."""
    return f"notify-{key.removesuffix(':delivered')}"


def cycle_stream(cycle: str) -> str:
    return f"cycle:{cycle}"


def forum_stream(forum: str) -> str:
    return f"forum:{forum}"


def proposal_stream(proposal_id: str) -> str:
    return f"proposal:{proposal_id}"


def log_stream(log_id: str) -> str:
    return f"log:{log_id}"


def proposal_of(stream: str) -> str | None:
    """The usulan id of a `proposal:` stream, else None."""
    kind, _, rest = stream.partition(":")
    return rest if kind == "proposal" and rest else None
