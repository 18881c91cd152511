"""Verification of the log: every hash recomputed, seq continuity and prev links checked.

It names the first bad seq. A short log is walked with a server-side cursor in
fixed-size batches; a long one (`min_range` events a range, three ranges: 60,000 events by
default) in ranges at once, each streamed in chunks on a connection of its own, in threads
or in processes (the walk itself is `musrenbang.events.walk`). Memory stays
bounded however long the log is.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from musrenbang.events.canonical import GENESIS_HASH
from musrenbang.events.db import conninfo, driver_connection
from musrenbang.events.walk import BATCH, Range, walk_apart, walk_here
from musrenbang.logging import get_logger

_log = get_logger("musrenbang.verify")

# From this many events on, a log's ranges are walked in processes (see verify_log).
PROCESSES_FROM = 200_000


@dataclass(frozen=True)
class Verification:
    ok: bool
    checked: int
    log_id: str | None = None
    first_bad_seq: int | None = None
    problem: str | None = None


async def verify_log(
    conn: AsyncConnection,
    log_id: str,
    *,
    parallel: int = 3,
    min_range: int = BATCH,
    processes_from: int = PROCESSES_FROM,
) -> Verification:
    """Verifies one log from genesis to its head.

    A short log is walked on `conn` itself (so it also sees that connection's own
    transaction). A long one is split into `parallel` ranges of seqs, each walked on a
    connection of its own, which sees what is committed. Each range checks its own rows and
    links; the ranges are then stitched, each starting where the one before ended. Memory
    stays bounded: the rows come a batch or a chunk at a time.

    The walk is Python work (rendering each record and hashing it), so ranges walked in
    threads share one interpreter lock and, in all, about one core. From `processes_from`
    events on, every range but the first (walked here, in a thread) is walked in a process
    of its own: one walk's process (`musrenbang.events.walk`) takes them all, walks the
    first and forks one process for each other after its imports, so that importing the
    driver (about a third of a second of CPU) is paid once, which a log that long repays.
    They use every core and keep their share of them beside another busy job. A range whose
    walk is not answered, or is answered with something that is not a walk of its range, is
    walked in a thread instead: the answer is the same either way. Three ranges rather than
    two: beside another busy stack they gain about 10%, where it matters; four, on two
    cores, cost the server about twice the CPU a row.
    """
    driver = await driver_connection(conn)
    cur = await driver.execute(
        "SELECT (SELECT max(seq) FROM audit.events WHERE log_id = %s), head_seq, head_hash"
        " FROM audit.logs WHERE log_id = %s",
        (log_id, log_id),
    )
    row = await cur.fetchone()
    if row is None:
        return Verification(True, 0, log_id)
    last, head_seq, head_hash = row[0] or 0, row[1], bytes(row[2])
    end = max(last, head_seq)
    parts = parallel if end >= min_range * parallel else 1
    bounds = [end * i // parts for i in range(parts + 1)]
    ranges = list(itertools.pairwise(bounds))
    if parts == 1:
        results = [await walk_here(driver, log_id, 0, end)]
    else:
        info = conninfo(conn.engine.url)
        # The first range here, in a thread; the others in threads too, or, for a long
        # log, in one walk's process. A task group: when one walk fails, the others are
        # cancelled (their processes killed) rather than left to walk.
        apart = _walk_in_process if end >= processes_from else _walk_in_threads
        try:
            async with asyncio.TaskGroup() as group:
                first = group.create_task(_walk_in_thread(info, log_id, *ranges[0]))
                rest = group.create_task(apart(info, log_id, ranges[1:]))
        except BaseExceptionGroup as failed:  # the first range's error, as a walk raises it
            raise failed.exceptions[0] from None
        results = [first.result(), *rest.result()]
    prev, expected = GENESIS_HASH, 1
    for (low, _), found in zip(ranges, results, strict=True):
        # the seam first: a range that starts on a broken link breaks there, whatever its
        # own walk found after it
        if found.first_prev is not None and found.first_prev != prev:
            return Verification(False, expected - 1, log_id, low + 1, "prev_hash does not link")
        if found.bad is not None:
            return Verification(
                False, found.next_expected - 1, log_id, found.next_expected, found.bad
            )
        prev = found.last_hash if found.last_hash is not None else prev
        expected = found.next_expected
    if head_seq != expected - 1 or head_hash != prev:
        bad_seq = min(head_seq, expected - 1) + 1
        return Verification(False, expected - 1, log_id, bad_seq, "log head does not match")
    return Verification(True, expected - 1, log_id)


async def _walk_in_thread(info: str, log_id: str, low: int, high: int) -> Range:
    return await asyncio.to_thread(walk_apart, info, log_id, low, high)


async def _walk_in_threads(info: str, log_id: str, ranges: list[tuple[int, int]]) -> list[Range]:
    return list(await asyncio.gather(*(_walk_in_thread(info, log_id, *r) for r in ranges)))


async def _walk_in_process(info: str, log_id: str, ranges: list[tuple[int, int]]) -> list[Range]:
    """`ranges` walked by ``python -m musrenbang.events.walk``, which walks each in a process
    of its own. A range whose walk is not answered, or is answered with something that is
    not a walk of that range (the process cannot start, fails, or says something else), is
    walked in a thread instead: the answer is the same either way."""
    job = orjson.dumps({"conninfo": info, "log_id": log_id, "ranges": ranges})
    answers, err = await _ask_walk(job, len(ranges))
    walked: list[Range | None] = []
    for (low, high), answer in zip(ranges, answers, strict=True):
        found, problem = None, err
        if answer is not None:
            try:
                found = Range.from_json(answer, low, high)
            except ValueError as exc:
                problem = f"{exc}; it said {str(answer)[:200]}"
        if found is None:
            _log.warning("verify.walk_process_failed", log_id=log_id, low=low, error=problem)
        walked.append(found)
    again = [r for r, found in zip(ranges, walked, strict=True) if found is None]
    rewalked = iter(await _walk_in_threads(info, log_id, again))
    return [found if found is not None else next(rewalked) for found in walked]


async def _ask_walk(job: bytes, n: int) -> tuple[list[Any], str]:
    """A walk's process's answers to `job`, one for each of its `n` ranges (None where there
    is none), and what it said of those it did not answer. The connection string (with its
    password) goes on stdin, not on the command line, which other users of the machine can
    read. The processes are a process group of their own: a cancelled walk kills them all,
    even where the walk's own process has ended and its forks have not."""
    unanswered: list[Any] = [None] * n
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "musrenbang.events.walk",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            process_group=0,
        )
    except OSError as exc:
        return unanswered, f"the walk's process could not start: {exc}"
    answered = False
    try:
        out, said = await process.communicate(job)
        answered = True
    finally:
        if not answered:  # cancelled: the walks are no longer wanted
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
    stderr = said.decode(errors="replace")[-500:]
    if process.returncode != 0:
        return unanswered, f"exit status {process.returncode}: {stderr}"
    try:
        answers = orjson.loads(out)
    except ValueError:
        answers = None
    if not isinstance(answers, list) or len(answers) != n:
        return unanswered, f"not a list of {n} ranges: {out[:200]!r}"
    return answers, f"its walk failed: {stderr}"


async def verify_all(
    conn: AsyncConnection,
    *,
    min_range: int = BATCH,
    processes_from: int = PROCESSES_FROM,
    only: Callable[[str], bool] | None = None,
) -> Verification:
    """Verifies every log (or those `only` accepts); stops at the first that fails."""
    from musrenbang.events.tree import log_ids

    logs = await log_ids(await driver_connection(conn))
    checked = 0
    for log_id in logs:
        if only is not None and not only(log_id):
            continue
        result = await verify_log(conn, log_id, min_range=min_range, processes_from=processes_from)
        checked += result.checked
        if not result.ok:
            return Verification(False, checked, log_id, result.first_bad_seq, result.problem)
    return Verification(True, checked)


# -- read models -----------------------------------------------------------------------

_STREAM_EVENTS = (
    "SELECT stream, seq, version, type, cycle_id, idempotency_key, content FROM audit.events"
    " WHERE log_id = %s AND stream LIKE %s ORDER BY stream, version"
)
_MODEL_ROWS = (
    "SELECT {key}, log_id, {placed} status, state, version, last_seq FROM {table}"
    " WHERE {key} = ANY(%s)"
)
_ORPHANS = (
    "SELECT r.{key} FROM {table} r WHERE NOT EXISTS (SELECT FROM audit.events e"
    " WHERE e.stream = %s || r.{key}) ORDER BY 1 LIMIT 1"
)
_MODEL_BATCH = 2_000


@dataclass(frozen=True)
class ReadModelCheck:
    ok: bool
    checked: int
    record: str | None = None  # e.g. "proposal:<id>"
    problem: str | None = None


async def verify_read_models(
    conn: AsyncConnection, only: Callable[[str], bool] | None = None
) -> ReadModelCheck:
    """Compares every read-model row (usulan, forum, cycle) with a fold of its stream in
    the log, and names the first that differs, or that the log does not know. The log is
    the evidence; a read model someone changed is caught here."""
    from musrenbang.events.projections import READ_MODELS

    driver = await driver_connection(conn)
    from musrenbang.events.tree import log_ids

    logs = await log_ids(driver)
    checked = 0
    for kind, model in READ_MODELS.items():
        orphan = await (
            await driver.execute(_ORPHANS.format(key=model.key, table=model.table), (f"{kind}:",))
        ).fetchone()
        if orphan is not None:
            return ReadModelCheck(
                False, checked, f"{kind}:{orphan[0]}", "a read-model row with no events in the log"
            )
        for log_id in logs:
            if only is not None and not only(log_id):
                continue
            found = await _check_model(driver, log_id, kind, model)
            checked += found.checked
            if not found.ok:
                return ReadModelCheck(False, checked, found.record, found.problem)
    return ReadModelCheck(True, checked)


async def _check_model(driver: Any, log_id: str, kind: str, model: Any) -> ReadModelCheck:
    folded: dict[str, tuple[Any, int, int]] = {}  # id -> (state, version, last seq)
    checked = 0

    async def compare() -> ReadModelCheck | None:
        placed = "cycle_id, stage, unit," if model.placed else ""
        sql = _MODEL_ROWS.format(key=model.key, table=model.table, placed=placed)
        rows = await (await driver.execute(sql, (list(folded),))).fetchall()
        actual = {row[0]: row for row in rows}
        for ident in sorted(folded):
            state, version, last_seq = folded[ident]
            problem = _row_problem(actual.get(ident), log_id, state, version, last_seq, model)
            if problem:
                return ReadModelCheck(False, checked, f"{kind}:{ident}", problem)
        folded.clear()
        return None

    async with (
        driver.transaction(),
        driver.cursor(name=f"readcheck_{kind}_{log_id.replace('.', '_')}") as cur,
    ):
        await cur.execute(_STREAM_EVENTS, (log_id, f"{kind}:%"))
        current: str | None = None
        while rows := await cur.fetchmany(BATCH):
            for stream, seq, version, type_, cycle_id, key, content in rows:
                ident = stream.split(":", 1)[1]
                # The fold goes by the content (what is hashed); the columns it is found
                # by must say the same, or a query would show what the evidence does not
                # (`payload` and `actor` are computed from the content: they cannot differ).
                event = orjson.loads(content)
                metadata = event.get("metadata")
                said = (
                    event.get("stream"),
                    event.get("type"),
                    metadata.get("cycle_id") if isinstance(metadata, dict) else None,
                    event.get("idempotency_key"),
                )
                if said != (stream, type_, cycle_id, key):
                    return ReadModelCheck(
                        False,
                        checked,
                        f"{kind}:{ident}",
                        f"the columns of seq {seq} say other than its content, which the"
                        " hash covers",
                    )
                if ident != current and len(folded) >= _MODEL_BATCH:
                    bad = await compare()
                    if bad:
                        return bad
                before = folded.get(ident, (None, 0, 0))[0]
                folded[ident] = (model.evolve(before, type_, event.get("payload")), version, seq)
                current = ident
                checked += 1
    bad = await compare()
    return bad or ReadModelCheck(True, checked)


def _row_problem(
    row: Any, log_id: str, state: Any, version: int, last_seq: int, model: Any
) -> str | None:
    if row is None:
        return "missing from the read model"
    values = list(row)
    expected_status = state.get("status", "unknown")
    if model.placed:
        _, row_log, cycle_id, stage, unit, status, stored, row_version, row_seq = values
        place = (cycle_id, stage, unit)
        if place != (state.get("cycle_id"), state.get("stage"), state.get("unit")):
            return f"its place {place} is not the log's"
    else:
        _, row_log, status, stored, row_version, row_seq = values
    if row_log != log_id:
        return f"it names log {row_log}, the log that holds it is {log_id}"
    if status != expected_status:
        return f"its status is {status!r}; the log says {expected_status!r}"
    if stored != state:
        keys = sorted(k for k in set(stored) | set(state) if stored.get(k) != state.get(k))
        return f"its state differs from the log's in {', '.join(keys[:5])}"
    if (row_version, row_seq) != (version, last_seq):
        return (
            f"it stands at version {row_version} (seq {row_seq}); the log at {version} ({last_seq})"
        )
    return None


# -- against a checkpoint held outside ---------------------------------------------------


@dataclass(frozen=True)
class CheckpointMatch:
    ok: bool
    log_id: str | None
    size: int | None
    problem: str | None = None


async def verify_against_checkpoint(
    conn: AsyncConnection, note: str, vkeys: list[str]
) -> CheckpointMatch:
    """Checks the stored log against a signed checkpoint held outside the database (one
    in a Berita Acara, or a witness's): its signature, and the root of the first `size`
    leaves, recomputed from them, against the signed root. The leaves are the events'
    stored hashes: call it once `verify_log` has found the chain intact (as `audit
    verify` does), so that they are the hashes of the events' contents."""
    from musrenbang.events import tlog
    from musrenbang.events.tree import head_size

    try:
        checkpoint = tlog.parse_checkpoint(tlog.verify_note(note, vkeys))
    except tlog.NoteError as exc:
        return CheckpointMatch(False, None, None, f"the checkpoint does not verify: {exc}")
    log_id = checkpoint.origin.rsplit("/", 1)[-1]
    driver = await driver_connection(conn)
    head = await head_size(driver, log_id)
    if head < checkpoint.size:
        return CheckpointMatch(
            False,
            log_id,
            checkpoint.size,
            f"the log holds {head} events, fewer than the {checkpoint.size} signed",
        )
    tree = tlog.CompactRange()
    async for leaves in _leaf_batches(driver, log_id, checkpoint.size):
        tree.extend(leaves)
    if tree.size != checkpoint.size or tree.root() != checkpoint.root:
        return CheckpointMatch(
            False,
            log_id,
            checkpoint.size,
            f"the first {checkpoint.size} events do not make the signed root: the log was"
            " rewritten after that checkpoint was signed",
        )
    return CheckpointMatch(True, log_id, checkpoint.size)


# -- the stored Merkle tree ----------------------------------------------------------------

_TREE_AHEAD = (
    "SELECT level, idx FROM audit.tree WHERE log_id = %s AND ((idx + 1) << level) > %s LIMIT 1"
)


@dataclass(frozen=True)
class TreeCheck:
    ok: bool
    checked: int
    log_id: str | None = None
    problem: str | None = None


async def verify_tree(
    conn: AsyncConnection, only: Callable[[str], bool] | None = None
) -> TreeCheck:
    """Recomputes every stored subtree (`audit.tree`) from the events' hashes and names the
    first that differs, is missing below the stored size, or lies beyond the log."""
    from musrenbang.events.tree import log_ids

    driver = await driver_connection(conn)
    checked = 0
    for log_id in await log_ids(driver):
        if only is not None and not only(log_id):
            continue
        count, problem = await _verify_log_tree(driver, log_id)
        checked += count
        if problem:
            return TreeCheck(False, checked, log_id, problem)
    return TreeCheck(True, checked)


async def _verify_log_tree(driver: Any, log_id: str) -> tuple[int, str | None]:
    from musrenbang.events import tlog, tree

    head = await tree.head_size(driver, log_id)
    ahead = await (await driver.execute(_TREE_AHEAD, (log_id, head))).fetchone()
    if ahead is not None:
        return 0, f"a subtree {tuple(ahead)} covers leaves beyond the log"
    stored = await tree.stored_size(driver, log_id)
    pending: list[tuple[int, int, bytes]] = []
    computed = tlog.CompactRange(on_node=lambda lv, ix, h: pending.append((lv, ix, h)))
    checked = 0
    async for leaves in _leaf_batches(driver, log_id, stored):
        computed.extend(leaves)
        found = await tree.stored_nodes(driver, log_id, [(lv, ix) for lv, ix, _ in pending])
        for level, index, node in pending:
            if found.get((level, index)) != node:
                what = "missing" if (level, index) not in found else "not made by its leaves"
                return checked, f"the subtree (level {level}, index {index}) is {what}"
            checked += 1
        pending.clear()
    return checked, None


async def _leaf_batches(driver: Any, log_id: str, upto: int) -> AsyncIterator[list[bytes]]:
    """The log's leaf hashes (events 1..upto) in fixed batches, from a server-side cursor
    (memory stays bounded however long the log)."""
    async with (
        driver.transaction(),
        driver.cursor(name=f"leaves_{log_id.replace('.', '_')}", binary=True) as cur,
    ):
        await cur.execute(
            "SELECT hash FROM audit.events WHERE log_id = %s AND seq <= %s ORDER BY seq",
            (log_id, upto),
        )
        while rows := await cur.fetchmany(BATCH):
            yield [bytes(r[0]) for r in rows]
