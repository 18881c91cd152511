"""The append path: a batch of events to one log, atomically, hash-chained.

One call to the database function ``audit.append`` (migrations 0003, 0010, 0011) does the
whole append: it waits its turn in the log's queue, locks the log's head row, refuses keys
already recorded and streams not at the expected version, chains and inserts the events,
moves the head and updates the read models. Inside a caller's transaction it is one
statement of that transaction (helpers never commit); on a connection in autocommit mode
(:class:`EventWriter`, the application's path) that one statement is the transaction: one
round trip.

Why the lock: appends to one log must be serialized for ``seq`` to be gapless and in
commit order. A writer holds the head row from its first statement to its commit, so the
next writer reads the head only after that commit; a reader tailing ``seq`` can therefore
never see seq n+1 committed while seq n is still in flight. Writers wait for the head in a
queue of the log's own (a transaction-scoped advisory lock each function takes first, also
held to the commit): a row lock is a poor queue when many wait, each waiter rechecking the
row's newer version when it wakes (migration 0011).

The read models are folded in Python (the reducers in ``domain/records.py``), so the call
carries rows planned from what this process last saw of each stream: its last hash,
version and state (`_Seen`). The database checks that guess under the lock;
when it is wrong (another process wrote the stream, or this one never saw it), nothing is
written, the streams are folded afresh from the log and the call is made again. Outside a
transaction that second try runs in one, whose first call holds the log's head until the
commit, so the fold cannot go stale again.

A call that is its own transaction asks for no full check: when the guesses hold, the
database looks no further, and a key already recorded, or a version another writer took
first, breaks a unique index instead, failing the statement and writing nothing. The
call is then made again with the full check, which answers as above. One event alone
(the usual decision) goes to ``audit.append_one`` (migration 0004), a single SQL
statement that writes only when the guess holds and otherwise writes nothing and says
nothing, sending the writer to ``audit.append`` and its full check.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg
from sqlalchemy import URL
from sqlalchemy.ext.asyncio import AsyncConnection

from musrenbang.domain.records import State
from musrenbang.events.db import conninfo, driver_connection
from musrenbang.events.errors import (
    Contention,
    EventLogError,
    IdempotencyConflict,
    VersionConflict,
)
from musrenbang.events.model import Appended, NewEvent
from musrenbang.events.projections import READ_MODELS, Planned, model_rows, plan, split_stream

# The contents go as a text[] in binary (%b): as they are, not as JSON strings to escape.
_APPEND = "SELECT * FROM audit.append(%s, %b::text[], %s::jsonb)"
# A part of a pipelined batch: strict, so that a reason to write nothing aborts the
# transaction (migration 0012).
_APPEND_PART = "SELECT * FROM audit.append(%s, %b::text[], %s::jsonb, true)"
# One event: `audit.append_one` when it changes no read model, else the function of its
# read model (migration 0004).
_APPEND_ONE: dict[str | None, str] = {
    None: "SELECT * FROM audit.append_one(%s, %s, %s, %s, %s)",
    **{
        kind: f"SELECT * FROM audit.append_one_{kind}(%s, %s, %s, %s, %s, %s::jsonb)"  # noqa: S608
        for kind in READ_MODELS
    },
}
_FOLD = (
    "SELECT stream, type, payload, hash, version FROM audit.events WHERE stream = ANY(%s)"
    " ORDER BY stream, version"
)
_ATTEMPTS = 8  # a guess goes stale only when another writer wins the same stream
# A batch of this many events or more is sent in two parts, pipelined (`_Batch.pipelined`).
PIPELINE_FROM = 40
# What `audit.append` raises for a part of a pipelined batch that it cannot write as it is
# (migration 0012).
_STALE = "MR010"
_IDLE = psycopg.pq.TransactionStatus.IDLE
_ROLLBACK_SECONDS = 10  # a pipelined batch's rollback, before its connection is closed
_JSON_KEYS = orjson.OPT_NON_STR_KEYS  # keys that are not strings become strings


@dataclass(frozen=True)
class _Guess:
    """A stream as this process last saw it: its last event's hash (None: no event yet)
    and version, and the state it folds to (None if it has no read model)."""

    last_hash: bytes | None = None
    version: int = 0
    state: State | None = None


# A guess as `_Seen` keeps it: the hash, the version and the state as its JSON.
_Kept = tuple[bytes | None, int, bytes | None]


class _Seen:
    """What this process last saw of each stream; the least recently used goes first when
    full. Only a guess that saves a read: the database checks it.

    Each is kept as a plain tuple of bytes and an integer, the state as its JSON, which the
    garbage collector stops tracking. A writer keeps thousands; kept as objects and dicts,
    they were traversed by every full collection (about 0.1 s with 20,000 usulan), a
    pause that fell on whichever append was running. A state is decoded afresh when asked
    for, so no caller can change what is kept."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[str, _Kept] = OrderedDict()

    def get(self, stream: str) -> _Guess:
        entry = self._entries.get(stream)
        if entry is None:
            return _Guess()
        self._entries.move_to_end(stream)
        last_hash, version, state = entry
        return _Guess(last_hash, version, None if state is None else orjson.loads(state))

    def version(self, stream: str) -> int:
        """The version last seen of a stream (0: none), without decoding its state."""
        entry = self._entries.get(stream)
        return 0 if entry is None else entry[1]

    def forget(self, stream: str) -> None:
        self._entries.pop(stream, None)

    def put(self, stream: str, guess: _Guess) -> None:
        state = None if guess.state is None else orjson.dumps(guess.state, option=_JSON_KEYS)
        self._entries[stream] = (guess.last_hash, guess.version, state)
        self._entries.move_to_end(stream)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)


_SEEN = _Seen(20_000)


@dataclass
class _Request:
    """One caller's append, waiting for the log's writer."""

    events: Sequence[NewEvent]
    expected: Mapping[str, int] | None
    answer: asyncio.Future[list[Appended]]

    def joins(self, streams: set[str], keys: set[str], size: int) -> bool:
        """Whether it may join a group of `size` events with these streams and keys."""
        return size + len(self.events) <= GROUP_LIMIT and not any(
            e.stream in streams or e.idempotency_key in keys for e in self.events
        )


# A combined append holds at most this many events (a request larger than this goes alone).
GROUP_LIMIT = 500


class EventWriter:
    """The application's append path: a connection of its own per log, in autocommit mode,
    so an append is one statement, one round trip and its own transaction, with no pool
    checkout on the way.

    Appends to one log are serialized by the database anyway (its head row), so in this
    process they queue for the log, and whoever's turn it is writes what has queued in the
    meantime in one transaction (group commit): the appends of many workflows deciding at
    once cost one round trip and one commit, not one each. Only appends with no stream and
    no idempotency key in common go together, in the order they came, and each one's
    events stay together. When a combined append is refused (a version conflict, a key
    reused for other content, an invalid event), nothing of it was written, and its
    halves are made again on their own, down to the one at fault, which alone is refused.

    When a connection fails, it is replaced and the append is tried once more: the
    idempotency keys make that safe whether or not the first attempt committed (a
    committed one answers as `replayed`).
    """

    def __init__(self, url: URL) -> None:
        self._conninfo = conninfo(url)
        self._connections: dict[str, psycopg.AsyncConnection[Any]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._queues: dict[str, list[_Request]] = {}

    async def append(
        self,
        log_id: str,
        events: Sequence[NewEvent],
        expected_versions: Mapping[str, int] | None = None,
    ) -> list[Appended]:
        """Appends a batch to one log in a transaction of its own (see `append_events`),
        perhaps together with other callers' batches."""
        request = _Request(events, expected_versions, asyncio.get_running_loop().create_future())
        queue = self._queues.setdefault(log_id, [])
        queue.append(request)
        lock = self._locks.get(log_id) or self._locks.setdefault(log_id, asyncio.Lock())
        try:
            async with lock:
                while not request.answer.done():
                    group = self._take(queue)
                    try:
                        await self._write(log_id, group)
                    finally:
                        # Cancelled in the middle: what was taken and not answered waits
                        # for the next turn (its keys make a second write of it harmless).
                        queue[:0] = [r for r in group if not r.answer.done()]
        finally:
            if request in queue:  # cancelled while waiting its turn
                queue.remove(request)
        return request.answer.result()

    @staticmethod
    def _take(queue: list[_Request]) -> list[_Request]:
        """The appends to write next: the first in the queue, and those after it that can
        go with it, up to the first that cannot."""
        group: list[_Request] = []
        streams: set[str] = set()
        keys: set[str] = set()
        size = 0
        while queue and (not group or queue[0].joins(streams, keys, size)):
            request = queue.pop(0)
            group.append(request)
            streams.update(e.stream for e in request.events)
            keys.update(e.idempotency_key for e in request.events)
            size += len(request.events)
        return group

    async def _write(self, log_id: str, group: list[_Request]) -> None:
        """Writes a group in one transaction; when it is refused, which writes nothing,
        each half is written on its own, down to the one append at fault."""
        if len(group) == 1:
            request = group[0]
            try:
                request.answer.set_result(
                    await self._append(log_id, request.events, request.expected)
                )
            except Exception as exc:  # the caller's own error, raised to the caller
                request.answer.set_exception(exc)
            return
        events = [e for r in group for e in r.events]
        expected = {s: v for r in group for s, v in (r.expected or {}).items()}
        try:
            answers = await self._append(log_id, events, expected)
        except EventLogError:
            half = len(group) // 2
            await self._write(log_id, group[:half])
            await self._write(log_id, group[half:])
            return
        start = 0
        for r in group:
            r.answer.set_result(answers[start : start + len(r.events)])
            start += len(r.events)

    async def _append(
        self, log_id: str, events: Sequence[NewEvent], expected: Mapping[str, int] | None
    ) -> list[Appended]:
        try:
            conn = await self._connection(log_id)
            return await append_events(conn, log_id, events, expected)
        except psycopg.OperationalError:
            await self._discard(log_id)
        conn = await self._connection(log_id)
        return await append_events(conn, log_id, events, expected)

    async def aclose(self) -> None:
        for log_id in list(self._connections):
            await self._discard(log_id)

    async def _connection(self, log_id: str) -> psycopg.AsyncConnection[Any]:
        conn = self._connections.get(log_id)
        if conn is None or conn.closed:
            conn = await psycopg.AsyncConnection.connect(
                self._conninfo, autocommit=True, options="-c timezone=UTC"
            )
            self._connections[log_id] = conn
        return conn

    async def _discard(self, log_id: str) -> None:
        conn = self._connections.pop(log_id, None)
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                await conn.close()


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
    expected = dict(expected_versions or {})
    unknown = set(expected) - {e.stream for e in events}
    if unknown:
        raise EventLogError(f"expected versions name streams not in the batch: {sorted(unknown)}")
    keys = [e.idempotency_key for e in events]
    if len(set(keys)) < len(keys):
        twice = sorted({k for k in keys if keys.count(k) > 1})
        raise EventLogError(f"the batch holds idempotency keys more than once: {twice}")
    driver = conn if isinstance(conn, psycopg.AsyncConnection) else await driver_connection(conn)
    batch = _Batch(log_id, events, expected)
    # Each call its own transaction only in autocommit mode with no transaction open (a
    # caller's `transaction()` block on such a connection holds one).
    inside = not driver.autocommit or driver.info.transaction_status != _IDLE
    if await batch.run(driver, again=inside):
        return batch.results()
    # Outside a transaction a guess can go stale again between the fold and the next call;
    # inside one, the first call holds the log's head until the commit, so nothing can.
    async with driver.transaction():
        if await batch.run(driver, again=True):
            return batch.results()
    raise Contention(f"log {log_id}: the streams of this batch kept changing; try again")


class _Batch:
    """One append's progress over its calls: events already answered (replayed keys) and
    the expectations still to check."""

    def __init__(self, log_id: str, events: Sequence[NewEvent], expected: dict[str, int]) -> None:
        self.log_id = log_id
        self.events = events
        self._contents: list[str | None] = [None] * len(events)
        self.expected = expected
        self.answers: list[Appended | None] = [None] * len(events)

    def results(self) -> list[Appended]:
        return [r for r in self.answers if r is not None]

    def content(self, i: int) -> str:
        """The i-th event's canonical JSON text, built once, when first needed: a pipelined
        batch builds its second part's while the server writes its first."""
        content = self._contents[i]
        if content is None:
            content = self._contents[i] = self.events[i].content(self.log_id)
        return content

    def contents(self, indexes: Sequence[int]) -> list[str]:
        return [self.content(i) for i in indexes]

    def planned(
        self, todo: Sequence[int]
    ) -> tuple[list[NewEvent], dict[str, _Guess], list[Planned]]:
        """The events `todo`, what this process last saw of their streams, and the read-model
        rows they leave if those guesses hold."""
        batch = [self.events[i] for i in todo]
        guesses = {e.stream: _SEEN.get(e.stream) for e in batch}
        return batch, guesses, plan(batch, {stream: g.state for stream, g in guesses.items()})

    def guesses_meet_expected(self) -> bool:
        """Whether the versions this process last saw are the ones the caller expects."""
        return all(_SEEN.version(stream) == v for stream, v in self.expected.items())

    async def run(self, driver: Any, *, again: bool) -> bool:
        """Calls `audit.append` until the batch is written (true), or, unless `again`, until
        a guess proves stale (false; the streams are folded afresh for the next run).

        Without `again`, each call is its own transaction, which a refused statement leaves
        untouched, so the first call may skip the full check (see migration 0003), and
        for one event goes to `audit.append_one` (migration 0004); any refusal turns the
        full check on for the calls after."""
        fast = not again
        if fast and self.guesses_meet_expected():
            parts = _parts(self.events)
            if parts is not None:
                if await self.pipelined(driver, parts):
                    return True
                fast = False  # nothing was written; look properly from now on
        for _ in range(_ATTEMPTS):
            todo = [i for i, answer in enumerate(self.answers) if answer is None]
            if not todo:
                return True
            batch, guesses, planned = self.planned(todo)
            # Without the full check only when the guesses, if they hold, already meet the
            # expected versions; the database probes the guesses either way.
            check = not fast or not self.guesses_meet_expected()
            if not check and len(batch) == 1:
                statement, arguments = _one_arguments(
                    self.log_id, self.content(todo[0]), guesses[batch[0].stream], batch[0], planned
                )
            else:
                statement = _APPEND
                arguments = _arguments(
                    self.log_id,
                    batch,
                    self.contents(todo),
                    self.expected,
                    guesses,
                    planned,
                    check=check,
                )
            try:
                rows = await (
                    await driver.execute(statement, arguments, prepare=True, binary=True)
                ).fetchall()
            except psycopg.errors.UniqueViolation as exc:
                if check:  # the full check rules this out unless the head lock was bypassed
                    raise Contention(
                        f"concurrent append detected: {exc.diag.message_primary}"
                    ) from exc
                rows = []  # the statement wrote nothing
            if not rows:
                # A key already recorded, or another writer took a version this batch takes
                # (a unique index refused the call), or audit.append_one found the guess
                # wrong or the log new: nothing was written; look properly next time.
                fast = False
                continue
            outcomes = {row[0] for row in rows}
            if outcomes == {"appended"}:
                self.written(todo, planned, rows)
                return True
            fast = False  # the call found a reason to write nothing
            if "known" in outcomes:
                for row in rows:
                    if row[0] == "known":
                        index = todo[row[1] - 1]
                        self.answers[index] = _replay(row, self.events[index], self.content(index))
                left = {
                    e.stream for e, a in zip(self.events, self.answers, strict=True) if a is None
                }
                # an expectation holds for the stream's first event not yet recorded
                self.expected = {s: v for s, v in self.expected.items() if s in left}
            elif "conflict" in outcomes:
                conflicts = {row[2]: row for row in rows if row[0] == "conflict"}
                stream = next(e.stream for e in batch if e.stream in conflicts)
                raise VersionConflict(stream, int(conflicts[stream][7]), conflicts[stream][5])
            else:  # "stale": fold those streams afresh from the log
                await _fold(driver, [row[2] for row in rows])
                if not again:
                    return False
        return False

    def written(self, todo: Sequence[int], planned: Sequence[Planned], rows: Sequence[Any]) -> None:
        """Takes the answer of a call that appended the events `todo` (in order), and
        what their streams now are as this process's guesses."""
        for row in rows:
            _, position, _, seq, hash_, version, recorded_at, _ = row
            self.answers[todo[position - 1]] = Appended(
                seq, bytes(hash_), version, recorded_at, replayed=False
            )
        states = {row.stream: row.state for row in planned}
        last = {row[2]: row for row in rows}  # in order: each stream's last event
        for stream, row in last.items():
            _SEEN.put(stream, _Guess(bytes(row[4]), row[5], states.get(stream)))

    async def pipelined(self, driver: Any, parts: Sequence[Sequence[int]]) -> bool:
        """Writes the batch in one transaction of its parts, sent without waiting for each
        answer (a pipeline: BEGIN, a call of `audit.append` for each part, COMMIT, then one
        wait), so that the server writes a part while this process builds the next; true
        when all was written.

        The parts are strict (migration 0012): where the database would answer with a
        reason to write nothing (a guess that does not hold, a key already recorded), it
        raises instead, as a version another writer took does, so the transaction is
        aborted and its COMMIT writes none of the batch. Then (false) nothing was written,
        and the batch goes the usual way, with the full check.
        """
        sent = []
        refused: psycopg.Error | None = None
        try:
            async with driver.pipeline() as pipeline:
                try:
                    await driver.execute("BEGIN")
                    for part in parts:
                        batch, guesses, planned = self.planned(part)
                        arguments = _arguments(
                            self.log_id,
                            batch,
                            self.contents(part),
                            {},  # the guesses meet the expected versions (see `run`)
                            guesses,
                            planned,
                            check=False,
                        )
                        cursor = await driver.execute(
                            _APPEND_PART, arguments, prepare=True, binary=True
                        )
                        sent.append((part, planned, cursor))
                    await driver.execute("COMMIT")
                    await pipeline.sync()
                except psycopg.Error as exc:
                    refused = exc
                    # The server skips what was sent after the refusal, up to a sync:
                    # those answers are taken here, so that the pipeline ends cleanly.
                    with contextlib.suppress(psycopg.Error):
                        await pipeline.sync()
        except BaseException:
            await _abandon(driver)
            raise
        if refused is not None:
            await _abandon(driver)
            if isinstance(refused, psycopg.errors.UniqueViolation) or refused.sqlstate == _STALE:
                return False
            raise refused
        for part, planned, cursor in sent:
            rows = await cursor.fetchall()
            if len(rows) != len(part) or {row[0] for row in rows} != {"appended"}:
                raise EventLogError(f"log {self.log_id}: a part of a batch answered {rows[:1]}")
            self.written(part, planned, rows)
        return True


def _parts(events: Sequence[NewEvent]) -> list[list[int]] | None:
    """The batch in two parts to pipeline, in order, no stream in both, the first about a
    third of it (the server starts on it while the rest is built); None when the batch is
    small or its streams interleave throughout."""
    n = len(events)
    if n < PIPELINE_FROM:
        return None
    last = {e.stream: i for i, e in enumerate(events)}
    cuts = []
    reach = -1  # the last position of any stream seen so far
    for i, event in enumerate(events[:-1]):
        reach = max(reach, last[event.stream])
        if reach == i:
            cuts.append(i + 1)
    near = [c for c in cuts if n // 5 <= c <= n - n // 5]
    if not near:
        return None
    cut = min(near, key=lambda c: abs(c - n // 3))
    return [list(range(cut)), list(range(cut, n))]


async def _abandon(driver: Any) -> None:
    """Ends a pipelined batch's transaction, writing nothing: rolled back, or, when it is
    in no state to be (a statement still running, a pipeline left half-ended by a second
    cancellation) or the rollback fails or takes long, the connection closed: the server
    then rolls back what it held, and the writer opens another."""
    status = driver.info.transaction_status
    if status == _IDLE:
        return
    if status in (psycopg.pq.TransactionStatus.INTRANS, psycopg.pq.TransactionStatus.INERROR):
        try:
            await asyncio.wait_for(driver.execute("ROLLBACK"), _ROLLBACK_SECONDS)
            return
        except (psycopg.Error, TimeoutError):
            pass
        except asyncio.CancelledError:
            await driver.close()
            raise
    await driver.close()


def _arguments(
    log_id: str,
    batch: Sequence[NewEvent],
    contents: list[str],
    expected: Mapping[str, int],
    guesses: Mapping[str, _Guess],
    planned: Sequence[Planned],
    *,
    check: bool = True,
) -> tuple[str, list[str], str]:
    """`audit.append`'s arguments: the log, the contents, and the rest of the batch as one
    JSON document, each event's time and the version it takes if the guesses hold."""
    versions = {stream: guess.version for stream, guess in guesses.items()}
    events = []
    for event in batch:
        versions[event.stream] += 1
        events.append([event.occurred, versions[event.stream]])
    models: dict[str, list[list[Any]]] = {kind: [] for kind in READ_MODELS}
    for row, p in zip(model_rows(planned), planned, strict=True):
        models[row[0]].append([*row[1:], p.last + 1])
    document = {
        "events": events,
        "expected": list(expected.items()),
        "guesses": [
            [s, g.last_hash.hex() if g.last_hash else None, g.version] for s, g in guesses.items()
        ],
        "models": models,
        "check": check,
    }
    return log_id, contents, _json(document)


def _json(value: Any) -> str:
    """JSON text for the database to parse (orjson: many times faster than `json.dumps`
    on a batch's document; keys that are not strings become strings, as there)."""
    return orjson.dumps(value, option=_JSON_KEYS).decode()


def _one_arguments(
    log_id: str, content: str, guess: _Guess, event: NewEvent, planned: Sequence[Planned]
) -> tuple[str, tuple[Any, ...]]:
    """The call of `audit.append_one` (or of its read model's variant) for one event: the
    version it takes if the guess holds, and its read-model row, if any."""
    arguments: tuple[Any, ...] = (
        log_id,
        content,
        guess.version + 1,
        event.occurred,
        guess.last_hash,
    )
    for kind, *row in model_rows(planned):  # at most one
        return _APPEND_ONE[kind], (*arguments, _json(row))
    return _APPEND_ONE[None], arguments


async def _fold(driver: Any, streams: list[str]) -> None:
    """Folds streams from the log itself into what this process has seen of them."""
    seen: dict[str, _Guess] = {}
    cur = await driver.execute(_FOLD, (streams,))
    for stream, type_, payload, hash_, version in await cur.fetchall():
        model = READ_MODELS.get(split_stream(stream)[0])
        before = seen.get(stream, _Guess()).state
        state = model.evolve(before, type_, payload) if model else None
        seen[stream] = _Guess(bytes(hash_), version, state)
    for stream in streams:
        if stream in seen:
            _SEEN.put(stream, seen[stream])
        else:  # not in the log: new after all
            _SEEN.forget(stream)


def _replay(row: tuple[Any, ...], event: NewEvent, content: str) -> Appended:
    _, _, _, seq, hash_, version, recorded_at, recorded_content = row
    if recorded_content != content and _comparable(recorded_content) != _comparable(content):
        raise IdempotencyConflict(
            f"idempotency key {event.idempotency_key} was already used for different content"
            f" (seq {seq})",
            key=event.idempotency_key,
        )
    return Appended(seq, bytes(hash_), version, recorded_at, replayed=True)


def _comparable(content: str) -> dict[str, Any]:
    """An event's content for the idempotency comparison: everything but `occurred_at` and
    the correlation id. A workflow task that fails after writing is retried with a new
    clock reading; a command whose update was lost with such a task (it is only accepted
    when the task completes) comes again with the client's retry, the same key and a new
    request id. Either retried write must still be recognised as the same event; the
    first write's clock and correlation id stand."""
    data: dict[str, Any] = orjson.loads(content)
    data.pop("occurred_at", None)
    metadata = data.get("metadata")
    if isinstance(metadata, dict):
        metadata.pop("correlation_id", None)
    return data
