"""Read models are written with the events and can be rebuilt from the log, byte for byte."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from musrenbang.events.append import append_events
from musrenbang.events.model import NewEvent
from musrenbang.events.projections import rebuild
from tests.events.helpers import CLERK, T0, decided, submitted

TABLES = ["read.proposals", "read.forums", "read.cycles"]


async def _snapshot(conn: AsyncConnection) -> dict[str, list[str]]:
    out = {}
    for table in TABLES:
        rows = await conn.execute(text(f"SELECT t::text FROM {table} t ORDER BY 1"))
        out[table] = [r[0] for r in rows]
    return out


def _forum_opened() -> NewEvent:
    return NewEvent(
        stream="forum:36.71-2027-kelurahan-36.71.01.1001",
        type="ForumOpened",
        payload={
            "forum_id": "36.71-2027-kelurahan-36.71.01.1001",
            "cycle_id": "36.71-2027",
            "stage": "kelurahan",
            "unit": "36.71.01.1001",
            "deadline": "2027-01-29T10:00:00.000000Z",
            "pagu": 2_300_000_000,
        },
        actor={"system": True, "workflow": "forum-36.71-2027-kelurahan-36.71.01.1001"},
        occurred_at=T0,
        idempotency_key="open-forum",
    )


async def test_live_read_models_follow_the_events(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await append_events(
            conn, "36.71", [_forum_opened(), submitted("a"), submitted("b"), submitted("c")]
        )
        await append_events(
            conn,
            "36.71",
            [
                decided(
                    "a",
                    "ProposalRevised",
                    1,
                    changes={"cost": 90_000_000},
                    original={"cost": 150_000_000},
                ),
                decided(
                    "b",
                    "ProposalRejected",
                    1,
                    reason_code="bukan-kewenangan",
                    reason="Jalan provinsi",
                ),
                decided("c", "ProposalMerged", 1, into="a"),
                decided("a", "ProposalMerged", 2, absorbed="c"),
            ],
        )
    async with engine.connect() as conn:
        rows = {
            r.proposal_id: r
            for r in await conn.execute(
                text("SELECT proposal_id, status, state, version FROM read.proposals")
            )
        }
        forum = (await conn.execute(text("SELECT status, state FROM read.forums"))).one()
    assert rows["a"].status == "accepted" and rows["a"].state["details"]["cost"] == 90_000_000
    assert rows["a"].state["merged_from"] == ["c"] and rows["a"].version == 3
    assert rows["b"].status == "rejected" and rows["b"].state["reason"]["text"] == "Jalan provinsi"
    assert rows["c"].status == "merged" and rows["c"].state["merged_into"] == "a"
    assert forum.status == "open" and forum.state["pagu"] == 2_300_000_000


async def test_rebuild_recreates_the_live_tables_exactly(
    engine: AsyncEngine, owner_engine: AsyncEngine
) -> None:
    async with engine.begin() as conn:
        await append_events(conn, "36.71", [_forum_opened()])
        for i in range(30):
            await append_events(conn, "36.71", [submitted(f"p{i}", minutes=i)])
        for i in range(0, 30, 2):
            await append_events(
                conn,
                "36.71",
                [
                    decided(f"p{i}", "ProposalAccepted", 1),
                    decided(
                        f"p{i}", "ProposalForwarded", 2, to_stage="kecamatan", to_unit="36.71.01"
                    ),
                ],
            )
        await append_events(
            conn,
            "36.71",
            [
                NewEvent(
                    stream="forum:36.71-2027-kelurahan-36.71.01.1001",
                    type="ForumClosed",
                    payload={"berita_acara": {"tempat": "Aula Kelurahan Sukarasa"}},
                    actor=CLERK,
                    occurred_at=T0,
                    idempotency_key="close",
                )
            ],
        )
    async with engine.connect() as conn:
        live = await _snapshot(conn)
    assert len(live["read.proposals"]) == 30
    async with owner_engine.begin() as conn:  # the read models are the owner's to rebuild
        await conn.execute(text("UPDATE read.proposals SET status = 'tampered'"))
        replayed = await rebuild(conn, page=7)
    assert replayed == 1 + 30 + 30 + 1
    async with engine.connect() as conn:
        assert await _snapshot(conn) == live
