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


async def verify_log(conn: AsyncConnection, log_id: str) -> Verification:
    """Verifies one log from genesis to its head."""
    driver = await driver_connection(conn)
    expected_seq = 1
    prev = GENESIS_HASH
    sha256 = hashlib.sha256
    # The record's timestamp is rendered by the same rule as the append path's
    # (UTC, microseconds, 'Z'); the session runs in UTC.
    async with driver.cursor(name=f"verify_{log_id.replace('.', '_')}") as cur:
        await cur.execute(
            "SELECT seq, prev_hash, hash, content, version, "
            "to_char(recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') "
            "FROM audit.events WHERE log_id = %s ORDER BY seq",
            (log_id,),
        )
        while True:
            rows = await cur.fetchmany(_BATCH)
            if not rows:
                break
            for seq, prev_hash, stored_hash, content, version, recorded in rows:
                if seq != expected_seq:
                    bad = min(seq, expected_seq)
                    return Verification(False, expected_seq - 1, log_id, bad, "seq gap")
                if prev_hash != prev:
                    return Verification(False, seq - 1, log_id, seq, "prev_hash does not link")
                record = (
                    f'{{"event":{content},"recorded_at":"{recorded}","version":{version}}}'
                ).encode()
                digest = sha256(LEAF_PREFIX + prev + seq.to_bytes(8, "big") + record).digest()
                if digest != stored_hash:
                    return Verification(False, seq - 1, log_id, seq, "hash mismatch")
                prev = digest
                expected_seq += 1
    head = await driver.execute(
        "SELECT head_seq, head_hash FROM audit.logs WHERE log_id = %s", (log_id,)
    )
    row = await head.fetchone()
    if row is not None and (row[0] != expected_seq - 1 or bytes(row[1]) != prev):
        bad = min(row[0], expected_seq - 1) + 1
        return Verification(False, expected_seq - 1, log_id, bad, "log head does not match")
    return Verification(True, expected_seq - 1, log_id)


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
