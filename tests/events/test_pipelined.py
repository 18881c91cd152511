"""A large batch is sent in two parts, pipelined in one transaction: all of it is written
or none, whatever goes wrong in its second part."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from musrenbang.events import append as append_module
from musrenbang.events.append import EventWriter, _parts, append_events
from musrenbang.events.db import conninfo
from musrenbang.events.errors import InvalidEvent
from musrenbang.events.model import NewEvent
from musrenbang.events.verify import verify_all, verify_read_models
from tests.events.helpers import decided, submitted


@pytest.fixture
def pipelined(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, bool]]:
    """What each pipelined attempt did: the size of its first part and whether it wrote.
    The test's writers start with guesses of their own (other tests' usulan have the same
    names in their own databases)."""
    monkeypatch.setattr(append_module, "_SEEN", append_module._Seen(1_000))
    attempts: list[tuple[int, bool]] = []
    real = append_module._Batch.pipelined

    async def watched(batch: Any, driver: Any, parts: Sequence[Sequence[int]]) -> bool:
        try:
            wrote = await real(batch, driver, parts)
        except BaseException:
            attempts.append((len(parts[0]), False))
            raise
        attempts.append((len(parts[0]), wrote))
        return wrote

    monkeypatch.setattr(append_module._Batch, "pipelined", watched)
    return attempts


def usulan(tag: str, count: int, per: int = 10) -> list[NewEvent]:
    """`count` usulan of `per` events each, one usulan after another."""
    return [
        submitted(f"{tag}{u}") if n == 0 else decided(f"{tag}{u}", "ProposalPrioritized", n)
        for u in range(count)
        for n in range(per)
    ]


async def _log(engine: AsyncEngine) -> list[tuple[int, str]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT seq, idempotency_key FROM audit.events ORDER BY seq")
        )
        return [(r.seq, r.idempotency_key) for r in rows]


async def _sound(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        assert (await verify_all(conn)).ok
        check = await verify_read_models(conn)
        assert check.ok, (check.record, check.problem)


def test_a_batch_is_cut_only_where_no_stream_goes_on() -> None:
    assert _parts(usulan("a", 3)) is None  # too small to be worth two calls
    assert _parts(usulan("a", 10)) == [list(range(30)), list(range(30, 100))]
    # one usulan's events interleaved with every other's: no cut keeps each stream whole
    interleaved = [e for n in range(10) for e in usulan("b", 10)[n::10]]
    assert _parts(interleaved) is None
    # the only cut is past four fifths of the batch: not worth a pipeline
    lopsided = usulan("c", 1, 45) + usulan("d", 1, 5)
    assert _parts(lopsided) is None
    # a cut between streams that interleave on either side of it
    mixed = [e for n in range(4) for e in usulan("e", 4)[n::4]] + usulan("f", 8, 5)
    parts = _parts(mixed)
    assert parts is not None and parts[0] == list(range(40))


async def test_a_large_batch_is_written_in_two_parts_in_its_order(
    engine: AsyncEngine, writer: EventWriter, pipelined: list[tuple[int, bool]]
) -> None:
    events = usulan("a", 10)
    answers = await writer.append("36.71", events)
    assert pipelined == [(30, True)]
    assert [(a.seq, a.version, a.replayed) for a in answers] == [
        (i + 1, i % 10 + 1, False) for i in range(100)
    ]
    assert await _log(engine) == [(i + 1, e.idempotency_key) for i, e in enumerate(events)]
    await _sound(engine)
    # the next batch of the same usulan goes on from what the parts left as guesses
    more = await writer.append(
        "36.71", [decided(f"a{u}", "ProposalAccepted", 10) for u in range(10)]
    )
    assert [a.version for a in more] == [11] * 10
    await _sound(engine)


async def test_a_stale_guess_in_the_second_part_writes_none_of_the_first(
    engine: AsyncEngine, writer: EventWriter, pipelined: list[tuple[int, bool]]
) -> None:
    """Another process wrote an usulan of the second part: this process's guess of it is
    wrong, the database aborts the pipelined transaction, and the batch is then written
    whole the usual way, each event once, in order, after the other process's."""
    other = EventWriter(engine.url)
    try:
        await other.append("36.71", [submitted("b9", key="elsewhere:b9")])
    finally:
        await other.aclose()
    # what this process believes of it: one event, with another hash
    append_module._SEEN.put("proposal:b9", append_module._Guess(bytes(32), 1, None))
    events = [e for e in usulan("b", 10) if e.idempotency_key != "submit:b9"]
    answers = await writer.append("36.71", events)
    assert pipelined == [(30, False)]
    assert not any(a.replayed for a in answers)
    assert [a.seq for a in answers] == list(range(2, 2 + len(events)))
    assert [a.version for a in answers if a.seq > 1 + 90] == list(range(2, 11))
    assert await _log(engine) == [(1, "elsewhere:b9")] + [
        (i + 2, e.idempotency_key) for i, e in enumerate(events)
    ]
    await _sound(engine)


async def test_a_key_already_recorded_in_the_second_part_is_answered_as_recorded(
    engine: AsyncEngine, writer: EventWriter, pipelined: list[tuple[int, bool]]
) -> None:
    events = usulan("c", 10)
    first = await writer.append("36.71", events[95:96])  # one event of usulan c9, alone
    assert first[0].seq == 1
    # a batch holding that event again: its key, recorded, aborts the pipeline
    again = await writer.append("36.71", events[:95] + events[95:96])
    assert pipelined[-1] == (30, False)
    assert [a.replayed for a in again] == [False] * 95 + [True]
    assert again[-1].seq == 1
    assert [a.seq for a in again[:95]] == list(range(2, 97))
    await _sound(engine)


async def test_an_invalid_event_in_the_second_part_writes_nothing(
    engine: AsyncEngine, writer: EventWriter, pipelined: list[tuple[int, bool]]
) -> None:
    events = usulan("d", 10)
    events[81] = decided("d8", "ProposalPrioritized", 1, score=float("nan"))
    with pytest.raises(InvalidEvent):
        await writer.append("36.71", events)
    assert pipelined == [(30, False)]
    assert await _log(engine) == []
    # the writer's connection is still good, and the guesses were left as they were
    fine = usulan("d", 10)
    answers = await writer.append("36.71", fine)
    assert [a.seq for a in answers] == list(range(1, 101))
    await _sound(engine)


async def test_a_strict_part_whose_guess_does_not_hold_raises(
    engine: AsyncEngine, writer: EventWriter
) -> None:
    """`audit.append` called strict (migration 0012) raises MR010 where it would otherwise
    answer `stale`, so a pipelined transaction cannot commit its other parts."""
    await writer.append("36.71", [submitted("e")])
    batch = [decided("e", "ProposalAccepted", 1), decided("e", "ProposalPrioritized", 2)]
    wrong = {"proposal:e": append_module._Guess(bytes(32), 1, None)}
    planned = append_module.plan(batch, {"proposal:e": None})
    contents = [e.content("36.71") for e in batch]
    arguments = append_module._arguments("36.71", batch, contents, {}, wrong, planned, check=False)
    conn = await writer._connection("36.71")
    rows = await (await conn.execute(append_module._APPEND, arguments, binary=True)).fetchall()
    assert [row[0] for row in rows] == ["stale"]
    with pytest.raises(psycopg.Error) as refused:
        await conn.execute(append_module._APPEND_PART, arguments, binary=True)
    assert refused.value.sqlstate == "MR010"
    assert len(await _log(engine)) == 1


async def test_inside_a_transaction_a_batch_is_not_pipelined(
    engine: AsyncEngine, pipelined: list[tuple[int, bool]]
) -> None:
    """A connection in autocommit mode with a transaction of its caller's open: the batch
    is one statement of that transaction, which its caller commits or rolls back."""
    async with await psycopg.AsyncConnection.connect(
        conninfo(engine.url), autocommit=True, options="-c timezone=UTC"
    ) as conn:
        async with conn.transaction(force_rollback=True):
            answers = await append_events(conn, "36.71", usulan("f", 10))
            assert len(answers) == 100
        assert pipelined == []
        rows = await (await conn.execute("SELECT count(*) FROM audit.events")).fetchone()
        assert rows == (0,)  # rolled back with its caller's transaction
