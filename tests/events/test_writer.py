"""The application's append path (`EventWriter`: one statement, its own transaction) and the
guesses it makes of each projected stream's state."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from musrenbang.domain.records import evolve_proposal
from musrenbang.events import append as append_module
from musrenbang.events.append import EventWriter, append_events
from musrenbang.events.canonical import leaf_hash, record_bytes
from musrenbang.events.db import conninfo
from musrenbang.events.errors import EventLogError, IdempotencyConflict, VersionConflict
from musrenbang.events.model import NewEvent
from musrenbang.events.projections import plan
from musrenbang.events.verify import verify_all, verify_read_models
from tests.events.helpers import CLERK, T0, decided, submitted

TABLES = ["read.proposals", "read.forums", "read.cycles"]


async def _read_models(conn: AsyncConnection) -> dict[str, list[str]]:
    return {
        table: [r[0] for r in await conn.execute(text(f"SELECT t::text FROM {table} t ORDER BY 1"))]
        for table in TABLES
    }


async def _assert_read_models_follow_the_log(engine: AsyncEngine) -> None:
    """The live read models equal what a fold of the log makes of them."""
    async with engine.connect() as conn:
        check = await verify_read_models(conn)
    assert check.ok, (check.record, check.problem)
    assert check.checked > 0


async def test_an_append_is_its_own_transaction(engine: AsyncEngine, writer: EventWriter) -> None:
    first = await writer.append("36.71", [submitted("a"), submitted("b")])
    again = await writer.append("36.71", [submitted("a")])
    assert [(r.seq, r.version, r.replayed) for r in first] == [(1, 1, False), (2, 1, False)]
    assert (again[0].seq, again[0].hash, again[0].replayed) == (1, first[0].hash, True)
    async with engine.connect() as conn:  # committed: another connection sees it
        assert (await conn.execute(text("SELECT count(*) FROM audit.events"))).scalar() == 2
        status = (
            await conn.execute(text("SELECT status FROM read.proposals WHERE proposal_id = 'a'"))
        ).scalar()
    assert status == "submitted"


async def test_the_database_chains_by_the_documented_rule(
    engine: AsyncEngine, writer: EventWriter
) -> None:
    await writer.append("36.71", [submitted("a"), decided("a", "ProposalAccepted", 1)])
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT seq, content, version, recorded_at, prev_hash, hash"
                    " FROM audit.events ORDER BY seq"
                )
            )
        ).all()
    prev = bytes(32)
    for row in rows:
        assert row.prev_hash == prev
        record = record_bytes(row.content, row.recorded_at, row.version)
        assert row.hash == leaf_hash(prev, row.seq, record)
        prev = row.hash


async def test_a_stale_guess_writes_nothing_and_is_folded_afresh(
    engine: AsyncEngine, writer: EventWriter
) -> None:
    # What another worker process leaves behind: this process's guess of proposal:a is
    # wrong (an old hash and state), and of proposal:b it has none at all.
    await writer.append("36.71", [submitted("a"), submitted("b")])
    await writer.append("36.71", [decided("a", "ProposalAccepted", 1)])
    append_module._SEEN.put("proposal:a", append_module._Guess(bytes(32), 2, {"x": 1}))
    append_module._SEEN.forget("proposal:b")
    results = await writer.append(
        "36.71",
        [
            decided("a", "ProposalRejected", 2, reason_code="duplikat", reason="Sama"),
            decided("b", "ProposalDeferred", 1, reason_code="pagu", reason="Tahun depan"),
        ],
    )
    assert [(r.seq, r.version) for r in results] == [(4, 3), (5, 2)]
    async with engine.connect() as conn:
        rows = {
            r.proposal_id: r
            for r in await conn.execute(
                text("SELECT proposal_id, status, state, version, last_seq FROM read.proposals")
            )
        }
        assert (await verify_all(conn)).ok
    assert (rows["a"].status, rows["a"].version, rows["a"].last_seq) == ("rejected", 3, 4)
    assert rows["a"].state["reason"]["code"] == "duplikat"
    assert (rows["b"].status, rows["b"].version) == ("deferred", 2)
    await _assert_read_models_follow_the_log(engine)


# Alone, an event goes to audit.append_one; with another, to audit.append without its full
# check. Each must catch what a wrong guess would otherwise write.
SHAPES = pytest.mark.parametrize("alone", [True, False], ids=["one event", "two events"])


def _with(alone: bool, event: NewEvent, tag: str) -> list[NewEvent]:
    return [event] if alone else [event, submitted(f"new-{tag}")]


@SHAPES
async def test_a_guess_left_behind_is_refused_by_the_stream_and_folded_afresh(
    engine: AsyncEngine, writer: EventWriter, alone: bool
) -> None:
    # This process last saw proposal:a at version 1; another process has since written
    # version 2. The guess still holds as far as it goes, so the writer skips the full
    # check, and the stream's unique version is what refuses the append.
    await writer.append("36.71", [submitted("a")])
    behind = append_module._SEEN.get("proposal:a")
    await writer.append("36.71", [decided("a", "ProposalAccepted", 1)])
    append_module._SEEN.put("proposal:a", behind)
    results = await writer.append(
        "36.71", _with(alone, decided("a", "ProposalRevised", 2, changes={"volume": 90}), "r")
    )
    assert (results[0].seq, results[0].version, results[0].replayed) == (3, 3, False)
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT status, version, last_seq FROM read.proposals WHERE proposal_id = 'a'")
            )
        ).one()
        assert (await verify_all(conn)).checked == len(results) + 2
    assert (row.status, row.version, row.last_seq) == ("accepted", 3, 3)
    await _assert_read_models_follow_the_log(engine)


@SHAPES
async def test_a_guess_ahead_of_the_log_or_with_another_hash_is_caught(
    engine: AsyncEngine, writer: EventWriter, alone: bool
) -> None:
    # A guess can run ahead of the log (a caller's transaction that appended, then rolled
    # back) or name the right version with another hash and state. No unique index
    # refuses either, so the database's probe of the guess must.
    await writer.append("36.71", [submitted("a"), submitted("b")])
    await writer.append("36.71", [decided("a", "ProposalAccepted", 1)])
    append_module._SEEN.put("proposal:a", append_module._Guess(bytes(32), 3, {"x": 1}))
    ahead = await writer.append(
        "36.71", _with(alone, decided("a", "ProposalRevised", 2, changes={}), "ahead")
    )
    append_module._SEEN.put("proposal:b", append_module._Guess(bytes(32), 1, {"x": 1}))
    other = await writer.append("36.71", _with(alone, decided("b", "ProposalAccepted", 3), "other"))
    step = 1 if alone else 2
    assert [(r.seq, r.version) for r in (ahead[0], other[0])] == [(4, 3), (4 + step, 2)]
    async with engine.connect() as conn:
        assert (await verify_all(conn)).checked == 3 + 2 * step
        states = dict(
            (await conn.execute(text("SELECT proposal_id, status FROM read.proposals"))).all()
        )
    assert (states["a"], states["b"]) == ("accepted", "accepted")
    await _assert_read_models_follow_the_log(engine)


def _other(stream: str, event_type: str, payload: dict[str, Any], key: str) -> NewEvent:
    return NewEvent(
        stream=stream,
        type=event_type,
        payload=payload,
        actor=CLERK,
        occurred_at=T0,
        idempotency_key=key,
    )


async def test_append_one_writes_only_when_the_guess_holds(
    engine: AsyncEngine, owner_engine: AsyncEngine
) -> None:
    # audit.append_one and its read models' variants, called as the application role: no
    # row and nothing written when the guess fails; a unique index refuses a key or a
    # version already taken.
    info = conninfo(engine.url)
    first, second = submitted("a"), decided("a", "ProposalAccepted", 1)

    def call(event: NewEvent, guess: append_module._Guess) -> tuple[str, tuple[Any, ...]]:
        planned = plan([event], {event.stream: guess.state})
        return append_module._one_arguments("36.71", event.content("36.71"), guess, event, planned)

    async with await psycopg.AsyncConnection.connect(info, autocommit=True) as conn:

        async def append_one(statement: str, arguments: tuple[Any, ...]) -> list[tuple[Any, ...]]:
            return await (await conn.execute(statement, arguments)).fetchall()

        async def log() -> tuple[Any, ...]:
            cur = await conn.execute(
                "SELECT (SELECT count(*) FROM audit.events), (SELECT count(*) FROM"
                " read.proposals), (SELECT head_seq FROM audit.logs WHERE log_id = '36.71')"
            )
            return await cur.fetchone() or ()

        assert await append_one(*call(first, append_module._Guess())) == []  # no log yet
        assert await log() == (0, 0, None)
        async with owner_engine.begin() as owner:  # a log's head row is the owner's
            await owner.execute(text("INSERT INTO audit.logs (log_id) VALUES ('36.71')"))

        [row] = await append_one(*call(first, append_module._Guess()))
        assert row[:4] + row[5:6] == ("appended", 1, "proposal:a", 1, 1)
        record = record_bytes(first.content("36.71"), row[6], 1)
        assert row[4] == leaf_hash(bytes(32), 1, record)
        state = evolve_proposal(None, first.type, first.payload)
        known = append_module._Guess(row[4], 1, state)

        for wrong in (
            append_module._Guess(row[4], 2, state),  # ahead of the log
            append_module._Guess(bytes(32), 1, state),  # the right version, another hash
        ):
            assert await append_one(*call(decided("a", "ProposalRevised", 9), wrong)) == []
        assert await log() == (1, 1, 1)
        with pytest.raises(psycopg.errors.UniqueViolation, match="idempotency_key"):
            await append_one(*call(submitted("b", key="submit:a"), append_module._Guess()))
        with pytest.raises(psycopg.errors.UniqueViolation, match="stream_version"):
            await append_one(*call(submitted("a", key="again:a"), append_module._Guess()))
        assert await log() == (1, 1, 1)

        [row] = await append_one(*call(second, known))
        assert row[3:6:2] == (2, 2)
        cur = await conn.execute(
            "SELECT status, version, last_seq FROM read.proposals WHERE proposal_id = 'a'"
        )
        assert await cur.fetchone() == ("accepted", 2, 2)

        # a forum's, a cycle's and an event of no read model, each by its own function
        others = [
            (_other("forum:f1", "ForumOpened", {"forum_id": "f1"}, "f"), "append_one_forum"),
            (_other("cycle:c1", "CycleOpened", {"cycle_id": "c1"}, "c"), "append_one_cycle"),
            (_other("catatan:n1", "NoteWritten", {"text": "Rapat ditunda"}, "n"), "append_one"),
        ]
        for seq, (event, function) in enumerate(others, start=3):
            statement, arguments = call(event, append_module._Guess())
            assert f"audit.{function}(" in statement
            [row] = await append_one(statement, arguments)
            assert (row[2], row[3]) == (event.stream, seq)
        cur = await conn.execute(
            "SELECT (SELECT status FROM read.forums), (SELECT status FROM read.cycles)"
        )
        assert await cur.fetchone() == ("open", "open")
    async with engine.connect() as check:
        assert (await verify_all(check)).checked == 5
    await _assert_read_models_follow_the_log(engine)


async def test_the_writer_answers_retries_key_reuse_and_expected_versions(
    engine: AsyncEngine,
    writer: EventWriter,
) -> None:
    first = await writer.append("36.71", [submitted("a"), submitted("b")])
    # a retry of the whole batch, and of a part of it with something new
    again = await writer.append("36.71", [submitted("a"), submitted("b")])
    mixed = await writer.append("36.71", [submitted("b"), submitted("c")])
    with pytest.raises(IdempotencyConflict, match="submit:a"):
        await writer.append("36.71", [submitted("zzz", key="submit:a")])
    with pytest.raises(VersionConflict) as conflict:
        await writer.append(
            "36.71",
            [decided("a", "ProposalAccepted", 1)],
            expected_versions={"proposal:a": 0},
        )
    held = await writer.append(
        "36.71", [decided("a", "ProposalAccepted", 1)], expected_versions={"proposal:a": 1}
    )
    assert [(r.seq, r.replayed) for r in again] == [(1, True), (2, True)]
    assert again[0].hash == first[0].hash
    assert [(r.seq, r.replayed) for r in mixed] == [(2, True), (3, False)]
    assert (conflict.value.stream, conflict.value.expected, conflict.value.actual) == (
        "proposal:a",
        0,
        1,
    )
    assert [(r.seq, r.version) for r in held] == [(4, 2)]
    async with engine.connect() as conn:
        assert (await verify_all(conn)).checked == 4
    await _assert_read_models_follow_the_log(engine)


async def test_writers_racing_on_the_same_usulan_lose_nothing(
    engine: AsyncEngine, writer: EventWriter
) -> None:
    # Eight writers (connections of their own, a batch or one event a transaction, and the
    # caller-owned transaction path) decide on the same ten usulan at once; every guess
    # that goes stale is caught.
    proposals = [f"p{i}" for i in range(10)]
    await writer.append("36.71", [submitted(p) for p in proposals])
    rng = random.Random(5)

    async def decide(w: int) -> None:
        own = EventWriter(engine.url)
        try:
            for n in range(15):
                picked = rng.sample(proposals, 3)
                # revisions add up in the read model: a stale state would lose some
                batch = [
                    decided(p, "ProposalRevised", w * 100 + n, changes={f"w{w}n{n}": n})
                    for p in picked
                ]
                if w % 4 == 1:
                    await own.append("36.71", batch)
                elif w % 4 == 3:  # one event a transaction
                    for one in batch:
                        await own.append("36.71", [one])
                else:
                    async with engine.begin() as conn:
                        await append_events(conn, "36.71", batch)
        finally:
            await own.aclose()

    await asyncio.gather(*(decide(w) for w in range(8)))
    async with engine.connect() as conn:
        total = (await conn.execute(text("SELECT count(*) FROM audit.events"))).scalar()
        versions = dict(
            (
                await conn.execute(
                    text("SELECT proposal_id, version FROM read.proposals ORDER BY 1")
                )
            ).all()
        )
        per_stream = dict(
            (
                await conn.execute(
                    text("SELECT stream, count(*) FROM audit.events GROUP BY stream")
                )
            ).all()
        )
        assert (await verify_all(conn)).ok
    assert total == 10 + 8 * 15 * 3
    assert {p: per_stream[f"proposal:{p}"] for p in proposals} == versions
    await _assert_read_models_follow_the_log(engine)


async def test_a_lost_connection_is_replaced(
    engine: AsyncEngine, writer: EventWriter, owner_engine: AsyncEngine
) -> None:
    await writer.append("36.71", [submitted("a")])
    async with owner_engine.connect() as conn:
        killed = (
            await conn.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE usename = 'musrenbang_app' AND pid <> pg_backend_pid()"
                )
            )
        ).scalar()
    assert killed >= 1
    results = await writer.append("36.71", [submitted("b")])
    assert results[0].seq == 2


async def test_a_cancelled_append_leaves_the_writer_usable(
    engine: AsyncEngine, owner_engine: AsyncEngine, writer: EventWriter
) -> None:
    # A cancelled activity can stop an append half-way: here it waits on the log's head,
    # which another transaction holds, and is cancelled there.
    await writer.append("36.71", [submitted("a")])
    async with owner_engine.begin() as holder:
        await holder.execute(text("SELECT 1 FROM audit.logs WHERE log_id = '36.71' FOR UPDATE"))
        waiting = asyncio.create_task(writer.append("36.71", [submitted("b")]))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
    retried = await writer.append("36.71", [submitted("b")])  # the activity's retry
    after = await writer.append("36.71", [submitted("c")])
    assert (retried[0].seq, after[0].seq) == (2, 3)
    async with engine.connect() as conn:
        assert (await verify_all(conn)).checked == 3


async def test_a_batch_naming_a_key_twice_is_refused(
    engine: AsyncEngine, writer: EventWriter
) -> None:
    with pytest.raises(EventLogError, match="more than once"):
        await writer.append("36.71", [submitted("a"), submitted("b", key="submit:a")])
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM audit.events"))).scalar() == 0


async def test_appends_that_queue_meanwhile_go_in_one_transaction_and_fail_alone(
    engine: AsyncEngine, owner_engine: AsyncEngine, writer: EventWriter
) -> None:
    # While another transaction holds the log's head, appends queue in the writer; when it
    # lets go, they are written together (one transaction: one recorded_at), except where
    # two touch one stream (the second waits for the first); a group that holds one at
    # fault (a version conflict, a key reused for other content) is halved until that
    # one alone is refused.
    await writer.append("36.71", [submitted("a"), submitted("b")])
    async with owner_engine.begin() as holder:
        await holder.execute(text("SELECT 1 FROM audit.logs WHERE log_id = '36.71' FOR UPDATE"))
        first = asyncio.create_task(writer.append("36.71", [submitted("x0")]))
        await asyncio.sleep(0.2)  # the first takes its turn and waits on the head
        queued = [
            writer.append("36.71", [submitted(f"q{i}"), decided(f"q{i}", "ProposalAccepted", i)])
            for i in range(5)
        ]
        queued.append(
            writer.append(
                "36.71", [decided("a", "ProposalAccepted", 9)], expected_versions={"proposal:a": 5}
            )
        )
        queued.append(writer.append("36.71", [submitted("other", key="submit:b")]))
        queued.append(writer.append("36.71", [decided("b", "ProposalAccepted", 1)]))
        queued.append(writer.append("36.71", [decided("b", "ProposalRejected", 2)]))
        tasks = [asyncio.create_task(q) for q in queued]
        await asyncio.sleep(0.2)
        assert not first.done() and not any(t.done() for t in tasks)
    await first
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    together = [r for result in outcomes[:5] for r in result]  # type: ignore[union-attr]
    assert [r.version for r in together] == [1, 2] * 5
    assert isinstance(outcomes[5], VersionConflict)
    assert isinstance(outcomes[6], IdempotencyConflict)
    b_accepted, b_rejected = outcomes[7][0], outcomes[8][0]  # type: ignore[index]
    assert (b_accepted.version, b_rejected.version) == (2, 3)
    assert b_rejected.seq > b_accepted.seq
    async with engine.connect() as conn:
        stamps = (
            await conn.execute(
                text(
                    "SELECT count(DISTINCT recorded_at) FROM audit.events"
                    " WHERE stream IN ('proposal:q0', 'proposal:q1', 'proposal:q2', 'proposal:q3')"
                )
            )
        ).scalar()
        assert stamps == 1  # the first half of the group: one transaction
        assert (await verify_all(conn)).checked == 2 + 1 + 10 + 2
    await _assert_read_models_follow_the_log(engine)


_QUEUE = "SELECT pg_advisory_xact_lock(hashtextextended('musrenbang.append:' || :log, 0))"


async def test_appends_to_one_log_queue_for_it_and_leave_other_logs_alone(
    engine: AsyncEngine, owner_engine: AsyncEngine
) -> None:
    # Writers of one log wait in its queue (a transaction-scoped advisory lock the append
    # functions take first), whichever function they call: one event alone, a batch, or a
    # full check inside a caller's transaction. Another log's writers do not wait, and
    # when the queue's holder lets go, every waiter is written, gapless.
    writers = [EventWriter(engine.url) for _ in range(3)]
    try:
        await writers[0].append("36.71", [submitted("a")])
        async with owner_engine.begin() as holder:
            await holder.execute(text(_QUEUE), {"log": "36.71"})

            async def in_transaction() -> None:
                async with engine.begin() as conn:
                    await append_events(conn, "36.71", [decided("a", "ProposalAccepted", 1)])

            waiting = [
                asyncio.create_task(writers[0].append("36.71", [submitted("b")])),
                asyncio.create_task(writers[1].append("36.71", [submitted("c"), submitted("d")])),
                asyncio.create_task(in_transaction()),
            ]
            other = await asyncio.wait_for(writers[2].append("36.72", [submitted("e")]), 10)
            assert other[0].seq == 1
            await asyncio.sleep(0.3)
            assert not any(w.done() for w in waiting)
            async with engine.connect() as conn:
                count = "SELECT count(*) FROM audit.events WHERE log_id = '36.71'"
                assert (await conn.execute(text(count))).scalar() == 1
        await asyncio.wait_for(asyncio.gather(*waiting), 10)
    finally:
        for w in writers:
            await w.aclose()
    async with engine.connect() as conn:
        seqs = "SELECT seq FROM audit.events WHERE log_id = '36.71' ORDER BY seq"
        assert list((await conn.execute(text(seqs))).scalars()) == [1, 2, 3, 4, 5]
        assert (await verify_all(conn)).ok
        assert (await verify_read_models(conn)).ok
