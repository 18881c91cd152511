"""The append path against real PostgreSQL: ordering, idempotency, versions, concurrency."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from datetime import datetime

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from musrenbang.events.append import EventWriter, append_events
from musrenbang.events.errors import IdempotencyConflict, VersionConflict
from musrenbang.events.store import read_log, read_stream
from musrenbang.events.verify import verify_all, verify_log
from tests.events.helpers import T0, decided, submitted


async def test_batch_gets_gapless_seq_and_per_stream_versions(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        first = await append_events(conn, "36.71", [submitted("a"), submitted("b")])
        second = await append_events(
            conn,
            "36.71",
            [
                decided("a", "ProposalAccepted", 1),
                decided("a", "ProposalForwarded", 2, to_stage="kecamatan", to_unit="36.71.01"),
            ],
        )
    assert [r.seq for r in first + second] == [1, 2, 3, 4]
    assert [r.version for r in first + second] == [1, 1, 2, 3]
    assert all(not r.replayed for r in first + second)
    async with engine.connect() as conn:
        events = await read_stream(conn, "proposal:a")
        assert [e.type for e in events] == [
            "ProposalSubmitted",
            "ProposalAccepted",
            "ProposalForwarded",
        ]
        assert events[1].prev_hash == first[1].hash  # chained through the other stream's event
        assert (await verify_all(conn)).ok


async def test_retry_with_same_key_and_content_returns_the_original(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        original = await append_events(conn, "36.71", [submitted("a")])
        await append_events(conn, "36.71", [submitted("b")])
    async with engine.begin() as conn:
        retried = await append_events(conn, "36.71", [submitted("a")])
    assert retried[0].replayed
    assert (retried[0].seq, retried[0].hash) == (original[0].seq, original[0].hash)
    async with engine.connect() as conn:
        assert len(await read_log(conn, "36.71")) == 2


async def test_retry_with_a_new_clock_reading_is_the_same_event(engine: AsyncEngine) -> None:
    # A workflow task retried after a crash re-stamps occurred_at; nothing else differs.
    async with engine.begin() as conn:
        original = await append_events(conn, "36.71", [submitted("a", minutes=0)])
        retried = await append_events(conn, "36.71", [submitted("a", minutes=3)])
    assert retried[0].replayed and retried[0].seq == original[0].seq


async def test_a_command_sent_again_by_a_new_request_is_the_same_event(
    engine: AsyncEngine,
) -> None:
    # The update of the first request was lost with its workflow task after the append;
    # the client's retry (same Idempotency-Key, new request id) runs it again.
    first = dataclasses.replace(submitted("a"), metadata={"correlation_id": "req-1"})
    again = dataclasses.replace(submitted("a"), metadata={"correlation_id": "req-2"})
    async with engine.begin() as conn:
        original = await append_events(conn, "36.71", [first])
        retried = await append_events(conn, "36.71", [again])
    assert retried[0].replayed and retried[0].seq == original[0].seq
    other = dataclasses.replace(submitted("a", cost=1), metadata={"correlation_id": "req-2"})
    with pytest.raises(IdempotencyConflict):
        async with engine.begin() as conn:
            await append_events(conn, "36.71", [other])


async def test_key_reused_for_other_content_is_refused_and_says_so(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await append_events(conn, "36.71", [submitted("a", key="k-1")])
    with pytest.raises(
        IdempotencyConflict, match="k-1 was already used for different content"
    ) as err:
        async with engine.begin() as conn:
            await append_events(conn, "36.71", [submitted("zzz", key="k-1")])
    assert err.value.key == "k-1"
    async with engine.connect() as conn:
        assert len(await read_log(conn, "36.71")) == 1


async def test_version_conflict_names_stream_expected_and_actual(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await append_events(conn, "36.71", [submitted("a")], expected_versions={"proposal:a": 0})
        await append_events(
            conn,
            "36.71",
            [decided("a", "ProposalAccepted", 1)],
            expected_versions={"proposal:a": 1},
        )
    with pytest.raises(VersionConflict) as err:
        async with engine.begin() as conn:
            await append_events(
                conn,
                "36.71",
                [submitted("b"), decided("a", "ProposalRejected", 2, reason="x")],
                expected_versions={"proposal:a": 1},
            )
    assert (err.value.stream, err.value.expected, err.value.actual) == ("proposal:a", 1, 2)
    assert "proposal:a is at version 2, expected 1" in str(err.value)
    async with engine.connect() as conn:  # the whole batch was refused, b included
        assert [e.stream for e in await read_log(conn, "36.71")] == ["proposal:a", "proposal:a"]


async def test_stream_state_as_of_a_moment(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await append_events(conn, "36.71", [submitted("a", minutes=0)])
        await append_events(
            conn, "36.71", [decided("a", "ProposalRejected", 1, minutes=90, reason="dobel")]
        )
    from datetime import timedelta

    async with engine.connect() as conn:
        early = await read_stream(conn, "proposal:a", as_of=T0 + timedelta(minutes=30))
        late = await read_stream(conn, "proposal:a", as_of=T0 + timedelta(minutes=90))
    assert [e.type for e in early] == ["ProposalSubmitted"]
    assert [e.type for e in late] == ["ProposalSubmitted", "ProposalRejected"]


async def test_logs_are_independent_chains(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        a = await append_events(conn, "36.71", [submitted("a")])
        b = await append_events(conn, "36.74", [submitted("b")])
    assert a[0].seq == b[0].seq == 1
    async with engine.connect() as conn:
        assert (await verify_log(conn, "36.74")).checked == 1


async def test_eight_concurrent_appenders_lose_nothing(engine: AsyncEngine) -> None:
    writers, per_writer = 8, 400
    rng = random.Random(7)

    async def writer(w: int) -> None:
        # even writers append inside transactions of their own making, odd ones through
        # the application's EventWriter (each call its own transaction)
        own = EventWriter(engine.url)
        done = 0
        try:
            while done < per_writer:
                size = min(rng.choice([1, 1, 3, 10, 40]), per_writer - done)
                batch = [submitted(f"w{w}-{done + i}") for i in range(size)]
                if w % 2:
                    await own.append("36.71", batch)
                else:
                    async with engine.begin() as conn:
                        await append_events(conn, "36.71", batch)
                done += size
        finally:
            await own.aclose()

    await asyncio.gather(*(writer(w) for w in range(writers)))
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT seq, stream FROM audit.events ORDER BY seq"))).all()
        assert [r.seq for r in rows] == list(range(1, writers * per_writer + 1))
        assert len({r.stream for r in rows}) == writers * per_writer
        result = await verify_all(conn)
    assert result.ok and result.checked == writers * per_writer


async def test_reader_tailing_seq_never_skips_a_late_commit(engine: AsyncEngine) -> None:
    # Writer A holds its transaction open after appending; writer B queues behind it.
    # A reader tailing by seq must see nothing past what is committed, in order.
    seen: list[int] = []

    async def tail_once() -> None:
        async with engine.connect() as conn:
            for event in await read_log(conn, "36.71", after=seen[-1] if seen else 0):
                assert event.seq == (seen[-1] if seen else 0) + 1, "the reader skipped a seq"
                seen.append(event.seq)

    async with engine.begin() as conn:
        await append_events(conn, "36.71", [submitted("first")])
    await tail_once()

    conn_a = await engine.connect()
    tx_a = await conn_a.begin()
    await append_events(conn_a, "36.71", [submitted("slow")])  # seq 2, uncommitted

    async def writer_b() -> None:
        async with engine.begin() as conn:
            await append_events(conn, "36.71", [submitted("fast")])

    b = asyncio.create_task(writer_b())
    await asyncio.sleep(0.3)
    assert not b.done(), "B must wait on the log's head row"
    await tail_once()
    assert seen == [1]
    await tx_a.commit()
    await conn_a.close()
    await b
    await tail_once()
    assert seen == [1, 2, 3]


async def test_continuous_tailing_under_concurrent_writers(engine: AsyncEngine) -> None:
    total = 6 * 150
    stop = asyncio.Event()
    seen: list[int] = []

    async def writer(w: int) -> None:
        for i in range(0, 150, 5):
            async with engine.begin() as conn:
                await append_events(conn, "36.71", [submitted(f"t{w}-{i + k}") for k in range(5)])

    async def reader() -> None:
        while not stop.is_set() or len(seen) < total:
            async with engine.connect() as conn:
                page = await read_log(conn, "36.71", after=seen[-1] if seen else 0, limit=50)
            for event in page:
                assert event.seq == len(seen) + 1
                seen.append(event.seq)
            await asyncio.sleep(0)

    task = asyncio.create_task(reader())
    await asyncio.gather(*(writer(w) for w in range(6)))
    stop.set()
    await asyncio.wait_for(task, 30)
    assert seen == list(range(1, total + 1))


async def test_every_column_an_event_is_found_by_is_its_contents(engine: AsyncEngine) -> None:
    """The append functions write the descriptive columns from the content they hash, in
    a batch (audit.append) and alone (audit.append_one_*)."""
    writer = EventWriter(engine.url)
    try:
        await writer.append("36.71", [submitted("a"), submitted("b")])
        await writer.append("36.71", [decided("a", "ProposalAccepted", 1, reason="Prioritas")])
    finally:
        await writer.aclose()
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT content::jsonb AS c, idempotency_key, stream, type, cycle_id,"
                    " payload, actor, occurred_at FROM audit.events ORDER BY seq"
                )
            )
        ).all()
    assert len(rows) == 3
    for row in rows:
        c = row.c
        assert (row.idempotency_key, row.stream, row.type) == (
            c["idempotency_key"],
            c["stream"],
            c["type"],
        )
        assert row.cycle_id == c["metadata"]["cycle_id"]
        assert (row.payload, row.actor) == (c["payload"], c["actor"])
        assert row.occurred_at == datetime.fromisoformat(c["occurred_at"])
