"""Event log benchmark: the append path against raw inserts of the same rows, history reads
with a large log, and verification throughput. Not a test: it prints figures, and its last
line is one JSON object with them all.

    make bench                 # or: .venv/bin/python bench/event_log.py [--log-size N]

Uses MUSRENBANG_DATABASE_URL when set, else a throwaway embedded PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import URL, make_url, text

from musrenbang.embedded import embedded_postgres, ensure_database
from musrenbang.events.append import EventWriter, append_events
from musrenbang.events.db import app_url, conninfo, create_engine, driver_connection, migrate
from musrenbang.events.model import NewEvent
from musrenbang.events.store import read_stream
from musrenbang.events.verify import verify_log

APP = ("musrenbang_app", "musrenbang_app")
T0 = datetime(2027, 1, 4, 1, 0, tzinfo=UTC)
ACTOR = {"subject": "staf.bappeda", "role": "coordinator", "jurisdiction": "36.71"}
TYPES = ["ProposalAccepted", "ProposalPrioritized", "ProposalForwarded", "ProposalRevised"]


def event(stream_no: int, n: int, tag: str) -> NewEvent:
    """About 300 bytes of canonical content, like a real decision."""
    pid = f"{tag}-{stream_no:07d}"
    first = n == 0
    return NewEvent(
        stream=f"proposal:{pid}",
        type="ProposalSubmitted" if first else TYPES[n % len(TYPES)],
        payload={
            "proposal_id": pid,
            "cycle_id": "36.71-2027",
            "stage": "kelurahan",
            "unit": "36.71.01.1001",
            "details": {"masalah": "Drainase tersumbat RT 04/RW 07", "cost": 75_000_000 + n},
        }
        if first
        else {
            "stage": "kecamatan",
            "unit": "36.71.01",
            "rank": n,
            "to_stage": "kota",
            "to_unit": "36.71",
        },
        actor=ACTOR,
        occurred_at=T0 + timedelta(seconds=stream_no + n),
        idempotency_key=f"{tag}:{stream_no}:{n}",
        metadata={"cycle_id": "36.71-2027"},
    )


def raw_setup(owner: URL) -> None:
    # A table like audit.events in every way an insert pays for (its columns, keys,
    # indexes, constraints), without the append path. Its rows are written under the
    # table's rule, as the append functions write them: the descriptive columns read from
    # the content (once, as generated columns did before revision 0010).
    with psycopg.connect(conninfo(owner), autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS public.raw_events")
        conn.execute("CREATE TABLE public.raw_events (LIKE audit.events INCLUDING ALL)")
        conn.execute("GRANT INSERT, SELECT ON public.raw_events TO musrenbang_app")


def raw_rows(events: list[NewEvent], start_seq: int) -> list[tuple[Any, ...]]:
    now = datetime.now(UTC)
    return [
        ("36.71", start_seq + i, 1, now, e.occurred_at, bytes(32), bytes(32), e.content("36.71"))
        for i, e in enumerate(events)
    ]


RAW_INSERT = (  # payload and actor are virtual there too (LIKE ... INCLUDING ALL)
    "INSERT INTO public.raw_events (log_id, seq, version, recorded_at, occurred_at, prev_hash,"
    " hash, content, idempotency_key, stream, type, cycle_id)"
    " SELECT %s, %s, %s, %s, %s, %s, %s, x.c, r.idempotency_key, r.stream, r.type,"
    " r.metadata->>'cycle_id'"
    " FROM (SELECT %s::text AS c) x, jsonb_to_record(x.c::jsonb) AS r(idempotency_key text,"
    " stream text, type text, metadata jsonb)"
)


async def bench_batched(app: URL, n: int, batch: int) -> dict[str, float]:
    events = [event(i, 0, "batch") for i in range(n)]
    writer = EventWriter(app)  # the application's append path
    started = time.perf_counter()
    for i in range(0, n, batch):
        await writer.append("36.71", events[i : i + batch])
    append_rate = n / (time.perf_counter() - started)
    await writer.aclose()

    raw_rate = raw_batched_rate(
        app, raw_rows([event(i, 0, "rawbatch") for i in range(n)], 1), batch
    )
    return {"append": append_rate, "raw": raw_rate}


def raw_batched_rate(app: URL, rows: list[tuple[Any, ...]], batch: int) -> float:
    """Rows per second of the raw baseline: plain INSERTs, `batch` a transaction."""
    with psycopg.connect(conninfo(app)) as conn:
        started = time.perf_counter()
        for i in range(0, len(rows), batch):
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(RAW_INSERT, rows[i : i + batch])
        return len(rows) / (time.perf_counter() - started)


async def bench_single(app: URL, n: int, block: int = 250) -> dict[str, float]:
    """One event per transaction, the application's path against raw autocommit INSERTs,
    timed in alternating blocks so that a checkpoint or autovacuum during the run falls on
    both alike."""
    events = [event(i, 0, "single") for i in range(n)]
    rows = raw_rows([event(i, 0, "rawsingle") for i in range(n)], 10_000_000)
    writer = EventWriter(app)
    spent = {"append": 0.0, "raw": 0.0}
    with psycopg.connect(conninfo(app), autocommit=True) as conn:
        for i in range(0, n, block):
            started = time.perf_counter()
            for e in events[i : i + block]:
                await writer.append("36.71", [e])
            spent["append"] += time.perf_counter() - started
            started = time.perf_counter()
            for row in rows[i : i + block]:
                conn.execute(RAW_INSERT, row)
            spent["raw"] += time.perf_counter() - started
    await writer.aclose()
    return {kind: n / seconds for kind, seconds in spent.items()}


async def fill(app: URL, total: int, per_stream: int = 10, batch: int = 5_000) -> float:
    """Grows the log to `total` events through the append path, in large batches."""
    engine = create_engine(app, pool_size=1)
    started = time.perf_counter()
    async with engine.connect() as conn:
        have = (
            await conn.execute(text("SELECT coalesce(max(seq), 0) FROM audit.events"))
        ).scalar_one()
    streams = (total - have) // per_stream
    pending: list[NewEvent] = []
    for s in range(streams):
        pending.extend(event(s, k, "fill") for k in range(per_stream))
        if len(pending) >= batch or s == streams - 1:
            async with engine.begin() as conn:
                await append_events(conn, "36.71", pending)
            pending = []
    await engine.dispose()
    return time.perf_counter() - started


async def bench_history(app: URL, samples: int, streams: int) -> dict[str, float]:
    engine = create_engine(app, pool_size=1)
    rng = random.Random(11)
    timings = []
    async with engine.connect() as conn:
        for _ in range(samples):
            stream = f"proposal:fill-{rng.randrange(streams):07d}"
            started = time.perf_counter()
            events = await read_stream(conn, stream)
            timings.append((time.perf_counter() - started) * 1000)
            assert len(events) == 10
    await engine.dispose()
    timings.sort()
    return {
        "p50_ms": statistics.median(timings),
        "p99_ms": timings[int(len(timings) * 0.99) - 1],
    }


async def bench_verify(app: URL) -> dict[str, float]:
    engine = create_engine(app, pool_size=1)
    async with engine.connect() as conn:
        await driver_connection(conn)
        started = time.perf_counter()
        result = await verify_log(conn, "36.71")
        elapsed = time.perf_counter() - started
    await engine.dispose()
    assert result.ok, result
    return {"events": result.checked, "seconds": elapsed, "rate": result.checked / elapsed}


async def run(owner: URL, log_size: int) -> dict[str, Any]:
    app = app_url(owner, *APP)
    raw_setup(owner)
    batched = await bench_batched(app, 20_000, 500)
    ratio = batched["append"] / batched["raw"]
    print(
        f"batched append (500/txn): {batched['append']:,.0f} ev/s; raw executemany "
        f"{batched['raw']:,.0f} rows/s; ratio {ratio:.2f} (goal >= 0.5)"
    )
    single = await bench_single(app, 4_000)
    print(
        f"one event per transaction: {single['append']:,.0f} ev/s; raw autocommit INSERT "
        f"{single['raw']:,.0f} rows/s; ratio {single['append'] / single['raw']:.2f} (goal >= 0.5)"
    )
    took = await fill(app, log_size)
    with psycopg.connect(conninfo(owner), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE audit.events")  # what autovacuum does on a live system
    print(f"log grown to {log_size:,} events in {took:.1f} s")
    history = await bench_history(app, 2_000, (log_size - 24_000) // 10)
    print(
        f"one usulan's history with {log_size:,} events in the log: p50 {history['p50_ms']:.2f} ms,"
        f" p99 {history['p99_ms']:.2f} ms (goal p99 <= 5 ms)"
    )
    verified = await bench_verify(app)
    print(
        f"verification: {verified['events']:,} events in {verified['seconds']:.1f} s ="
        f" {verified['rate']:,.0f} ev/s (goal >= 300,000)"
    )
    return {
        "batched_append_per_s": round(batched["append"]),
        "raw_executemany_per_s": round(batched["raw"]),
        "batched_ratio": round(batched["append"] / batched["raw"], 3),
        "single_append_per_s": round(single["append"]),
        "raw_single_insert_per_s": round(single["raw"]),
        "single_ratio": round(single["append"] / single["raw"], 3),
        "log_events": verified["events"],
        "history_p50_ms": round(history["p50_ms"], 3),
        "history_p99_ms": round(history["p99_ms"], 3),
        "verify_per_s": round(verified["rate"]),
    }


def bench_database(stack: contextlib.ExitStack, name: str) -> URL:
    """A fresh, migrated database `name` on MUSRENBANG_DATABASE_URL's server, else on a
    throwaway embedded PostgreSQL that `stack` stops; its owner's URL."""
    if os.environ.get("MUSRENBANG_DATABASE_URL"):
        server = make_url(os.environ["MUSRENBANG_DATABASE_URL"])
    else:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="musrenbang-bench-"))
        server = stack.enter_context(embedded_postgres(Path(tmp) / "pgdata"))
    with psycopg.connect(conninfo(server.set(database="postgres")), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    owner = ensure_database(server, name)
    migrate(owner, *APP)
    return owner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--log-size", type=int, default=1_000_000)
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        owner = bench_database(stack, "musrenbang_bench")
        figures = asyncio.run(run(owner, args.log_size))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
