"""The API's Idempotency-Keys and their first answers (`api.idempotency_keys` and
`api.idempotency_answers`, migration 0005): insert-only, like the log. A key is claimed
once, by the first request that names it; its answer is written once, when it has one.
The caller owns the transaction; nothing here commits."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

_CLAIM = text(
    "INSERT INTO api.idempotency_keys (subject, key, endpoint, fingerprint)"
    " VALUES (:s, :k, :e, :f) ON CONFLICT (subject, key) DO NOTHING"
)
_LOOKUP = text(
    "SELECT k.endpoint, k.fingerprint, a.answer FROM api.idempotency_keys k"
    " LEFT JOIN api.idempotency_answers a USING (subject, key)"
    " WHERE k.subject = :s AND k.key = :k"
)
_ANSWER = text(
    "INSERT INTO api.idempotency_answers (subject, key, answer)"
    " VALUES (:s, :k, CAST(:a AS jsonb)) ON CONFLICT (subject, key) DO NOTHING"
)


@dataclass(frozen=True)
class Binding:
    """What a key is bound to: the endpoint and body fingerprint of the request that
    claimed it first, and that request's answer once it has one."""

    endpoint: str
    fingerprint: str
    answer: dict[str, Any] | None


async def bind_key(
    conn: AsyncConnection, subject: str, key: str, endpoint: str, fingerprint: str
) -> Binding:
    """Claims `key` for this request unless it is claimed already; what it is bound to."""
    await conn.execute(_CLAIM, {"s": subject, "k": key, "e": endpoint, "f": fingerprint})
    row = (await conn.execute(_LOOKUP, {"s": subject, "k": key})).one()
    answer = (
        row.answer if row.answer is None or isinstance(row.answer, dict) else json.loads(row.answer)
    )
    return Binding(row.endpoint, row.fingerprint, answer)


async def record_answer(
    conn: AsyncConnection, subject: str, key: str, answer: dict[str, Any]
) -> None:
    """Keeps the first answer to the request that holds `key` (a later one is ignored)."""
    await conn.execute(_ANSWER, {"s": subject, "k": key, "a": json.dumps(answer)})
