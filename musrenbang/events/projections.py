"""Read models (current state of each usulan, forum and cycle), kept in step with the log.

They are written in the same transaction as the events that change them, and
:func:`rebuild` recreates them from the log alone, so they are never evidence in
themselves: the log is.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from musrenbang.domain.records import State, evolve_cycle, evolve_forum, evolve_proposal
from musrenbang.events.db import driver_connection
from musrenbang.events.model import NewEvent, StoredEvent


@dataclass(frozen=True)
class _ReadModel:
    table: str
    key: str
    evolve: Callable[[State | None, str, dict[str, Any]], State]
    placed: bool  # has stage/unit columns


READ_MODELS: dict[str, _ReadModel] = {
    "proposal": _ReadModel("read.proposals", "proposal_id", evolve_proposal, placed=True),
    "forum": _ReadModel("read.forums", "forum_id", evolve_forum, placed=True),
    "cycle": _ReadModel("read.cycles", "cycle_id", evolve_cycle, placed=False),
}


def split_stream(stream: str) -> tuple[str, str]:
    kind, _, ident = stream.partition(":")
    return kind, ident


def affected(events: Sequence[StoredEvent] | Sequence[NewEvent]) -> dict[str, list[str]]:
    """The read-model rows (kind to ids) that these events change."""
    out: dict[str, set[str]] = {}
    for event in events:
        kind, ident = split_stream(event.stream)
        if kind in READ_MODELS:
            out.setdefault(kind, set()).add(ident)
    return {kind: sorted(ids) for kind, ids in out.items()}


def _select_sql(kind: str) -> str:
    model = READ_MODELS[kind]
    return f"SELECT {model.key}, state FROM {model.table} WHERE {model.key} = ANY(%s)"  # noqa: S608


async def prefetch(
    driver: Any, events: Sequence[NewEvent] | Sequence[StoredEvent]
) -> dict[str, Any]:
    """Queues the reads of the current read-model rows (one query per kind); in a pipeline
    they travel with the append itself."""
    return {
        kind: await driver.execute(_select_sql(kind), (ids,))
        for kind, ids in affected(events).items()
    }


def plan_writes(
    events: Sequence[StoredEvent], current: dict[str, dict[str, State]]
) -> list[tuple[str, list[dict[str, Any]]]]:
    """The upserts (statement, rows) that bring the read models past `events`, given the
    current rows of every id they touch (as :func:`prefetch` reads them)."""
    by_kind: dict[str, list[StoredEvent]] = {}
    for event in events:
        kind, _ = split_stream(event.stream)
        if kind in READ_MODELS:
            by_kind.setdefault(kind, []).append(event)
    writes = []
    for kind, batch in by_kind.items():
        model = READ_MODELS[kind]
        states = dict(current.get(kind, {}))
        latest: dict[str, StoredEvent] = {}
        for event in batch:
            ident = split_stream(event.stream)[1]
            states[ident] = model.evolve(states.get(ident), event.type, event.payload)
            latest[ident] = event
        rows = [_row(model, i, states[i], e) for i, e in latest.items()]
        writes.append((_upsert_sql(model), rows))
    return writes


async def current_rows(pending: dict[str, Any]) -> dict[str, dict[str, State]]:
    """The rows :func:`prefetch` queued, by read model and id."""
    return {kind: {r[0]: r[1] for r in await cur.fetchall()} for kind, cur in pending.items()}


async def project(driver: Any, events: Sequence[StoredEvent]) -> None:
    """Applies events (in seq order) to the read models: one read and one write per kind."""
    current = await current_rows(await prefetch(driver, events))
    async with driver.cursor() as cur:
        for sql, rows in plan_writes(events, current):
            await cur.executemany(sql, rows)


def _row(model: _ReadModel, ident: str, state: State, event: StoredEvent) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": ident,
        "log_id": event.log_id,
        "cycle_id": state.get("cycle_id"),
        "status": state.get("status", "unknown"),
        "state": json.dumps(state, sort_keys=True, ensure_ascii=False),
        "version": event.version,
        "last_seq": event.seq,
        "updated_at": event.occurred_at,
    }
    if model.placed:
        row["stage"] = state.get("stage")
        row["unit"] = state.get("unit")
    return row


def _upsert_sql(model: _ReadModel) -> str:
    cols = ["log_id", "status", "state", "version", "last_seq", "updated_at"]
    if model.key != "cycle_id":
        cols.append("cycle_id")
    if model.placed:
        cols += ["stage", "unit"]
    values = ", ".join(f"CAST(%({c})s AS jsonb)" if c == "state" else f"%({c})s" for c in cols)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols)
    return (
        f"INSERT INTO {model.table} ({model.key}, {', '.join(cols)}) VALUES (%(id)s, {values}) "  # noqa: S608
        f"ON CONFLICT ({model.key}) DO UPDATE SET {updates}"
    )


async def rebuild(conn: AsyncConnection, *, page: int = 5000) -> int:
    """Recreates every read model from the log; returns how many events were replayed."""
    for model in READ_MODELS.values():
        await conn.execute(text(f"DELETE FROM {model.table}"))  # noqa: S608
    from musrenbang.events.store import iter_log

    count = 0
    driver = await driver_connection(conn)
    logs = (await conn.execute(text("SELECT log_id FROM audit.logs ORDER BY log_id"))).scalars()
    for log_id in list(logs):
        async for chunk in iter_log(conn, log_id, page=page):
            await project(driver, chunk)
            count += len(chunk)
    return count
