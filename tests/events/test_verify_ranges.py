"""Long logs are verified in ranges at once, in threads or in processes of their own;
tampering anywhere, inside a range or at the seam between two, is still named at its exact
seq. (Committed tampering: the ranges read through their own connections.) A range whose
process cannot start or fails is walked in a thread, with the same answer, and a walk that
is no longer wanted leaves no process behind."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from structlog.testing import capture_logs

from musrenbang.events import verify
from musrenbang.events.append import append_events
from musrenbang.events.db import conninfo
from musrenbang.events.verify import verify_all
from musrenbang.events.walk import Range
from tests.events.helpers import submitted

N = 60  # with min_range=10, three ranges: seqs 1-20, 21-40 and 41-60

CASES = {
    "payload in the second range": (
        "UPDATE audit.events SET content = replace(content, 'Jalan', 'Jalur') WHERE seq = 44",
        44,
    ),
    "first row of the second range deleted": ("DELETE FROM audit.events WHERE seq = 21", 21),
    "last row of the first range deleted": ("DELETE FROM audit.events WHERE seq = 20", 20),
    "prev link at the seam": (
        "UPDATE audit.events SET prev_hash = sha256(prev_hash) WHERE seq = 21",
        21,
    ),
    "first row of the third range changed": (
        "UPDATE audit.events SET content = replace(content, 'Jalan', 'Jalur') WHERE seq = 41",
        41,
    ),
    "hash in the first range": ("UPDATE audit.events SET hash = sha256(hash) WHERE seq = 7", 7),
    "last row of the log deleted": ("DELETE FROM audit.events WHERE seq = 60", 60),
}


# processes_from: never (the ranges in threads), and always (all but the first in processes)
WALKERS = {"threads": 10**9, "processes": 0}


@pytest.mark.parametrize("walker", sorted(WALKERS))
@pytest.mark.parametrize("case", sorted(CASES))
async def test_tampering_is_found_across_ranges(
    engine: AsyncEngine, owner_engine: AsyncEngine, case: str, walker: str
) -> None:
    processes_from = WALKERS[walker]
    async with engine.begin() as conn:
        await append_events(conn, "36.71", [submitted(f"p{i}", minutes=i) for i in range(N)])
    async with engine.connect() as conn:
        intact = await verify_all(conn, min_range=10, processes_from=processes_from)
    assert intact.ok and intact.checked == N
    statement, bad = CASES[case]
    async with owner_engine.begin() as conn:
        await conn.execute(text("ALTER TABLE audit.events DISABLE TRIGGER USER"))
        await conn.execute(
            text("ALTER TABLE audit.events DROP CONSTRAINT events_stream_version_key")
        )
        await conn.execute(text(statement))
    async with engine.connect() as conn:
        result = await verify_all(conn, min_range=10, processes_from=processes_from)
        single = await verify_all(conn)  # one range: the same answer
    assert (result.ok, result.first_bad_seq) == (False, bad)
    assert single.first_bad_seq == bad


async def _long_log(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await append_events(conn, "36.71", [submitted(f"p{i}", minutes=i) for i in range(N)])


@pytest.mark.parametrize("program", ["/nonexistent/python", "/bin/false", "/bin/echo"])
async def test_a_range_whose_process_fails_is_walked_in_a_thread(
    engine: AsyncEngine,
    owner_engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
    program: str,
) -> None:
    """Cannot start, exits with an error, answers with something that is not a range: the
    range is walked in a thread and the answer is the same, tampering included."""
    await _long_log(engine)
    monkeypatch.setattr(sys, "executable", program)  # what the walks are started with
    with capture_logs() as logs:
        async with engine.connect() as conn:
            intact = await verify_all(conn, min_range=10, processes_from=0)
    assert intact.ok and intact.checked == N
    assert sum(e["event"] == "verify.walk_process_failed" for e in logs) == 2  # ranges 2, 3
    async with owner_engine.begin() as conn:
        await conn.execute(text("ALTER TABLE audit.events DISABLE TRIGGER USER"))
        await conn.execute(text("UPDATE audit.events SET hash = sha256(hash) WHERE seq = 50"))
    async with engine.connect() as conn:
        found = await verify_all(conn, min_range=10, processes_from=0)
    assert (found.ok, found.first_bad_seq, found.problem) == (False, 50, "hash mismatch")


def _walk_processes() -> list[int]:
    """The pids of walks' processes running now."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            if b"musrenbang.events.walk" in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
    return found


async def test_a_walk_no_longer_wanted_leaves_no_process(
    engine: AsyncEngine, owner_engine: AsyncEngine
) -> None:
    """A range's process waits on a lock someone holds on the log; the walk is cancelled
    (a client gone, a timeout): its process is killed, not left to walk."""
    await _long_log(engine)
    before = set(_walk_processes())
    async with owner_engine.connect() as blocker:
        await blocker.execute(text("LOCK TABLE audit.events IN ACCESS EXCLUSIVE MODE"))
        walk = asyncio.create_task(verify._walk_in_process(conninfo(engine.url), "36.71", 20, 40))
        for _ in range(200):
            await asyncio.sleep(0.05)
            if set(_walk_processes()) - before:
                break
        started = set(_walk_processes()) - before
        walk.cancel()
        with pytest.raises(asyncio.CancelledError):
            await walk
        assert len(started) == 1, "the walk's process did not start"
        # still holding the lock: a process left behind would still be waiting on it
        for _ in range(100):
            if not set(_walk_processes()) & started:
                break
            await asyncio.sleep(0.05)
        assert not set(_walk_processes()) & started
        await blocker.rollback()


def test_the_walks_program_refuses_what_is_not_a_walk() -> None:
    for job in (b"", b"[]", b'{"log_id": "36.71"}', b'{"conninfo": "", "log_id": "x", "low": "a"}'):
        done = subprocess.run(
            [sys.executable, "-m", "musrenbang.events.walk"],
            input=job,
            capture_output=True,
            check=False,
            timeout=60,
        )
        assert done.returncode == 2 and done.stdout == b"", (job, done)
        assert b"not a walk" in done.stderr


def test_a_range_reads_back_as_itself_and_nothing_else_passes_for_one() -> None:
    found = Range(bytes(32), b"\x01" * 32, 61, None)
    assert Range.from_json(orjson.dumps(found.as_json())) == found
    bad = Range(None, None, 21, "seq gap")
    assert Range.from_json(orjson.dumps(bad.as_json())) == bad
    for text_ in (
        b"",
        b"null",
        b"[]",
        b'{"first_prev": null}',
        b'{"first_prev": "zz", "last_hash": null, "next_expected": 1, "bad": null}',
        b'{"first_prev": null, "last_hash": null, "next_expected": "1", "bad": null}',
        b'{"first_prev": null, "last_hash": null, "next_expected": 1, "bad": 3}',
    ):
        with pytest.raises(ValueError):
            Range.from_json(text_)
