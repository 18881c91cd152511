"""The append path and the reads of the event log.

Every function takes a connection inside a transaction the caller owns: helpers never
commit, so the events and the read models they change land together or not at all.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime

import psycopg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from musrenbang.events.db import driver_connection
from musrenbang.events.errors import (
    ChangeRefused,
    EventLogError,
    IdempotencyConflict,
    VersionConflict,
)
from musrenbang.events.model import Appended, NewEvent, StoredEvent
from musrenbang.events.projections import prefetch, project

_APPEND = (
    "SELECT seq, hash, version, recorded_at, replayed"
    " FROM audit.append_events(%s::text, %s::text[], %s::bigint[])"
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
    driver = await driver_connection(conn)
    # One round trip: the append, then the reads of the read-model rows it changes (after
    # the append, so they wait for the log's lock and see the previous writer's rows).
    try:
        async with driver.pipeline():
            appended = await driver.execute(_APPEND, (log_id, contents, expected_per_event))
            pending = await prefetch(driver, events)
            rows = await appended.fetchall()
            current = {
                kind: {r[0]: r[1] for r in await c.fetchall()} for kind, c in pending.items()
            }
    except psycopg.Error as exc:
        raise _translate(exc) from exc
    results = [Appended(r[0], bytes(r[1]), r[2], r[3], r[4]) for r in rows]
    fresh = [
        StoredEvent.from_content(log_id, content, result)
        for content, result in zip(contents, results, strict=True)
        if not result.replayed
    ]
    await project(driver, fresh, current)
    return results


def _translate(exc: psycopg.Error) -> Exception:
    sqlstate = exc.sqlstate
    diag = exc.diag
    message = diag.message_primary or str(exc)
    detail = diag.message_detail
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
    """One stream's events in order; with `as_of`, only those that had occurred by then.

    The moment is judged on the hashed content, not on the indexed column."""
    sql = f"SELECT {_COLUMNS} FROM audit.events WHERE stream = :stream ORDER BY version"  # noqa: S608
    rows = await conn.execute(text(sql), {"stream": stream})
    events = [StoredEvent.from_row(r) for r in rows]
    if as_of is not None:
        events = [e for e in events if e.occurred_at <= as_of]
    return events


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
