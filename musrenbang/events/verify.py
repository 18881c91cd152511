"""Verification of the log: every hash recomputed, seq continuity and prev links checked.

It walks each log with a server-side cursor in fixed-size batches, so memory stays
constant however long the log is, and names the first bad seq.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

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
#   prev_hash (32) || hash (32) || be64(seq) || record
# so that the bytes after the two hashes are exactly what the leaf hash covers after
# 0x00 || prev_hash. The server renders the record by the documented rule (timestamp in
# UTC with microseconds); Python recomputes every hash and checks every seq and link.
_ROWS = (
    "SELECT prev_hash || hash || int8send(seq) || convert_to('{\"event\":' || content"
    ' || \',"recorded_at":"\''
    " || to_char(recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
    " || '\",\"version\":' || version || '}', 'UTF8')"
    " FROM audit.events WHERE log_id = %s ORDER BY seq"
)


async def verify_log(conn: AsyncConnection, log_id: str) -> Verification:
    """Verifies one log from genesis to its head, through a server-side cursor in batches
    of bounded size (constant memory)."""
    driver = await driver_connection(conn)
    expected, prev = 1, GENESIS_HASH
    async with driver.cursor(name=f"verify_{log_id.replace('.', '_')}", binary=True) as cur:
        cur.itersize = _BATCH
        await cur.execute(_ROWS, (log_id,))
        while rows := await cur.fetchmany(_BATCH):
            expected, prev, bad = _check_rows(rows, expected, prev)
            if bad is not None:
                return Verification(False, expected - 1, log_id, expected, bad)
    cur = await driver.execute(
        "SELECT head_seq, head_hash FROM audit.logs WHERE log_id = %s", (log_id,)
    )
    head = await cur.fetchone()
    if head is not None and (head[0] != expected - 1 or bytes(head[1]) != prev):
        bad_seq = min(head[0], expected - 1) + 1
        return Verification(False, expected - 1, log_id, bad_seq, "log head does not match")
    return Verification(True, expected - 1, log_id)


def _check_rows(
    rows: list[tuple[bytes]], expected: int, prev: bytes
) -> tuple[int, bytes, str | None]:
    """Walks one batch; returns the next expected seq, the running hash and a problem."""
    sha256 = hashlib.sha256
    for (row,) in rows:
        if int.from_bytes(row[64:72], "big") != expected:
            return expected, prev, "seq gap"
        if row[:32] != prev:
            return expected, prev, "prev_hash does not link"
        digest = sha256(LEAF_PREFIX + row[:32] + row[64:]).digest()
        if digest != row[32:64]:
            return expected, prev, "hash mismatch"
        prev = digest
        expected += 1
    return expected, prev, None


async def verify_all(conn: AsyncConnection) -> Verification:
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
        result = await verify_log(conn, log_id)
        checked += result.checked
        if not result.ok:
            return Verification(False, checked, log_id, result.first_bad_seq, result.problem)
    return Verification(True, checked)
