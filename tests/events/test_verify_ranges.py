"""Long logs are verified in ranges at once; tampering anywhere, inside a range or at the
seam between two, is still named at its exact seq. (Committed tampering: the ranges read
through their own connections.)"""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from musrenbang.events.append import append_events
from musrenbang.events.verify import verify_all
from tests.events.helpers import submitted

N = 60  # with min_range=10 and two ranges: seqs 1-30 and 31-60

CASES = {
    "payload in the second range": (
        "UPDATE audit.events SET content = replace(content, 'Jalan', 'Jalur') WHERE seq = 44",
        44,
    ),
    "first row of the second range deleted": ("DELETE FROM audit.events WHERE seq = 31", 31),
    "last row of the first range deleted": ("DELETE FROM audit.events WHERE seq = 30", 30),
    "prev link at the seam": (
        "UPDATE audit.events SET prev_hash = sha256(prev_hash) WHERE seq = 31",
        31,
    ),
    "hash in the first range": ("UPDATE audit.events SET hash = sha256(hash) WHERE seq = 7", 7),
    "last row of the log deleted": ("DELETE FROM audit.events WHERE seq = 60", 60),
}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_tampering_is_found_across_ranges(
    engine: AsyncEngine, owner_engine: AsyncEngine, case: str
) -> None:
    async with engine.begin() as conn:
        await append_events(conn, "36.71", [submitted(f"p{i}", minutes=i) for i in range(N)])
    async with engine.connect() as conn:
        intact = await verify_all(conn, min_range=10)
    assert intact.ok and intact.checked == N
    statement, bad = CASES[case]
    async with owner_engine.begin() as conn:
        await conn.execute(text("ALTER TABLE audit.events DISABLE TRIGGER USER"))
        await conn.execute(
            text("ALTER TABLE audit.events DROP CONSTRAINT events_stream_version_key")
        )
        await conn.execute(text(statement))
    async with engine.connect() as conn:
        result = await verify_all(conn, min_range=10)
        single = await verify_all(conn)  # one range: the same answer
    assert (result.ok, result.first_bad_seq) == (False, bad)
    assert single.first_bad_seq == bad
