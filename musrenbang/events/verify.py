"""Verification of the log: every hash recomputed, seq continuity and prev links checked.

It walks each log with a server-side cursor in fixed-size batches, so memory stays
constant however long the log is, and names the first bad seq.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from musrenbang.events.canonical import GENESIS_HASH, LEAF_PREFIX
from musrenbang.events.db import driver_connection

_BATCH = 20_000


@dataclass(frozen=True)
class Verification:
    ok: bool
    checked: int
    log_id: str | None = None
    first_bad_seq: int | None = None
    problem: str | None = None


# Each row comes as one bytea, laid out as
#   hash (32) || 0x00 || prev_hash (32) || be64(seq) || record
# so that everything after the stored hash is exactly the leaf the hash covers, and Python
# hashes it without copying. The server renders the record by the documented rule
# (timestamp in UTC with microseconds); Python recomputes every hash and checks every seq,
# the 0x00 prefix and every link.
_ROWS = (
    "SELECT hash || '\\x00'::bytea || prev_hash || int8send(seq)"
    " || convert_to('{\"event\":' || content"
    ' || \',"recorded_at":"\''
    " || to_char(recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
    " || '\",\"version\":' || version || '}', 'UTF8')"
    " FROM audit.events WHERE log_id = %s AND seq > %s AND seq <= %s ORDER BY seq"
)


@dataclass
class _Range:
    """What verifying one range of seqs found."""

    first_prev: bytes | None  # the stored prev_hash of its first row
    last_hash: bytes | None
    next_expected: int
    bad: str | None


async def verify_log(
    conn: AsyncConnection, log_id: str, *, parallel: int = 2, min_range: int = _BATCH
) -> Verification:
    """Verifies one log from genesis to its head.

    Long logs are split into `parallel` ranges of seqs verified at once on their own
    connections (the server renders rows on one core while Python hashes on the other);
    each range checks its own rows and links, and the ranges are then stitched: each must
    start where the one before ended. Memory stays bounded: cursors fetch fixed batches.
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
    results = await asyncio.gather(
        *(_verify_range(conn, log_id, bounds[i], bounds[i + 1], first=i == 0) for i in range(parts))
    )
    prev, expected = GENESIS_HASH, 1
    for (low, _), found in zip(itertools.pairwise(bounds), results, strict=True):
        if found.first_prev is not None and found.first_prev != prev and found.bad is None:
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


async def _verify_range(
    conn: AsyncConnection, log_id: str, low: int, high: int, first: bool
) -> _Range:
    if first:
        return await _walk(await driver_connection(conn), log_id, low, high)
    async with conn.engine.connect() as other:
        return await _walk(await driver_connection(other), log_id, low, high)


async def _walk(driver: Any, log_id: str, low: int, high: int) -> _Range:
    """Walks seqs (low, high]: every row's hash, seq and link to the row before it."""
    expected, prev, first_prev = low + 1, b"", None
    async with (
        driver.transaction(),
        driver.cursor(name=f"verify_{log_id.replace('.', '_')}_{low}", binary=True) as cur,
    ):
        cur.itersize = _BATCH
        await cur.execute(_ROWS, (log_id, low, high))
        while rows := await cur.fetchmany(_BATCH):
            if first_prev is None:
                first_prev = prev = bytes(rows[0][0][33:65])
            expected, prev, bad = _check_rows(rows, expected, prev)
            if bad is not None:
                return _Range(first_prev, prev, expected, bad)
            await asyncio.sleep(0)  # let the other range's batch in
    last = prev if first_prev is not None else None  # None: the range held no rows
    if expected != high + 1 and high > low:
        return _Range(first_prev, last, expected, "seq gap")
    return _Range(first_prev, last, expected, None)


def _check_rows(
    rows: list[tuple[bytes]], expected: int, prev: bytes
) -> tuple[int, bytes, str | None]:
    """Walks one batch; returns the next expected seq, the running hash and a problem."""
    sha256 = hashlib.sha256
    prefix = LEAF_PREFIX + prev
    for (row,) in rows:
        view = memoryview(row)
        if view[32:65] != prefix:
            return expected, prev, "prev_hash does not link"
        if int.from_bytes(view[65:73], "big") != expected:
            return expected, prev, "seq gap"
        digest = sha256(view[32:]).digest()
        if digest != view[:32]:
            return expected, prev, "hash mismatch"
        prev, prefix = digest, LEAF_PREFIX + digest
        expected += 1
    return expected, prev, None


async def verify_all(conn: AsyncConnection, *, min_range: int = _BATCH) -> Verification:
    """Verifies every log; stops at the first that fails."""
    driver = await driver_connection(conn)
    logs = [
        r[0]
        for r in await (
            await driver.execute("SELECT log_id FROM audit.logs ORDER BY log_id")
        ).fetchall()
    ]
    checked = 0
    for log_id in logs:
        result = await verify_log(conn, log_id, min_range=min_range)
        checked += result.checked
        if not result.ok:
            return Verification(False, checked, log_id, result.first_bad_seq, result.problem)
    return Verification(True, checked)
