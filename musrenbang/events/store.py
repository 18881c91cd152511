"""Reads of the event log: one stream, a page of a log, the whole log in pages."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

import psycopg
from sqlalchemy.ext.asyncio import AsyncConnection

from musrenbang.events.db import driver_connection
from musrenbang.events.model import StoredEvent

_COLUMNS = "log_id, seq, content, version, recorded_at, prev_hash, hash"
_STREAM = f"SELECT {_COLUMNS} FROM audit.events WHERE stream = %s ORDER BY version"  # noqa: S608


async def read_stream(
    conn: AsyncConnection | psycopg.AsyncConnection[Any],
    stream: str,
    *,
    as_of: datetime | None = None,
) -> list[StoredEvent]:
    """One stream's events in order; with `as_of`, only those that had occurred by then.

    The moment is judged on the hashed content, not on the indexed column."""
    events = await _events(conn, _STREAM, [stream])
    if as_of is not None:
        events = [e for e in events if e.occurred_at <= as_of]
    return events


async def read_log(
    conn: AsyncConnection | psycopg.AsyncConnection[Any],
    log_id: str,
    *,
    after: int = 0,
    limit: int = 100,
    types: Sequence[str] | None = None,
    cycle_id: str | None = None,
) -> list[StoredEvent]:
    """A bounded page of the log after `seq`, optionally filtered by type and cycle."""
    sql = f"SELECT {_COLUMNS} FROM audit.events WHERE log_id = %s AND seq > %s"  # noqa: S608
    params: list[object] = [log_id, after]
    if types:
        sql += " AND type = ANY(%s)"
        params.append(list(types))
    if cycle_id is not None:
        sql += " AND cycle_id = %s"
        params.append(cycle_id)
    params.append(max(limit, 1))
    return await _events(conn, sql + " ORDER BY seq LIMIT %s", params)


async def _events(
    conn: AsyncConnection | psycopg.AsyncConnection[Any], sql: str, params: list[object]
) -> list[StoredEvent]:
    """Events read on the driver, as a prepared statement with binary results: reads are
    on every command's, trace's and export's path, and SQLAlchemy's row processing cost
    more than the query."""
    driver = conn if isinstance(conn, psycopg.AsyncConnection) else await driver_connection(conn)
    cur = await driver.execute(sql, params, prepare=True, binary=True)
    return [StoredEvent(*row) for row in await cur.fetchall()]


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
