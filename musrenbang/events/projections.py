"""Read models (current state of each usulan, forum and cycle), kept in step with the log.

They are written in the same transaction as the events that change them, and
:func:`rebuild` recreates them from the log alone, so they are never evidence in
themselves: the log is.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from musrenbang.domain.records import State, evolve_cycle, evolve_forum, evolve_proposal
from musrenbang.events.canonical import format_timestamp
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


async def current_states(
    driver: Any, events: Sequence[NewEvent] | Sequence[StoredEvent]
) -> dict[str, State]:
    """The current state of each read-model row these events change, by stream (one query
    per read model; a row not there yet is absent)."""
    states: dict[str, State] = {}
    for kind, ids in affected(events).items():
        cur = await driver.execute(_select_sql(kind), (ids,))
        states.update((f"{kind}:{ident}", state) for ident, state in await cur.fetchall())
    return states


@dataclass(frozen=True)
class Planned:
    """One read-model row as a batch of events leaves it."""

    stream: str
    kind: str
    ident: str
    state: State
    last: int  # position in the batch of the last event that changed it


def plan(
    events: Sequence[NewEvent | StoredEvent], states: Mapping[str, State | None]
) -> list[Planned]:
    """Folds `events` (in order) into the read-model rows they change, starting from the
    state each stream is at before them (`states`, by stream; absent or None: new)."""
    folded: dict[str, tuple[State, int]] = {}
    for position, event in enumerate(events):
        kind, _ = split_stream(event.stream)
        model = READ_MODELS.get(kind)
        if model is None:
            continue
        before = folded[event.stream][0] if event.stream in folded else states.get(event.stream)
        folded[event.stream] = (model.evolve(before, event.type, event.payload), position)
    return [
        Planned(stream, *split_stream(stream), state, position)
        for stream, (state, position) in folded.items()
    ]


def model_rows(planned: Sequence[Planned]) -> list[list[Any]]:
    """The planned rows as `read.apply` takes them: [kind, id, status, cycle_id, stage,
    unit, state]; version, seq and time come from each row's last event."""
    return [
        [
            row.kind,
            row.ident,
            row.state.get("status", "unknown"),
            row.state.get("cycle_id"),
            row.state.get("stage") if READ_MODELS[row.kind].placed else None,
            row.state.get("unit") if READ_MODELS[row.kind].placed else None,
            row.state,
        ]
        for row in planned
    ]


_APPLY = "SELECT read.apply(%s, %s::jsonb)"


async def project(driver: Any, events: Sequence[StoredEvent]) -> None:
    """Applies events of one log (in seq order) to the read models: one read and one
    write per batch."""
    if not events:
        return
    planned = plan(events, await current_states(driver, events))
    rows = [
        [*row, last.version, last.seq, format_timestamp(last.occurred_at)]
        for row, last in zip(model_rows(planned), (events[p.last] for p in planned), strict=True)
    ]
    await driver.execute(_APPLY, (events[0].log_id, json.dumps(rows, ensure_ascii=False)))


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
