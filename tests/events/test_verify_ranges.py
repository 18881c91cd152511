"""Long logs are verified in ranges at once, in threads or in processes of their own;
tampering anywhere, inside a range or at the seam between two, is still named at its exact
seq. (Committed tampering: the ranges read through their own connections.) A range whose
process cannot start or fails is walked in a thread, with the same answer, and a walk that
is no longer wanted leaves no process behind."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from structlog.testing import capture_logs

from musrenbang.events import verify
from musrenbang.events import walk as walk_module
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
    with capture_logs() as logs:
        async with engine.connect() as conn:
            result = await verify_all(conn, min_range=10, processes_from=processes_from)
            single = await verify_all(conn)  # one range: the same answer
    assert (result.ok, result.first_bad_seq) == (False, bad)
    assert single.first_bad_seq == bad
    if case != "last row of the first range deleted":
        # there the range meets its own end short (a seq gap) before the next row's link
        assert single.problem == result.problem
    assert not [e for e in logs if e["event"] == "verify.walk_process_failed"]  # walked there


async def _long_log(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await append_events(conn, "36.71", [submitted(f"p{i}", minutes=i) for i in range(N)])


# A walk's program that runs the real one and blanks its answer for the range (40, 60].
_BLANKS_ONE = """#!{python}
import subprocess, sys
import orjson
job = sys.stdin.buffer.read()
done = subprocess.run([{python!r}, "-m", "musrenbang.events.walk"], input=job, capture_output=True)
found = orjson.loads(done.stdout)
found[1] = None
sys.stdout.buffer.write(orjson.dumps(found))
"""


@pytest.mark.parametrize(
    "program", ["/nonexistent/python", "/bin/false", "/bin/echo", "answers", "one blank"]
)
async def test_a_range_whose_process_fails_is_walked_in_a_thread(
    engine: AsyncEngine,
    owner_engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    program: str,
) -> None:
    """Cannot start, exits with an error, answers with something that is not a list of
    ranges, or with what is not a walk of a range: each such range, and only it, is walked
    in a thread, and the answer is the same, tampering included."""
    await _long_log(engine)
    failed = [20, 40]  # the ranges walked again: (20, 40] and (40, 60]
    script = tmp_path / "walk"
    if program == "answers":  # answers of its own that are not walks of their ranges
        script.write_text('#!/bin/sh\ncat > /dev/null\necho \'[3, {"bad": "fine"}]\'\n')
    elif program == "one blank":
        script.write_text(_BLANKS_ONE.format(python=sys.executable))
        failed = [40]
    if script.exists():
        script.chmod(0o755)
        program = str(script)
    monkeypatch.setattr(sys, "executable", program)  # what the walks are started with
    with capture_logs() as logs:
        async with engine.connect() as conn:
            intact = await verify_all(conn, min_range=10, processes_from=0)
    assert intact.ok and intact.checked == N
    assert [e["low"] for e in logs if e["event"] == "verify.walk_process_failed"] == failed
    async with owner_engine.begin() as conn:
        await conn.execute(text("ALTER TABLE audit.events DISABLE TRIGGER USER"))
        await conn.execute(text("UPDATE audit.events SET hash = sha256(hash) WHERE seq = 50"))
    async with engine.connect() as conn:
        found = await verify_all(conn, min_range=10, processes_from=0)
    assert (found.ok, found.first_bad_seq, found.problem) == (False, 50, "hash mismatch")


# The walk's program with one range's walk made to fail, in the process forked for it.
_ONE_FAILS = """
import os, sys
from musrenbang.events import walk
real = walk.walk_apart
def failing(info, log_id, low, high):
    os.write(2, f"walked {low} in {os.getpid()}\\n".encode())  # one write: whole lines
    if low == 20:
        raise RuntimeError("this range's walk broke")
    return real(info, log_id, low, high)
walk.walk_apart = failing
sys.exit(walk.main())
"""


async def test_a_failed_walk_is_answered_for_its_range_alone(engine: AsyncEngine) -> None:
    """Each range after the first is walked in a process forked for it (three processes):
    one whose walk fails is answered as null (and said on stderr), and the others are
    answered still."""
    await _long_log(engine)
    job = {
        "conninfo": conninfo(engine.url),
        "log_id": "36.71",
        "ranges": [[0, 20], [20, 40], [40, 60]],
    }
    done = subprocess.run(  # noqa: S603 - this interpreter, a fixed program
        [sys.executable, "-c", _ONE_FAILS],
        input=orjson.dumps(job),
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done
    first, second, third = orjson.loads(done.stdout)
    assert second is None and b"this range's walk broke" in done.stderr
    walkers = {
        line.split()[1]: line.split()[3]
        for line in done.stderr.decode().splitlines()
        if line.startswith("walked")
    }
    assert sorted(walkers) == ["0", "20", "40"] and len(set(walkers.values())) == 3  # forked
    assert Range.from_json(first, 0, 20).next_expected == 21
    assert Range.from_json(third, 40, 60).next_expected == 61


def _alive(group: int) -> list[int]:
    """The processes of a process group that are still running (not exited)."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == group and fields[0] != "Z":
                alive.append(int(stat.parent.name))
    return alive


@pytest.mark.parametrize("first_killed", [False, True])
async def test_a_walk_no_longer_wanted_leaves_no_process(
    engine: AsyncEngine,
    owner_engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
    first_killed: bool,
) -> None:
    """The processes of two ranges wait on a lock someone holds on the log; the walk is
    cancelled (a client gone, a timeout): the walk's process and the one it forked are
    killed, not left to walk, also when the walk's own process had already died."""
    await _long_log(engine)
    started: list[asyncio.subprocess.Process] = []
    spawn = asyncio.create_subprocess_exec

    async def recorded(*args: Any, **kwargs: Any) -> asyncio.subprocess.Process:
        process = await spawn(*args, **kwargs)
        started.append(process)
        return process

    monkeypatch.setattr(asyncio, "create_subprocess_exec", recorded)
    async with owner_engine.connect() as blocker:
        await blocker.execute(text("LOCK TABLE audit.events IN ACCESS EXCLUSIVE MODE"))
        walk = asyncio.create_task(
            verify._walk_in_process(conninfo(engine.url), "36.71", [(20, 40), (40, 60)])
        )
        for _ in range(300):  # the walk's process and the one it forks, both waiting
            if started and len(_alive(started[0].pid)) == 2:
                break
            await asyncio.sleep(0.1)
        assert not walk.done() and len(started) == 1 and started[0].returncode is None
        group = started[0].pid
        assert len(_alive(group)) == 2
        if first_killed:  # the fork still holds the pipes: the walk waits on
            os.kill(group, signal.SIGKILL)
            await asyncio.sleep(1)
            assert not walk.done() and len(_alive(group)) == 1
        walk.cancel()
        with pytest.raises(asyncio.CancelledError):
            await walk
        # still holding the lock: a process left behind would still be waiting on it
        assert len(started) == 1 and started[0].returncode == -signal.SIGKILL
        for _ in range(50):
            if not _alive(group):
                break
            await asyncio.sleep(0.1)
        assert _alive(group) == []
        await blocker.rollback()


def test_the_walks_program_refuses_what_is_not_a_walk() -> None:
    for job in (
        b"",
        b"[]",
        b'{"log_id": "36.71"}',
        b'{"conninfo": "", "log_id": "x", "low": 1, "high": 2}',
        b'{"conninfo": "", "log_id": "x", "ranges": []}',
        b'{"conninfo": "", "log_id": "x", "ranges": [[1]]}',
        b'{"conninfo": "", "log_id": "x", "ranges": [[1, 2, 3]]}',
        b'{"conninfo": "", "log_id": "x", "ranges": [["a", 2]]}',
        b'{"conninfo": "", "log_id": "x", "ranges": [[true, 2]]}',
        b'{"conninfo": 1, "log_id": "x", "ranges": [[1, 2]]}',
        b'{"conninfo": "", "log_id": "x", "ranges": {"1": 2}}',
    ):
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
    """What a walk of seqs (20, 40] can report, and nothing else: a bad log cannot be made
    to look good by a process that answers oddly."""
    walked = Range(bytes(32), b"\x01" * 32, 41, None)
    assert Range.from_json(walked.as_json(), 20, 40) == walked
    for found in (
        Range(None, None, 21, "seq gap"),
        Range(bytes(32), bytes(32), 33, "hash mismatch"),
        Range(bytes(32), bytes(32), 41, "seq gap"),
    ):
        assert Range.from_json(found.as_json(), 20, 40) == found
    h = bytes(32).hex()
    for text_ in (
        b"null",
        b"41",
        b"[]",
        b'{"first_prev": null}',
        b'{"first_prev": "zz", "last_hash": null, "next_expected": 41, "bad": null}',
        b'{"first_prev": null, "last_hash": null, "next_expected": "41", "bad": null}',
        b'{"first_prev": null, "last_hash": null, "next_expected": 21, "bad": 3}',
        # no rows, yet nothing found
        b'{"first_prev": null, "last_hash": null, "next_expected": 41, "bad": null}',
        # a last hash with no link to the range before
        f'{{"first_prev": null, "last_hash": "{h}", "next_expected": 41, "bad": null}}'.encode(),
        # short of the range's end, yet nothing found
        f'{{"first_prev": "{h}", "last_hash": "{h}", "next_expected": 40, "bad": null}}'.encode(),
        # a hash that is not 32 bytes
        f'{{"first_prev": "{h}", "last_hash": "00", "next_expected": 41, "bad": null}}'.encode(),
        # a problem outside the range, or one no walk finds
        (
            f'{{"first_prev": "{h}", "last_hash": "{h}", "next_expected": 45, "bad": "seq gap"}}'
        ).encode(),
        f'{{"first_prev": "{h}", "last_hash": "{h}", "next_expected": 30, "bad": "fine"}}'.encode(),
    ):
        with pytest.raises(ValueError):
            Range.from_json(orjson.loads(text_), 20, 40)


@pytest.mark.parametrize(
    ("column", "seq"),
    [
        ("content", 33),
        ("hash", 33),
        ("prev_hash", 33),
        ("recorded_at", 33),
        ("version", 33),
        ("prev_hash", 21),  # the first row of the second range
        ("prev_hash", 1),
        ("content", 1),
    ],
)
async def test_a_null_column_is_a_mismatch_in_every_walk(
    engine: AsyncEngine, owner_engine: AsyncEngine, column: str, seq: int
) -> None:
    """A column whose NOT NULL someone dropped, then emptied: named at its seq, in a thread,
    in a process and in one range, not a crash (nor a walk that never ends, nor a range
    walked again)."""
    await _long_log(engine)
    async with owner_engine.begin() as conn:
        await conn.execute(text("ALTER TABLE audit.events DISABLE TRIGGER USER"))
        await conn.execute(text(f"ALTER TABLE audit.events ALTER COLUMN {column} DROP NOT NULL"))
        await conn.execute(text(f"UPDATE audit.events SET {column} = NULL WHERE seq = {seq}"))
    with capture_logs() as logs:
        async with engine.connect() as conn:
            for processes_from in WALKERS.values():
                found = await asyncio.wait_for(
                    verify_all(conn, min_range=10, processes_from=processes_from), 60
                )
                assert (found.ok, found.first_bad_seq, found.problem) == (
                    False,
                    seq,
                    "hash mismatch",
                )
            found = await asyncio.wait_for(verify_all(conn), 60)
            assert (found.ok, found.first_bad_seq, found.problem) == (False, seq, "hash mismatch")
    assert not [e for e in logs if e["event"] == "verify.walk_process_failed"]


async def test_a_walk_that_stops_early_hands_its_connection_back(
    engine: AsyncEngine, owner_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In chunks of three rows, a problem in the middle of a range stops its walk with
    rows still to come: the statement is cancelled, the answer comes, and a row that makes
    the check itself fail ends the walk the same way, instead of waiting for ever."""
    monkeypatch.setattr(walk_module, "_CHUNK", 3)
    await _long_log(engine)
    async with owner_engine.begin() as conn:
        await conn.execute(text("ALTER TABLE audit.events DISABLE TRIGGER USER"))
        await conn.execute(text("UPDATE audit.events SET hash = sha256(hash) WHERE seq = 25"))
    async with engine.connect() as conn:
        found = await asyncio.wait_for(verify_all(conn, min_range=10), 60)
    assert (found.first_bad_seq, found.problem) == (25, "hash mismatch")

    def broken(*args: Any) -> Any:
        raise RuntimeError("the check broke")

    monkeypatch.setattr(walk_module, "_check_rows", broken)
    async with engine.connect() as conn:
        with pytest.raises(RuntimeError, match="the check broke"):
            await asyncio.wait_for(verify_all(conn, min_range=10), 60)
