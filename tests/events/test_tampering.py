"""Tampering by someone with full power over the database (a superuser who disables the
triggers and drops the constraints) is detected, at the exact first bad seq."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import URL, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from musrenbang.events.append import append_events
from musrenbang.events.db import create_engine
from musrenbang.events.verify import ReadModelCheck, verify_all, verify_read_models
from tests.events.helpers import decided, submitted

N_EVENTS = 48

UNGUARD = """
ALTER TABLE audit.events DISABLE TRIGGER USER;
ALTER TABLE audit.events
    DROP CONSTRAINT events_idempotency_key_key, DROP CONSTRAINT events_stream_version_key
"""


async def _seed(url: URL) -> None:
    engine = create_engine(url)
    async with engine.begin() as conn:
        for i in range(N_EVENTS // 3):
            await append_events(conn, "36.71", [submitted(f"p{i}", minutes=i)])
            await append_events(
                conn,
                "36.71",
                [
                    decided(f"p{i}", "ProposalPrioritized", 1, rank=i + 1, scores={"spm": 3}),
                    decided(f"p{i}", "ProposalAccepted", 2),
                ],
            )
    await engine.dispose()


@pytest.fixture
def seeded(owner_db: URL) -> Iterator[URL]:
    asyncio.run(_seed(owner_db))
    yield owner_db


async def _tamper_and_verify(
    url: URL, statements: list[tuple[str, dict[str, object]]]
) -> int | None:
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            await _exec_raw(conn, UNGUARD)
            for sql, params in statements:
                await conn.execute(text(sql), params)
            result = await verify_all(conn)
            await conn.rollback()
        async with engine.connect() as conn:
            assert (await verify_all(conn)).ok, "the rollback restored the log"
    finally:
        await engine.dispose()
    return result.first_bad_seq


async def _exec_raw(conn: AsyncConnection, sql: str) -> None:
    raw = await conn.get_raw_connection()
    assert raw.driver_connection is not None
    await raw.driver_connection.execute(sql)


def _content(url: URL, seq: int) -> str:
    async def go() -> str:
        engine = create_engine(url, pool_size=1)
        async with engine.connect() as conn:
            value = (
                await conn.execute(
                    text("SELECT content FROM audit.events WHERE seq = :s"), {"s": seq}
                )
            ).scalar_one()
        await engine.dispose()
        return str(value)

    return asyncio.run(go())


TAMPER = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@TAMPER
@given(seq=st.integers(1, N_EVENTS), offset=st.integers(0, 10_000))
def test_one_changed_payload_byte_is_found(seeded: URL, seq: int, offset: int) -> None:
    content = _content(seeded, seq)
    start = content.index('"payload":') + len('"payload":')
    end = start + len(
        json.dumps(json.loads(content)["payload"], separators=(",", ":"), sort_keys=True)
    )
    # A letter or digit inside the payload, so the JSON stays valid and only one byte moves.
    candidates = [i for i in range(start, end) if content[i].isalnum()]
    i = candidates[offset % len(candidates)]
    replacement = "7" if content[i] != "7" else "8"
    changed = content[:i] + replacement + content[i + 1 :]
    assert len(changed.encode()) == len(content.encode())
    bad = asyncio.run(
        _tamper_and_verify(
            seeded,
            [("UPDATE audit.events SET content = :c WHERE seq = :s", {"c": changed, "s": seq})],
        )
    )
    assert bad == seq


@TAMPER
@given(seq=st.integers(1, N_EVENTS))
def test_a_deleted_row_is_found(seeded: URL, seq: int) -> None:
    bad = asyncio.run(
        _tamper_and_verify(seeded, [("DELETE FROM audit.events WHERE seq = :s", {"s": seq})])
    )
    assert bad == seq


@TAMPER
@given(pair=st.lists(st.integers(1, N_EVENTS), min_size=2, max_size=2, unique=True))
def test_two_swapped_rows_are_found(seeded: URL, pair: list[int]) -> None:
    a, b = sorted(pair)
    swap = """
        UPDATE audit.events e SET content = o.content, version = o.version
          FROM audit.events o
         WHERE (e.seq, o.seq) IN ((:a, :b), (:b, :a))
    """
    bad = asyncio.run(_tamper_and_verify(seeded, [(swap, {"a": a, "b": b})]))
    assert bad == a


@TAMPER
@given(seq=st.integers(1, N_EVENTS), column=st.sampled_from(["recorded_at", "version", "hash"]))
def test_a_changed_hashed_column_is_found(seeded: URL, seq: int, column: str) -> None:
    change = {
        "recorded_at": "recorded_at = recorded_at + interval '1 microsecond'",
        "version": "version = version + 1000",
        "hash": "hash = sha256(hash)",
    }[column]
    bad = asyncio.run(
        _tamper_and_verify(
            seeded, [(f"UPDATE audit.events SET {change} WHERE seq = :s", {"s": seq})]
        )
    )
    assert bad == seq


@pytest.mark.parametrize(
    "moment", ["infinity", "-infinity", "0001-01-01 00:00:00+00 BC", "10000-01-01 00:00:00+00"]
)
def test_a_recorded_at_no_record_can_say_is_a_hash_mismatch(seeded: URL, moment: str) -> None:
    # The verifier renders the record from the stored time itself; a time outside years
    # 1-9999 (or PostgreSQL's infinities) cannot be the one an event was recorded at.
    bad = asyncio.run(
        _tamper_and_verify(
            seeded,
            [
                (
                    "UPDATE audit.events SET recorded_at = CAST(:m AS timestamptz) WHERE seq = 3",
                    {"m": moment},
                )
            ],
        )
    )
    assert bad == 3


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("type", "'ProposalRejected'"),
        ("cycle_id", "'36.71-1999'"),
        ("idempotency_key", "'forged-key'"),
    ],
)
def test_a_queried_column_changed_apart_from_its_content_is_named(
    seeded: URL, column: str, value: str
) -> None:
    """The chain covers the content; the columns queries go by are checked against it by
    the read-model check, so a column rewritten alone does not go unseen."""

    async def go() -> tuple[bool, ReadModelCheck]:
        engine = create_engine(seeded, pool_size=1)
        try:
            async with engine.connect() as conn:
                await _exec_raw(conn, UNGUARD)
                await conn.execute(
                    text(f"UPDATE audit.events SET {column} = {value} WHERE seq = 2")
                )
                chain = (await verify_all(conn)).ok
                found = await verify_read_models(conn)
                await conn.rollback()
            return chain, found
        finally:
            await engine.dispose()

    chain, found = asyncio.run(go())
    assert chain  # the hashed content is untouched
    assert not found.ok
    assert found.problem == "the columns of seq 2 say other than its content, which the hash covers"


@pytest.mark.parametrize("column", ["payload", "actor"])
def test_payload_and_actor_cannot_say_other_than_the_content(seeded: URL, column: str) -> None:
    """`payload` and `actor` are computed from the hashed content whenever they are read:
    the database refuses to set them apart from it, even to its owner with the guards off."""

    async def go() -> None:
        engine = create_engine(seeded, pool_size=1)
        try:
            async with engine.connect() as conn:
                await _exec_raw(conn, UNGUARD)
                with pytest.raises(DBAPIError, match="can only be updated to DEFAULT"):
                    await conn.execute(
                        text(f"UPDATE audit.events SET {column} = '{{}}'::jsonb WHERE seq = 2")
                    )
                await conn.rollback()
                said = (
                    await conn.execute(
                        text(
                            f"SELECT {column} = (content::jsonb)->'{column}' AS same,"
                            f" {column} IS NOT NULL AS present FROM audit.events WHERE seq = 2"
                        )
                    )
                ).one()
                assert said.same and said.present
        finally:
            await engine.dispose()

    asyncio.run(go())
