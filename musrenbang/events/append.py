"""The append path: a batch of events to one log, atomically, hash-chained.

It runs inside a transaction the caller owns (helpers never commit), so the events and
the read models they change land together or not at all. Two round trips:

1. Lock the log's head row (``FOR UPDATE``), then, in the same pipeline and so after the
   lock is held, read the idempotency keys already recorded, the streams' current
   versions and the read-model rows the batch changes.
2. Write the events (``COPY`` for large batches), move the head, upsert the read models.

Why the lock: appends to one log must be serialized for ``seq`` to be gapless and in
commit order. A writer holds the head row from its first statement to its commit, so
the next writer reads the head only after that commit; a reader tailing ``seq`` can
therefore never see seq n+1 committed while seq n is still in flight.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from sqlalchemy.ext.asyncio import AsyncConnection

from musrenbang.events.canonical import GENESIS_HASH, leaf_hash, record_bytes
from musrenbang.events.db import driver_connection
from musrenbang.events.errors import EventLogError, IdempotencyConflict, VersionConflict
from musrenbang.events.model import Appended, NewEvent, StoredEvent
from musrenbang.events.projections import current_rows, plan_writes, prefetch

_LOCK_HEAD = "SELECT head_seq, head_hash, now() FROM audit.logs WHERE log_id = %s FOR UPDATE"
_NEW_LOG = "INSERT INTO audit.logs (log_id, head_hash) VALUES (%s, %s) ON CONFLICT DO NOTHING"
_KNOWN_KEYS = (
    "SELECT idempotency_key, content, seq, hash, version, recorded_at FROM audit.events"
    " WHERE idempotency_key = ANY(%s)"
)
_VERSIONS = (
    "SELECT s.stream, (SELECT max(e.version) FROM audit.events e WHERE e.stream = s.stream)"
    " FROM unnest(%s::text[]) AS s(stream)"
)
_INSERT = (
    "INSERT INTO audit.events (log_id, seq, content, version, recorded_at, occurred_at,"
    " prev_hash, hash) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
)
_COPY = (
    "COPY audit.events (log_id, seq, content, version, recorded_at, occurred_at, prev_hash,"
    " hash) FROM STDIN"
)
_MOVE_HEAD = "UPDATE audit.logs SET head_seq = %s, head_hash = %s WHERE log_id = %s"
_COPY_FROM = 64  # rows; below it a pipelined INSERT is cheaper than starting a COPY


@dataclass
class _Head:
    seq: int
    hash: bytes
    now: datetime


async def append_events(
    conn: AsyncConnection | psycopg.AsyncConnection[Any],
    log_id: str,
    events: Sequence[NewEvent],
    expected_versions: Mapping[str, int] | None = None,
) -> list[Appended]:
    """Appends a batch to one log atomically and updates the read models.

    `expected_versions` maps a stream to the version it must be at before this batch
    (0: the stream must be new). Keys already recorded with the same content answer with
    their original seq and hash (`replayed`) and write nothing; a key recorded with other
    content is refused.
    """
    if not events:
        return []
    unknown = set(expected_versions or {}) - {e.stream for e in events}
    if unknown:
        raise EventLogError(f"expected versions name streams not in the batch: {sorted(unknown)}")
    contents = [e.content(log_id) for e in events]
    driver = conn if isinstance(conn, psycopg.AsyncConnection) else await driver_connection(conn)
    head, known, versions, current = await _read(driver, log_id, events)

    results: list[Appended] = []
    rows: list[tuple[Any, ...]] = []
    fresh: list[StoredEvent] = []
    expected = dict(expected_versions or {})
    for event, content in zip(events, contents, strict=True):
        if event.idempotency_key in known:
            results.append(_replay(known[event.idempotency_key], event, content))
            continue
        actual = versions.get(event.stream) or 0
        wanted = expected.pop(event.stream, None)  # checked on the stream's first event only
        if wanted is not None and wanted != actual:
            raise VersionConflict(event.stream, wanted, actual)
        versions[event.stream] = actual + 1
        row, appended = _chain(head, log_id, event, content, actual + 1)
        rows.append(row)
        results.append(appended)
        fresh.append(StoredEvent.appended(log_id, event, appended))

    if rows:
        await _write(driver, log_id, rows, head, plan_writes(fresh, current))
    return results


def _chain(
    head: _Head, log_id: str, event: NewEvent, content: str, version: int
) -> tuple[tuple[Any, ...], Appended]:
    """Links one event to the head of the chain and moves the head past it."""
    prev, head.seq = head.hash, head.seq + 1
    head.hash = leaf_hash(prev, head.seq, record_bytes(content, head.now, version))
    row = (log_id, head.seq, content, version, head.now, event.occurred_at, prev, head.hash)
    return row, Appended(head.seq, head.hash, version, head.now, replayed=False)


async def _read(
    driver: Any, log_id: str, events: Sequence[NewEvent]
) -> tuple[_Head, dict[str, tuple[Any, ...]], dict[str, int | None], dict[str, Any]]:
    keys = [e.idempotency_key for e in events]
    streams = sorted({e.stream for e in events})
    async with driver.pipeline():
        head_cur = await driver.execute(_LOCK_HEAD, (log_id,))
        known_cur = await driver.execute(_KNOWN_KEYS, (keys,))
        versions_cur = await driver.execute(_VERSIONS, (streams,))
        pending = await prefetch(driver, events)
        head_row = await head_cur.fetchone()
        known = {r[0]: r for r in await known_cur.fetchall()}
        versions = {r[0]: r[1] for r in await versions_cur.fetchall()}
        current = await current_rows(pending)
    if head_row is None:  # the log's first event: create its head, then take the lock
        await driver.execute(_NEW_LOG, (log_id, GENESIS_HASH))
        head_row = await (await driver.execute(_LOCK_HEAD, (log_id,))).fetchone()
    return _Head(head_row[0], bytes(head_row[1]), head_row[2]), known, versions, current


def _replay(row: tuple[Any, ...], event: NewEvent, content: str) -> Appended:
    _, recorded_content, seq, hash_, version, recorded_at = row
    if recorded_content != content and _comparable(recorded_content) != _comparable(content):
        raise IdempotencyConflict(
            f"idempotency key {event.idempotency_key} was already used for different content"
            f" (seq {seq})",
            key=event.idempotency_key,
        )
    return Appended(seq, bytes(hash_), version, recorded_at, replayed=True)


async def _write(
    driver: Any,
    log_id: str,
    rows: list[tuple[Any, ...]],
    head: _Head,
    projections: list[tuple[str, list[dict[str, Any]]]],
) -> None:
    try:
        if len(rows) >= _COPY_FROM:
            async with driver.cursor() as cur, cur.copy(_COPY) as copy:
                for row in rows:
                    await copy.write_row(row)
        async with driver.pipeline(), driver.cursor() as cur:
            if len(rows) < _COPY_FROM:
                await cur.executemany(_INSERT, rows)
            await cur.execute(_MOVE_HEAD, (head.seq, head.hash, log_id))
            for sql, params in projections:
                await cur.executemany(sql, params)
    except psycopg.errors.UniqueViolation as exc:  # only if the lock was bypassed
        raise EventLogError(f"concurrent append detected: {exc.diag.message_primary}") from exc


def _comparable(content: str) -> dict[str, Any]:
    """An event's content for the idempotency comparison: everything but `occurred_at`.
    A workflow task that fails after writing is retried with a new clock reading, and its
    retried write must still be recognised as the same event."""
    data: dict[str, Any] = json.loads(content)
    data.pop("occurred_at", None)
    return data
