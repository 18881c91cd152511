"""Findings an auditor asks for: usulan stranded at a forum that never opened, usulan
submitted after their forum's deadline was escalated, and likely duplicates."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from musrenbang.events.append import append_events
from musrenbang.events.model import NewEvent
from musrenbang.events.queries import findings
from tests.events.helpers import CLERK, T0, decided, submitted

FORUM = "forum:36.71-2027-kelurahan-36.71.01.1001"


def _forum(event_type: str, key: str, **payload: object) -> NewEvent:
    return NewEvent(
        stream=FORUM,
        type=event_type,
        payload={
            "stage": "kelurahan",
            "unit": "36.71.01.1001",
            "cycle_id": "36.71-2027",
            "forum_id": FORUM.split(":", 1)[1],
            **payload,
        },
        actor=CLERK,
        occurred_at=T0,
        idempotency_key=key,
        metadata={"cycle_id": "36.71-2027"},
    )


async def test_stranded_late_and_duplicate_usulan_are_found(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await append_events(conn, "36.71", [_forum("ForumOpened", "open")])
        await append_events(conn, "36.71", [submitted("p"), submitted("q")])
        await append_events(conn, "36.71", [_forum("EscalationRaised", "esc", to="36.71.01")])
        await append_events(conn, "36.71", [submitted("late", cost=5)])
        await append_events(
            conn,
            "36.71",
            [
                _forum("ForumClosed", "close"),
                decided("p", "ProposalAccepted", 1),
                decided("p", "ProposalForwarded", 2, to_stage="kecamatan", to_unit="36.71.01"),
            ],
        )
    async with engine.connect() as conn:
        found = await findings(conn, "36.71-2027", "kelurahan", ["kelurahan", "kecamatan"])
    assert found["stranded"] == [{"proposal_id": "p", "stage": "kecamatan", "unit": "36.71.01"}], (
        "every kelurahan forum closed, and the kecamatan forum it waits for never opened"
    )
    assert [f["proposal_id"] for f in found["submitted_after_escalation"]] == ["late"]
    assert any({"p", "q"} <= set(d["proposal_ids"]) for d in found["duplicates"])
    assert found["ok"] is False
