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


READ_AND_HEAD_CHANGES = [
    "UPDATE read.proposals SET status = 'included'",
    "DELETE FROM read.proposals",
    "INSERT INTO read.cycles (cycle_id, log_id, status, state, version, last_seq, updated_at)"
    " VALUES ('x', '36.71', 'adopted', '{}', 1, 1, now())",
    "UPDATE audit.logs SET head_hash = sha256('x'::bytea)",
    "UPDATE audit.tree SET hash = hash",
    "DELETE FROM audit.checkpoints",
]


@pytest.mark.parametrize("statement", READ_AND_HEAD_CHANGES)
async def test_application_role_cannot_change_read_models_the_head_or_the_tree(
    engine: AsyncEngine, statement: str
) -> None:
    """Only an append (which runs as the owner, SECURITY DEFINER) moves the head and the
    read models, and only together with the event it records."""
    await _seed(engine)
    with pytest.raises(DBAPIError, match="permission denied"):
        async with engine.begin() as conn:
            await conn.execute(text(statement))
    async with engine.connect() as conn:
        status = (await conn.execute(text("SELECT status FROM read.proposals"))).scalars().all()
    assert status == ["submitted", "submitted"]


@pytest.mark.parametrize("table", ["audit.tree", "audit.checkpoints"])
async def test_the_tree_and_the_checkpoints_are_append_only_even_for_the_owner(
    owner_engine: AsyncEngine, table: str
) -> None:
    for verb, statement in [
        ("UPDATE", f"UPDATE {table} SET log_id = log_id"),
        ("DELETE", f"DELETE FROM {table}"),
        ("TRUNCATE", f"TRUNCATE {table}"),
    ]:
        async with owner_engine.begin() as conn:  # an empty table's UPDATE fires nothing
            if table == "audit.tree":
                await conn.execute(
                    text("INSERT INTO audit.tree VALUES ('36.71', 1, 0, sha256('x'::bytea))")
                    if verb == "UPDATE"
                    else text("SELECT 1")
                )
        with pytest.raises(DBAPIError, match=f"{table} is append-only: {verb} is refused"):
            async with owner_engine.begin() as conn:
                if table == "audit.checkpoints":
                    await conn.execute(
                        text(
                            "INSERT INTO audit.checkpoints (log_id, size, root, note) VALUES"
                            " ('36.71', 0, sha256(''::bytea), 'n') ON CONFLICT DO NOTHING"
                        )
                    )
                await conn.execute(text(statement))


async def test_only_the_application_role_may_call_the_append_functions(
    owner_engine: AsyncEngine,
) -> None:
    async with owner_engine.connect() as conn:
        public = (
            (
                await conn.execute(
                    text(
                        "SELECT p.proname FROM pg_proc p JOIN pg_namespace n"
                        " ON n.oid = p.pronamespace"
                        " WHERE n.nspname = 'audit' AND p.proname LIKE 'append%'"
                        " AND has_function_privilege('public', p.oid, 'EXECUTE')"
                    )
                )
            )
            .scalars()
            .all()
        )
        definer = (
            await conn.execute(
                text(
                    "SELECT bool_and(p.prosecdef) FROM pg_proc p JOIN pg_namespace n"
                    " ON n.oid = p.pronamespace WHERE n.nspname = 'audit'"
                    " AND p.proname LIKE 'append%'"
                )
            )
        ).scalar_one()
    assert public == [] and definer is True


async def test_application_role_adds_events_only_through_the_append_functions(
    engine: AsyncEngine,
) -> None:
    """A row put in directly could carry columns its content does not say; the role may
    only append, and the append functions take every column from the content."""
    await _seed(engine)
    with pytest.raises(DBAPIError, match="permission denied"):
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO audit.events (log_id, seq, content, version, recorded_at,"
                    " occurred_at, prev_hash, hash, stream, type)"
                    " SELECT log_id, 3, content, 1, now(), occurred_at, hash, hash,"
                    " 'proposal:x', 'ProposalAccepted' FROM audit.events WHERE seq = 2"
                )
            )
    await _assert_untouched(engine)
