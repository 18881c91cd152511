"""Proposers' contacts (private.contacts, migration 0009): kept apart from the log, so a
proposer's phone or e-mail can be erased while what happened to the usulan stays."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


async def remember(conn: AsyncConnection, pairs: Sequence[tuple[str, str]]) -> None:
    """Keeps each (usulan id, contact); an usulan keeps the contact it was first given."""
    if pairs:
        await conn.execute(
            text(
                "INSERT INTO private.contacts (proposal_id, contact) VALUES (:p, :c)"
                " ON CONFLICT (proposal_id) DO NOTHING"
            ),
            [{"p": p, "c": c} for p, c in pairs],
        )


async def of(conn: AsyncConnection, proposal_ids: Sequence[str]) -> dict[str, str]:
    rows = await conn.execute(
        text("SELECT proposal_id, contact FROM private.contacts WHERE proposal_id = ANY(:p)"),
        {"p": list(proposal_ids)},
    )
    return {r.proposal_id: r.contact for r in rows}


async def forget(conn: AsyncConnection, proposal_id: str) -> bool:
    """Erases a proposer's contact (on their request); whether there was one."""
    result = await conn.execute(
        text("DELETE FROM private.contacts WHERE proposal_id = :p"), {"p": proposal_id}
    )
    return bool(result.rowcount)
