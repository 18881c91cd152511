"""The append path and the reads of the event log.

Every function takes a connection inside a transaction the caller owns: helpers never
commit, so the events and the read models they change land together or not at all.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from musrenbang.events.errors import (
    ChangeRefused,
    EventLogError,
    IdempotencyConflict,
    VersionConflict,
)
from musrenbang.events.model import Appended, NewEvent, StoredEvent
from musrenbang.events.projections import project

_APPEND = text(
    "SELECT seq, hash, version, recorded_at, replayed FROM audit.append_events("
    "CAST(:log_id AS text), CAST(:keys AS text[]), CAST(:contents AS text[]), "
    "CAST(:streams AS text[]), CAST(:expected AS bigint[]))"
)
_COLUMNS = "log_id, seq, content, version, recorded_at, prev_hash, hash"


async def append_events(
    conn: AsyncConnection,
    log_id: str,
    events: Sequence[NewEvent],
    expected_versions: Mapping[str, int] | None = None,
) -> list[Appended]:
    """Appends a batch to one log atomically and updates the read models.

    `expected_versions` maps a stream to the version it must be at before this batch
    (0: the stream must be new). Keys already recorded with the same content answer with
    their original seq and hash (`replayed`) and write nothing.
    """
    if not events:
        return []
    expected = dict(expected_versions or {})
    contents = [e.content(log_id) for e in events]
    expected_per_event: list[int | None] = []
    for event in events:
        expected_per_event.append(expected.pop(event.stream, None))
    if expected:
        raise EventLogError(f"expected versions name streams not in the batch: {sorted(expected)}")
    params = {
        "log_id": log_id,
        "keys": [e.idempotency_key for e in events],
        "contents": contents,
        "streams": [e.stream for e in events],
        "expected": expected_per_event,
    }
    try:
        rows = (await conn.execute(_APPEND, params)).all()
    except DBAPIError as exc:
        raise _translate(exc) from exc
    results = [Appended(r.seq, bytes(r.hash), r.version, r.recorded_at, r.replayed) for r in rows]
    fresh = [
        StoredEvent.from_content(log_id, content, result)
        for content, result in zip(contents, results, strict=True)
        if not result.replayed
    ]
    await project(conn, fresh)
    return results


def _translate(exc: DBAPIError) -> Exception:
    sqlstate = getattr(exc.orig, "sqlstate", None)
    diag = getattr(exc.orig, "diag", None)
    message = getattr(diag, "message_primary", None) or str(exc.orig)
    detail = getattr(diag, "message_detail", None)
    if sqlstate == "MR001":
        return IdempotencyConflict(message, key=detail or "")
    if sqlstate == "MR002" and detail:
        info = json.loads(detail)
        return VersionConflict(info["stream"], int(info["expected"]), int(info["actual"]))
    if sqlstate == "MR003":
        return ChangeRefused(message)
    return exc


async def read_stream(
    conn: AsyncConnection, stream: str, *, as_of: datetime | None = None
) -> list[StoredEvent]:
    """One stream's events in order; with `as_of`, only those that had occurred by then."""
    sql = f"SELECT {_COLUMNS} FROM audit.events WHERE stream = :stream"  # noqa: S608
    params: dict[str, object] = {"stream": stream}
    if as_of is not None:
        sql += " AND occurred_at <= :as_of"
        params["as_of"] = as_of
    rows = await conn.execute(text(sql + " ORDER BY version"), params)
    return [StoredEvent.from_row(r) for r in rows]


async def read_log(
    conn: AsyncConnection,
    log_id: str,
    *,
    after: int = 0,
    limit: int = 100,
    types: Sequence[str] | None = None,
    cycle_id: str | None = None,
) -> list[StoredEvent]:
    """A bounded page of the log after `seq`, optionally filtered by type and cycle."""
    sql = f"SELECT {_COLUMNS} FROM audit.events WHERE log_id = :log_id AND seq > :after"  # noqa: S608
    params: dict[str, object] = {"log_id": log_id, "after": after, "limit": max(limit, 1)}
    if types:
        sql += " AND type = ANY(:types)"
        params["types"] = list(types)
    if cycle_id is not None:
        sql += " AND cycle_id = :cycle_id"
        params["cycle_id"] = cycle_id
    rows = await conn.execute(text(sql + " ORDER BY seq LIMIT :limit"), params)
    return [StoredEvent.from_row(r) for r in rows]


async def iter_log(
    conn: AsyncConnection, log_id: str, *, page: int = 5000
) -> AsyncIterator[list[StoredEvent]]:
    """The whole log in pages of bounded size (keyset pagination on seq)."""
    after = 0
    while True:
        chunk = await read_log(conn, log_id, after=after, limit=page)
        if not chunk:
            return
        yield chunk
        after = chunk[-1].seq
