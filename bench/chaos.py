"""Crash drill: a scripted cycle for Kota Tanjungbalai (31 kelurahan, every stage, every
kind of decision, pokir) driven through the HTTP API while the worker, the API, the
Temporal dev server and PostgreSQL are killed with SIGKILL at random moments and started
again. Then it checks what a crash must never cost: every acknowledged decision recorded
exactly once, no idempotency key twice, no seq gap, the log verifies, the read models equal
a rebuild, and the RKPD is adopted.

    .venv/bin/python -m bench.chaos [--kills 24] [--seed 7]

Not a test (tests/test_chaos.py runs a short drill, one kill of each): it prints figures;
the last line is JSON with `kills` per component, `events_lost`, `events_duplicated`,
`cycle_adopted`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import text

from bench.chaos_drive import Driver
from bench.chaos_stack import COMPONENTS, ChaosStack
from musrenbang.domain.decisions import EVENT_OF
from musrenbang.events.db import create_engine
from musrenbang.events.projections import rebuild
from musrenbang.events.verify import verify_all

REGION = "12.74"  # Kota Tanjungbalai: 6 kecamatan, 31 kelurahan
PACE_PER_KILL = 0.07  # seconds between forums, per kill asked for


async def _killer(
    stack: ChaosStack, kills: int, rng: random.Random, done: asyncio.Event, counts: Counter[str]
) -> None:
    """Kills a component every few seconds (each in turn, in a shuffled order), restarts it
    after a short outage, until `kills` kills are done or the drive is over."""
    order = [COMPONENTS[i % len(COMPONENTS)] for i in range(kills)]
    rng.shuffle(order)
    for name in order:
        try:
            await asyncio.wait_for(done.wait(), rng.uniform(1.0, 3.0))
            return
        except TimeoutError:
            pass
        await asyncio.to_thread(stack.kill, name)
        counts[name] += 1
        await asyncio.sleep(rng.uniform(0.2, 1.5))
        await asyncio.to_thread(stack.start, name)


async def _checks(stack: ChaosStack, driver: Driver) -> dict[str, Any]:
    engine = create_engine(stack.owner_url)
    try:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        "SELECT stream, type, payload->>'stage' AS stage FROM audit.events"
                        " WHERE stream LIKE 'proposal:%'"
                    )
                )
            ).all()
            # Facts that must hold once each: a forum opens once and closes at most once,
            # the RKPD is adopted once.
            twice = (
                await conn.execute(
                    text(
                        "SELECT count(*) FROM (SELECT stream, CASE WHEN type = 'ForumOpened'"
                        " THEN 'open' ELSE 'close' END AS fact FROM audit.events"
                        " WHERE type IN ('ForumOpened', 'ForumClosed', 'ForumAutoClosed',"
                        " 'RkpdAdopted') GROUP BY 1, 2 HAVING count(*) > 1) AS d"
                    )
                )
            ).scalar_one()
            gaps = (
                await conn.execute(
                    text(
                        "SELECT count(*) FROM (SELECT log_id FROM audit.events GROUP BY 1"
                        " HAVING max(seq) <> count(*)) AS g"
                    )
                )
            ).scalar_one()
            verified = await verify_all(conn)
            status = (
                await conn.execute(
                    text("SELECT status FROM read.cycles WHERE cycle_id = :c"),
                    {"c": driver.cycle},
                )
            ).scalar_one_or_none()
            live = await _read_models(conn)
        async with engine.connect() as conn:  # rebuilt inside a transaction, then undone
            await rebuild(conn)
            rebuilt = await _read_models(conn)
            await conn.rollback()
    finally:
        await engine.dispose()
    actual = Counter((r.stream.split(":", 1)[1], r.type, r.stage) for r in rows)
    expected = driver.expected
    lost = sum(max(0, n - actual[k]) for k, n in expected.items())
    # Every acknowledged event once, and nothing the drive did not ask for: a submission
    # run twice would make usulan nobody was told of.
    decided = set(EVENT_OF.values()) | {"ProposalSubmitted", "PokirSubmitted"}
    duplicated = sum(
        n - expected[k] for k, n in actual.items() if k[1] in decided and n > expected[k]
    )
    return {
        "events_lost": lost,
        "events_duplicated": duplicated + int(twice),
        "acknowledged_events": sum(expected.values()),
        "seq_gaps": int(gaps),
        "log_intact": verified.ok,
        "events_verified": verified.checked,
        "read_models_equal_rebuild": live == rebuilt,
        "read_model_differences": _differences(live, rebuilt),
        "cycle_adopted": status == "adopted",
    }


def _row_difference(row: tuple[Any, ...], other: tuple[Any, ...] | None) -> str:
    if other is None:
        return "not rebuilt"
    mine, theirs = row[2], other[2]
    keys = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
    cols = [
        n
        for n, a, b in zip(
            ("key", "status", "state", "version", "last_seq"), row, other, strict=True
        )
        if a != b
    ]
    return f"columns {cols}; state keys {[(k, mine.get(k), theirs.get(k)) for k in keys]}"


def _differences(
    live: dict[str, list[tuple[Any, ...]]], rebuilt: dict[str, list[tuple[Any, ...]]]
) -> list[str]:
    """The first rows (up to three) where the live read models and a rebuild differ."""
    out = []
    for table, rows in live.items():
        theirs = {r[0]: r for r in rebuilt[table]}
        for row in rows:
            other = theirs.pop(row[0], None)
            if other != row:
                out.append(f"{table} {row[0]}: {_row_difference(row, other)}"[:600])
        out += [f"{table} {key} (only rebuilt)" for key in theirs]
    return out[:3]


async def _read_models(conn: Any) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    for table, key in (
        ("read.proposals", "proposal_id"),
        ("read.forums", "forum_id"),
        ("read.cycles", "cycle_id"),
    ):
        result = await conn.execute(
            text(f"SELECT {key}, status, state::text, version, last_seq FROM {table} ORDER BY 1")
        )
        out[table] = [
            (r[0], r[1], json.loads(r[2]) if isinstance(r[2], str) else r[2], r[3], r[4])
            for r in result
        ]
    return out


async def drill(home: Path, kills: int, seed: int, log: Any = print) -> dict[str, Any]:
    """Runs one drill under `home`; returns the figures."""
    rng = random.Random(seed)
    stack = ChaosStack(home)
    started = time.monotonic()
    try:
        for name in ("postgres", "temporal"):
            stack.start(name)
        stack.migrate()
        for name in ("worker", "api"):
            stack.start(name)
        await asyncio.to_thread(stack.wait_api)
        log(f"stack up in {time.monotonic() - started:.1f} s; driving the cycle with {kills} kills")
        # Coordinators pace themselves so that the kills fall across the whole cycle.
        driver = Driver(stack.api_url, REGION, rng, log, pace=kills * PACE_PER_KILL)
        counts: Counter[str] = Counter()
        done = asyncio.Event()
        killer = asyncio.create_task(_killer(stack, kills, rng, done, counts))
        try:
            await driver.run()
        finally:
            done.set()
            await killer
        await asyncio.to_thread(stack.wait_api)
        figures = await _checks(stack, driver)
    finally:
        stack.stop_all()
    return {
        "kills": dict(counts),
        "kills_total": sum(counts.values()),
        **figures,
        "retried_requests": driver.retries,
        "seconds": round(time.monotonic() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=24)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="musrenbang-chaos-") as tmp:
        figures = asyncio.run(drill(Path(tmp), args.kills, args.seed))
    for name, value in figures.items():
        print(f"{name:28} {value}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
