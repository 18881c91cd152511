"""The walk of one range of a log's seqs: every row's hash recomputed from its stored
columns, its seq and its link to the row before it.

Verification (`musrenbang.events.verify`) splits a long log into ranges and walks each on a
connection of its own: in a thread, or, for a log long enough to repay starting one, in a
process (``python -m musrenbang.events.walk``), since the walk is Python work that threads
share one interpreter lock for. This module is that process's whole program: it imports only
the driver, orjson and the record's format (`canonical`), reads what to walk as one JSON
object on stdin (``conninfo``, ``log_id``, ``ranges``: a list of ``[low, high]``) and writes
what it found as one JSON list on stdout, a range's `Range.as_json` or null (its walk
failed, or its process could not start or ended badly; what is known is said on stderr) for
each range asked for. It walks the first of its ranges itself and each other in a process
forked from it once the imports are done, before any connection is open: importing the
driver costs about a third of a second of CPU, which is paid once however many ranges there
are.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import signal
import sys
import traceback
from collections.abc import Generator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import orjson
import psycopg
from psycopg.types.string import ByteaBinaryLoader

from musrenbang.events.canonical import LEAF_PREFIX, RECORD_HEAD, record_tail

BATCH = 20_000  # rows a fetch: memory stays bounded however long the log is
_CHUNK = 1_000  # rows a streamed chunk, and checked at once
# what a walk can find
PROBLEMS = frozenset({"prev_hash does not link", "seq gap", "hash mismatch"})

# Each row comes as the stored hash, the fixed-size columns the leaf covers in their binary
# wire form, prev_hash || be64(seq) and then recorded_at (as PostgreSQL sends a timestamptz,
# microseconds since 2000-01-01 UTC) || be64(version), and the content's bytes. Python
# hashes the leaf, 0x00 || prev_hash || be64(seq) || record, from the record's own pieces
# (`canonical.RECORD_HEAD`, `canonical.record_tail`), fed to one hash in turn rather than
# joined first: nothing the server computes is trusted, and the server only sends stored
# columns (rendering the leaf there, with to_char, cost it about four times as much a row
# as sending them).
_ROWS = (
    "SELECT hash, prev_hash || int8send(seq), timestamptz_send(recorded_at) || int8send(version),"
    " content FROM audit.events WHERE log_id = %s AND seq > %s AND seq <= %s ORDER BY seq"
)
_Row = tuple[bytes, bytes, bytes, bytes]  # hash, prev_hash || be64(seq), time || version, content
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_TAILS = 4_096  # the record's tails kept, by recorded_at and version (a batch shares one)


def _record_tail(wire: bytes) -> bytes | None:
    """The record's tail (`canonical.record_tail`) from a row's recorded_at and version in
    their wire form; None when the time is outside what the record can say (years 1 to
    9999)."""
    micros = int.from_bytes(wire[:8], "big", signed=True)
    try:
        moment = _PG_EPOCH + timedelta(microseconds=micros)
    except OverflowError:  # 'infinity', or a time no event was recorded at
        return None
    return record_tail(moment, int.from_bytes(wire[8:], "big", signed=True))


@dataclass
class Range:
    """What verifying one range of seqs found."""

    first_prev: bytes | None  # the stored prev_hash of its first row
    last_hash: bytes | None
    next_expected: int
    bad: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "first_prev": None if self.first_prev is None else self.first_prev.hex(),
            "last_hash": None if self.last_hash is None else self.last_hash.hex(),
            "next_expected": self.next_expected,
            "bad": self.bad,
        }

    @classmethod
    def from_json(cls, found: object, low: int, high: int) -> Range:
        """The range a walk's process reported for seqs (low, high], as JSON decoded it;
        ValueError unless it is one such a walk can end with: hashes of 32 bytes, a link and
        a last hash both or neither (no rows), and a walk that found nothing having reached
        `high`."""
        try:
            answer = cast("dict[str, Any]", found)
            first, last, bad = answer["first_prev"], answer["last_hash"], answer["bad"]
            expected = answer["next_expected"]
            if type(expected) is not int or not (bad is None or isinstance(bad, str)):
                raise ValueError("not a range")
            walked = cls(
                None if first is None else bytes.fromhex(first),
                None if last is None else bytes.fromhex(last),
                expected,
                bad,
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a range: {exc}") from exc
        hashes = [h for h in (walked.first_prev, walked.last_hash) if h is not None]
        if any(len(h) != 32 for h in hashes) or len(hashes) == 1:
            raise ValueError("not a range: its hashes")
        if bad is None and (expected != high + 1 or (high > low and not hashes)):
            raise ValueError("not a range: a walk that found nothing ends at its last seq")
        if bad is not None and not (low < expected <= high + 1 and bad in PROBLEMS):
            raise ValueError("not a range: its problem")
        return walked


class _Walk:
    """Walks seqs (low, high], a batch at a time: every row's hash, seq and link to the
    row before it."""

    def __init__(self, low: int, high: int) -> None:
        self.low, self.high = low, high
        self.expected, self.prev = low + 1, b""
        self.first_prev: bytes | None = None
        self.bad: str | None = None
        self.tails: dict[bytes, bytes] = {}

    def feed(self, rows: list[_Row]) -> bool:
        """Checks one batch; false once a problem is found (and the walk should stop)."""
        if not rows:
            return False
        if self.first_prev is None:
            linked = rows[0][1]
            if linked is None or len(linked) != 40:  # no link to stitch the range by
                self.bad = "hash mismatch" if linked is None else "prev_hash does not link"
                return False
            self.first_prev = self.prev = linked[:32]
        self.expected, self.prev, self.bad = _check_rows(rows, self.expected, self.prev, self.tails)
        return self.bad is None

    def result(self) -> Range:
        last = self.prev if self.first_prev is not None else None  # None: no rows
        if self.bad is None and self.expected != self.high + 1 and self.high > self.low:
            self.bad = "seq gap"
        return Range(self.first_prev, last, self.expected, self.bad)

    def cursor_name(self, log_id: str) -> str:
        return f"verify_{log_id.replace('.', '_')}_{self.low}"


async def walk_here(driver: Any, log_id: str, low: int, high: int) -> Range:
    """The walk on the caller's own connection (so it sees that connection's transaction)."""
    walk = _Walk(low, high)
    async with (
        driver.transaction(),
        driver.cursor(name=walk.cursor_name(log_id), binary=True) as cur,
    ):
        cur.adapters.register_loader("text", ByteaBinaryLoader)  # the content's bytes
        await cur.execute(_ROWS, (log_id, low, high))
        while walk.feed(await cur.fetchmany(BATCH)):
            pass
    return walk.result()


def walk_apart(info: str, log_id: str, low: int, high: int) -> Range:
    """The walk on a connection of its own (in a thread, or in a walk's process).

    The rows are streamed (`Cursor.stream`, libpq's chunked rows): the server keeps
    sending while Python checks what has come, instead of the two taking turns a fetch at a
    time, and memory stays bounded by the chunk and the socket's buffers. One statement in
    autocommit mode, so one snapshot; leaving it early cancels it."""
    walk = _Walk(low, high)
    # libpq 17 and newer send chunks of rows; an older one, one row at a time
    size = _CHUNK if psycopg.capabilities.has_stream_chunked() else 1
    with psycopg.connect(info, autocommit=True) as own, own.cursor(binary=True) as cur:
        cur.adapters.register_loader("text", ByteaBinaryLoader)  # the content's bytes
        # A generator, which holds the connection until it is closed (typed as an
        # iterator): closed however the walk ends, which cancels what is left of the
        # statement; left open, the connection's own exit would wait for it for ever.
        rows = cast("Generator[Any, None, None]", cur.stream(_ROWS, (log_id, low, high), size=size))
        with contextlib.closing(rows):
            while walk.feed(list(itertools.islice(rows, _CHUNK))):
                pass
    return walk.result()


def _check_rows(
    rows: list[_Row], expected: int, prev: bytes, tails: dict[bytes, bytes]
) -> tuple[int, bytes, str | None]:
    """Walks one batch; returns the next expected seq, the running hash and a problem.

    Each row's ``prev_hash || be64(seq)`` must be exactly ``prev || be64(expected)``: one
    comparison checks the link and the seq, and only a failing row is taken apart to say
    which of them broke. `tails` keeps the rendered end of recent records."""
    try:
        return _check(rows, expected, prev, tails)
    except TypeError:  # a column that is NULL (its NOT NULL dropped): not what was hashed
        null = next((i for i, row in enumerate(rows) if None in row), None)
        if null is None:
            raise
        expected, prev, bad = _check(rows[:null], expected, prev, tails)
        return expected, prev, bad or "hash mismatch"


def _check(
    rows: list[_Row], expected: int, prev: bytes, tails: dict[bytes, bytes]
) -> tuple[int, bytes, str | None]:
    leaf = hashlib.sha256(LEAF_PREFIX)  # each row's hash goes on from a copy of it
    want = prev + expected.to_bytes(8, "big")
    for stored, linked, key, content in rows:
        if linked != want:
            if linked[:32] != prev:
                return expected, prev, "prev_hash does not link"
            return expected, prev, "seq gap"
        tail = tails.get(key)
        if tail is None:
            tail = _record_tail(key)
            if tail is None:
                return expected, prev, "hash mismatch"
            if len(tails) >= _TAILS:
                tails.clear()
            tails[key] = tail
        h = leaf.copy()
        h.update(want)
        h.update(RECORD_HEAD)
        h.update(content)
        h.update(tail)
        digest = h.digest()
        if digest != stored:
            return expected, prev, "hash mismatch"
        prev = digest
        expected += 1
        want = digest + expected.to_bytes(8, "big")
    return expected, prev, None


def _job(text: bytes) -> tuple[str, str, list[tuple[int, int]]]:
    """What to walk, from the JSON object on stdin; ValueError unless it is one."""
    try:
        job = orjson.loads(text)
        info, log_id, ranges = job["conninfo"], job["log_id"], job["ranges"]
        if not (isinstance(info, str) and isinstance(log_id, str) and isinstance(ranges, list)):
            raise TypeError("conninfo and log_id are strings, ranges a list")
        pairs = [(low, high) for low, high in ranges]
        if not pairs or any(type(n) is not int for pair in pairs for n in pair):
            raise TypeError("ranges are [low, high] pairs of integers")
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(str(exc)) from exc
    return info, log_id, pairs


def _walk_or_none(info: str, log_id: str, low: int, high: int) -> dict[str, Any] | None:
    """One range's answer; None when its walk failed (said on stderr)."""
    try:
        return walk_apart(info, log_id, low, high).as_json()
    except Exception:  # the range is walked again where it was asked for
        print(f"the walk of ({low}, {high}] failed:", file=sys.stderr)
        traceback.print_exc(file=sys.stderr)
        sys.stderr.flush()
        return None


class _Forks:
    """The processes this walk's process forked, one a range, each answering on a pipe of
    its own. They are forked while this process has no thread and no connection, so a
    fork copies nothing that another thread holds."""

    def __init__(self) -> None:
        self.pending: dict[int, int] = {}  # pid: the reading end of its pipe

    def start(self, info: str, log_id: str, low: int, high: int) -> int | None:
        """The pid of a process forked to walk seqs (low, high]; None when none could be
        (the range is then answered as null)."""
        try:
            read, write = os.pipe()
            try:
                pid = os.fork()
            except OSError:
                os.close(read)
                os.close(write)
                raise
        except OSError as exc:
            print(f"the walk of ({low}, {high}] could not start: {exc}", file=sys.stderr)
            return None
        if pid == 0:  # the child: walk, answer, exit without the parent's exit handlers
            code = 1
            try:
                os.close(read)
                for sibling in self.pending.values():
                    os.close(sibling)
                with os.fdopen(write, "wb") as answer:
                    answer.write(orjson.dumps(_walk_or_none(info, log_id, low, high)))
                code = 0
            finally:
                os._exit(code)
        os.close(write)
        self.pending[pid] = read
        return pid

    def answer(self, pid: int | None) -> dict[str, Any] | None:
        """A forked walk's answer, once it has exited; None unless it exited well."""
        if pid is None:
            return None
        read = self.pending[pid]
        with os.fdopen(read, "rb", closefd=False) as pipe:
            text = pipe.read()
        _, status = os.waitpid(pid, 0)
        del self.pending[pid]
        os.close(read)
        if os.waitstatus_to_exitcode(status) != 0:
            print(f"the walk's process {pid} ended with {status}", file=sys.stderr)
            return None
        try:
            found = orjson.loads(text)
        except ValueError:
            return None
        return found if isinstance(found, dict) else None

    def close(self) -> None:
        """Kills and reaps every process not answered yet (the walk ends early)."""
        for pid, read in self.pending.items():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                os.waitpid(pid, 0)
            with contextlib.suppress(OSError):
                os.close(read)
        self.pending.clear()


def main() -> int:
    """The walk of one or more ranges (see the module docstring)."""
    try:
        info, log_id, ranges = _job(sys.stdin.buffer.read())
    except ValueError as exc:
        print(f"not a walk: {exc}", file=sys.stderr)
        return 2
    (low, high), others = ranges[0], ranges[1:]
    forks = _Forks()
    try:
        pids = [forks.start(info, log_id, lo, hi) for lo, hi in others]
        found = [_walk_or_none(info, log_id, low, high)] + [forks.answer(pid) for pid in pids]
    finally:
        forks.close()
    sys.stdout.buffer.write(orjson.dumps(found))
    return 0


if __name__ == "__main__":
    sys.exit(main())
