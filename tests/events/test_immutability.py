"""Nothing recorded can be changed: the application role lacks the privilege, and the
triggers refuse even the owner."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from musrenbang.events.append import append_events
from tests.events.helpers import submitted

CHANGES = [
    "UPDATE audit.events SET version = version + 1 WHERE seq = 1",
    "UPDATE audit.events SET content = content WHERE seq = 1",
    "DELETE FROM audit.events WHERE seq = 1",
    "TRUNCATE audit.events",
]


async def _seed(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await append_events(conn, "36.71", [submitted("a"), submitted("b")])


@pytest.mark.parametrize("statement", CHANGES)
async def test_application_role_cannot_change_events(engine: AsyncEngine, statement: str) -> None:
    await _seed(engine)
    with pytest.raises(DBAPIError, match="permission denied"):
        async with engine.begin() as conn:
            await conn.execute(text(statement))
    await _assert_untouched(engine)


@pytest.mark.parametrize("statement", CHANGES)
async def test_owner_is_refused_by_the_triggers(
    engine: AsyncEngine, owner_engine: AsyncEngine, statement: str
) -> None:
    await _seed(engine)
    verb = statement.split()[0]
    with pytest.raises(DBAPIError, match=f"audit.events is append-only: {verb} is refused"):
        async with owner_engine.begin() as conn:
            await conn.execute(text(statement))
    await _assert_untouched(engine)


async def test_application_role_cannot_disable_the_triggers(engine: AsyncEngine) -> None:
    with pytest.raises(DBAPIError, match="must be owner"):
        async with engine.begin() as conn:
            await conn.execute(text("ALTER TABLE audit.events DISABLE TRIGGER USER"))


async def _assert_untouched(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        rows = (
            await conn.execute(text("SELECT seq, version FROM audit.events ORDER BY seq"))
        ).all()
    assert [(r.seq, r.version) for r in rows] == [(1, 1), (2, 1)]
