"""Revisions 0010, 0011 and 0012 down and up again on a log with events: nothing recorded is
lost, every column still says what its content says, the chain verifies at each step,
appends queue for their log exactly when 0011 is in place, and 0012 refuses a log it
could not read."""

from __future__ import annotations

import asyncio

import pytest
from alembic import command
from sqlalchemy import URL, text

from musrenbang.events.append import EventWriter
from musrenbang.events.db import app_url, create_engine, migrations_config
from musrenbang.events.verify import verify_all
from tests.conftest import APP_PASSWORD, APP_USER
from tests.events.helpers import decided, submitted

_CONSISTENT = text(
    "SELECT count(*) FROM audit.events WHERE stream IS DISTINCT FROM content::jsonb->>'stream'"
    " OR type IS DISTINCT FROM content::jsonb->>'type'"
    " OR idempotency_key IS DISTINCT FROM content::jsonb->>'idempotency_key'"
    " OR payload IS DISTINCT FROM content::jsonb->'payload'"
    " OR actor IS DISTINCT FROM content::jsonb->'actor'"
    " OR cycle_id IS DISTINCT FROM content::jsonb->'metadata'->>'cycle_id'"
)


def _alembic(owner: URL, verb: str, revision: str) -> None:
    getattr(command, verb)(migrations_config(owner, APP_USER, APP_PASSWORD), revision)


async def _append(owner: URL, tag: str, *, batched: bool = True) -> None:
    """Three events: two in one batch (audit.append) unless not `batched`, then one alone
    (audit.append_one_proposal, whose signature 0010 keeps)."""
    writer = EventWriter(app_url(owner, APP_USER, APP_PASSWORD))
    try:
        first = [submitted(f"{tag}1"), submitted(f"{tag}2")]
        for batch in [first] if batched else [[e] for e in first]:
            await writer.append("36.71", batch)
        await writer.append("36.71", [decided(f"{tag}1", "ProposalAccepted", 1)])
    finally:
        await writer.aclose()


async def _state(owner: URL) -> tuple[int, int, bool]:
    engine = create_engine(app_url(owner, APP_USER, APP_PASSWORD))
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT count(*) FROM audit.events"))).scalar_one()
            wrong = (await conn.execute(_CONSISTENT)).scalar_one()
            return rows, wrong, (await verify_all(conn)).ok
    finally:
        await engine.dispose()


def test_revision_0010_goes_down_and_up_keeping_the_log(owner_db: URL) -> None:
    asyncio.run(_append(owner_db, "a"))
    assert asyncio.run(_state(owner_db)) == (3, 0, True)
    _alembic(owner_db, "downgrade", "0009")  # the generated columns again
    asyncio.run(_append(owner_db, "b", batched=False))  # as the functions were
    assert asyncio.run(_state(owner_db)) == (6, 0, True)
    _alembic(owner_db, "upgrade", "head")
    asyncio.run(_append(owner_db, "c"))
    assert asyncio.run(_state(owner_db)) == (9, 0, True)


async def _waits_for_the_queue(owner: URL, tag: str) -> bool:
    """Whether an append to 36.71 waits while another transaction holds the log's queue
    (revision 0011); it is written either way once the holder lets go."""
    engine = create_engine(owner)
    writer = EventWriter(app_url(owner, APP_USER, APP_PASSWORD))
    try:
        async with engine.begin() as holder:
            await holder.execute(
                text("SELECT pg_advisory_xact_lock(hashtextextended('musrenbang.append:36.71', 0))")
            )
            single = asyncio.create_task(writer.append("36.71", [submitted(f"{tag}1")]))
            done, _ = await asyncio.wait([single], timeout=0.5)
        await asyncio.wait_for(single, 10)
        return not done
    finally:
        await writer.aclose()
        await engine.dispose()


def test_revision_0011_queues_appends_and_goes_down_and_up(owner_db: URL) -> None:
    asyncio.run(_append(owner_db, "a"))
    assert asyncio.run(_waits_for_the_queue(owner_db, "q"))
    _alembic(owner_db, "downgrade", "0010")  # the head row's lock alone
    assert not asyncio.run(_waits_for_the_queue(owner_db, "r"))
    asyncio.run(_append(owner_db, "b"))
    assert asyncio.run(_state(owner_db)) == (8, 0, True)
    _alembic(owner_db, "upgrade", "head")
    assert asyncio.run(_waits_for_the_queue(owner_db, "s"))
    asyncio.run(_append(owner_db, "c"))
    assert asyncio.run(_state(owner_db)) == (12, 0, True)


async def _columns(owner: URL) -> dict[str, str]:
    """How `payload` is held (stored or virtual) and the collation `stream` compares by."""
    engine = create_engine(owner)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT a.attname, a.attgenerated, coalesce(c.collname, '') AS coll"
                    " FROM pg_attribute a LEFT JOIN pg_collation c ON c.oid = a.attcollation"
                    " WHERE a.attrelid = 'audit.events'::regclass"
                    " AND a.attname IN ('payload', 'stream') AND NOT a.attisdropped"
                )
            )
            return {r.attname: r.attgenerated or r.coll for r in rows}
    finally:
        await engine.dispose()


def test_revision_0012_goes_down_and_up_keeping_the_log(owner_db: URL) -> None:
    asyncio.run(_append(owner_db, "a"))
    assert asyncio.run(_columns(owner_db)) == {"payload": "v", "stream": "C"}
    _alembic(owner_db, "downgrade", "0011")  # payload stored again, filled from the content
    assert asyncio.run(_columns(owner_db)) == {"payload": "", "stream": "default"}
    assert asyncio.run(_state(owner_db)) == (3, 0, True)
    asyncio.run(_append(owner_db, "b"))
    _alembic(owner_db, "upgrade", "head")
    assert asyncio.run(_columns(owner_db)) == {"payload": "v", "stream": "C"}
    asyncio.run(_append(owner_db, "c"))
    assert asyncio.run(_state(owner_db)) == (9, 0, True)


def test_revision_0012_refuses_a_log_holding_a_content_jsonb_cannot(owner_db: URL) -> None:
    """A content recorded before revision 0010 was parsed as json only; one that jsonb
    refuses (an escaped NUL) would leave a payload nobody could read: the upgrade stops
    and names it."""
    _alembic(owner_db, "downgrade", "0011")

    async def record() -> None:
        engine = create_engine(owner_db)
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    text(
                        "INSERT INTO audit.events (log_id, seq, content, version, recorded_at,"
                        " occurred_at, prev_hash, hash) VALUES ('36.71', 7, :c, 1, now(), now(),"
                        " decode(repeat('00', 32), 'hex'), decode(repeat('00', 32), 'hex'))"
                    ),
                    {"c": '{"payload":{"masalah":"a\\u0000b"},"stream":"proposal:x"}'},
                )
        finally:
            await engine.dispose()

    asyncio.run(record())
    with pytest.raises(RuntimeError, match=r"log 36\.71, seq 7: its content does not parse"):
        _alembic(owner_db, "upgrade", "head")
    assert asyncio.run(_columns(owner_db)) == {"payload": "", "stream": "default"}
