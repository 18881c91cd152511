"""Small builders for event-log tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from musrenbang.events.model import NewEvent

T0 = datetime(2027, 1, 5, 1, 0, tzinfo=UTC)
CLERK = {"subject": "lurah.sukarasa", "role": "coordinator", "jurisdiction": "36.71.01.1001"}


def submitted(
    proposal_id: str, key: str | None = None, minutes: int = 0, cost: int = 150_000_000
) -> NewEvent:
    return NewEvent(
        stream=f"proposal:{proposal_id}",
        type="ProposalSubmitted",
        payload={
            "proposal_id": proposal_id,
            "cycle_id": "36.71-2027",
            "stage": "kelurahan",
            "unit": "36.71.01.1001",
            "details": {
                "masalah": "Jalan rusak di RT 03/RW 02",
                "cost": cost,
                "volume": 120,
                "satuan": "m",
            },
        },
        actor=CLERK,
        occurred_at=T0 + timedelta(minutes=minutes),
        idempotency_key=key or f"submit:{proposal_id}",
        metadata={"cycle_id": "36.71-2027"},
    )


def decided(
    proposal_id: str, event_type: str, n: int, minutes: int = 60, **payload: object
) -> NewEvent:
    return NewEvent(
        stream=f"proposal:{proposal_id}",
        type=event_type,
        payload={"stage": "kelurahan", "unit": "36.71.01.1001", **payload},
        actor=CLERK,
        occurred_at=T0 + timedelta(minutes=minutes),
        idempotency_key=f"{event_type}:{proposal_id}:{n}",
        metadata={"cycle_id": "36.71-2027"},
    )
