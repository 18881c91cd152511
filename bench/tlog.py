"""Transparency-log benchmark: the append path with the Merkle tree maintained, proofs and
checkpoints at a million leaves, and a witness catching up. Not a test: it prints
figures, and its last line is one JSON object with them all.

    .venv/bin/python -m bench.tlog [--leaves 1000000]

Goals (issue 13): batched and single append ratios, with the tree integrated, at least
0.5 of raw inserts; inclusion and consistency proofs at 1,000,000 leaves p99 <= 5 ms; a
checkpoint signed in <= 50 ms; `audit watch` catching up >= 200,000 leaves/s.

The million-leaf log is written by COPY as the owner (chained by the documented rule, so
its hashes are real leaves); the append-path figures use the application's writer.
Uses MUSRENBANG_DATABASE_URL when set, else a throwaway embedded PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
from sqlalchemy import URL

from bench.event_log import (
    APP,
    RAW_INSERT,
    bench_database,
    event,
    raw_batched_rate,
    raw_rows,
    raw_setup,
)
from musrenbang.api.app import create_app
from musrenbang.api.auth import issue_token
from musrenbang.config import Settings
from musrenbang.events import tlog, tree
from musrenbang.events.append import EventWriter, append_events
from musrenbang.events.canonical import LEAF_PREFIX, record_bytes
from musrenbang.events.checkpoints import sign_head
from musrenbang.events.db import app_url, conninfo, create_engine
from musrenbang.logging import configure_logging
from musrenbang.witness import Api, run_watch

BIG = "99.99"
RECORDED = datetime(2027, 1, 4, 1, 0, tzinfo=UTC)


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


async def bench_append_with_tree(app: URL, n: int, batch: int) -> dict[str, float]:
    """Appends, then integrates the tree over them; the rate counts both."""
    writer = EventWriter(app)
    async with await psycopg.AsyncConnection.connect(conninfo(app), autocommit=True) as conn:
        events = [event(i, 0, "tbatch") for i in range(n)]
        started = time.perf_counter()
        for i in range(0, n, batch):
            await writer.append("36.71", events[i : i + batch])
        await tree.integrate(conn, "36.71")
        batched = n / (time.perf_counter() - started)
        singles = [event(i, 0, "tsingle") for i in range(n // 4)]
        spent = {"append": 0.0, "raw": 0.0}
        rows = raw_rows([event(i, 0, "rawt") for i in range(n // 4)], 20_000_000)
        for i in range(0, len(singles), 250):  # alternating blocks, as bench.event_log
            started = time.perf_counter()
            for e in singles[i : i + 250]:
                await writer.append("36.71", [e])
            await tree.integrate(conn, "36.71")
            spent["append"] += time.perf_counter() - started
            started = time.perf_counter()
            for row in rows[i : i + 250]:
                await conn.execute(RAW_INSERT, row)
            spent["raw"] += time.perf_counter() - started
    await writer.aclose()
    raw = raw_rows([event(i, 0, "rawtb") for i in range(n)], 30_000_000)
    raw_batched = raw_batched_rate(app, raw, batch)
    single = len(singles) / spent["append"]
    raw_single = len(singles) / spent["raw"]
    return {
        "batched": batched,
        "raw_batched": raw_batched,
        "batched_ratio": batched / raw_batched,
        "single": single,
        "raw_single": raw_single,
        "single_ratio": single / raw_single,
    }


def build_big_log(owner: URL, leaves: int) -> float:
    """A log of `leaves` events, chained by the documented rule, written by COPY."""
    stamp = "2027-01-04T01:00:00.000000Z"
    started = time.perf_counter()
    prev = bytes(32)
    with psycopg.connect(conninfo(owner)) as conn, conn.cursor() as cur:
        conn.execute("INSERT INTO audit.logs (log_id) VALUES (%s)", (BIG,))
        with cur.copy(
            "COPY audit.events (log_id, seq, content, version, recorded_at, occurred_at,"
            " prev_hash, hash) FROM STDIN"
        ) as copy:
            for seq in range(1, leaves + 1):
                content = (
                    '{"actor":{"role":"system","system":true},"event_id":"e'
                    f'{seq}","idempotency_key":"big:{seq}","metadata":{{}},"occurred_at":"'
                    f'{stamp}","payload":{{"n":{seq}}},"schema_version":1,"stream":"big:{seq}",'
                    '"type":"BenchEvent"}'
                )
                record = record_bytes(content, RECORDED, 1)
                digest = hashlib.sha256(
                    LEAF_PREFIX + prev + seq.to_bytes(8, "big") + record
                ).digest()
                copy.write_row((BIG, seq, content, 1, RECORDED, RECORDED, prev, digest))
                prev = digest
        conn.execute(
            "UPDATE audit.logs SET head_seq = %s, head_hash = %s WHERE log_id = %s",
            (leaves, prev, BIG),
        )
    return time.perf_counter() - started


async def bench_proofs(app: URL, leaves: int, samples: int = 2_000) -> dict[str, Any]:
    async with await psycopg.AsyncConnection.connect(conninfo(app), autocommit=True) as conn:
        started = time.perf_counter()
        await tree.integrate(conn, BIG)
        integrate_s = time.perf_counter() - started
        rng = random.Random(13)
        inclusion, consistency = [], []
        for _ in range(samples):
            seq = rng.randint(1, leaves)
            size = rng.randint(seq, leaves)
            t = time.perf_counter()
            await tree.inclusion_proof(conn, BIG, seq, size)
            inclusion.append((time.perf_counter() - t) * 1000)
            old = rng.randint(1, leaves)
            t = time.perf_counter()
            await tree.consistency_proof(conn, BIG, old, leaves)
            consistency.append((time.perf_counter() - t) * 1000)
        skey, vkey = tlog.generate_key("bench.musrenbang.local")
        signer = tlog.Signer.parse(skey)
        await sign_head(conn, BIG, signer)  # the first: no earlier checkpoint to extend
        signing = []
        for i in range(20):  # each after the log grew, as the schedule and closings do
            await _grow(conn, leaves + i)
            t = time.perf_counter()
            await sign_head(conn, BIG, signer)
            signing.append((time.perf_counter() - t) * 1000)
    return {
        "integrate_s": integrate_s,
        "integrate_leaves_per_s": leaves / integrate_s,
        "inclusion_p50_ms": statistics.median(inclusion),
        "inclusion_p99_ms": _p(inclusion, 0.99),
        "consistency_p50_ms": statistics.median(consistency),
        "consistency_p99_ms": _p(consistency, 0.99),
        "checkpoint_p50_ms": statistics.median(signing),
        "checkpoint_max_ms": max(signing),
        "vkey": vkey,
    }


async def _grow(conn: psycopg.AsyncConnection[Any], size: int) -> None:
    """One more event on the big log, through the append function."""
    await append_events(conn, BIG, [event(size, 0, "grow")])


async def bench_watch(app: URL, leaves: int, vkey: str) -> dict[str, float]:
    settings = Settings(jwt_secret=os.urandom(32).hex())
    engine = create_engine(app, pool_size=2)
    api_app = create_app(settings, engine=engine, temporal=None)  # type: ignore[arg-type]
    token = issue_token(settings, "inspektorat", "auditor", None, None, regions=["*"])
    api = Api("http://bench/api/v1", token, transport=httpx.ASGITransport(app=api_app))
    with tempfile.TemporaryDirectory(prefix="musrenbang-witness-") as state:
        started = time.perf_counter()
        status = await run_watch(api, Path(state), tlog.Verifier.parse(vkey), [BIG])
        elapsed = time.perf_counter() - started
    await api.close()
    await engine.dispose()
    assert status == 0, status
    return {"leaves": leaves, "seconds": elapsed, "leaves_per_s": leaves / elapsed}


async def run(owner: URL, leaves: int, appends: int) -> dict[str, Any]:
    app = app_url(owner, *APP)
    raw_setup(owner)
    appended = await bench_append_with_tree(app, appends, 500)
    print(
        f"batched append (500/txn) with the tree integrated: {appended['batched']:,.0f} ev/s;"
        f" raw executemany {appended['raw_batched']:,.0f} rows/s;"
        f" ratio {appended['batched_ratio']:.2f} (goal >= 0.5)"
    )
    print(
        f"one event per transaction with the tree integrated: {appended['single']:,.0f} ev/s;"
        f" raw INSERT {appended['raw_single']:,.0f} rows/s;"
        f" ratio {appended['single_ratio']:.2f} (goal >= 0.5)"
    )
    built = build_big_log(owner, leaves)
    print(f"a log of {leaves:,} events written by COPY in {built:.1f} s")
    proofs = await bench_proofs(app, leaves)
    print(
        f"tree integrated over {leaves:,} leaves in {proofs['integrate_s']:.1f} s"
        f" ({proofs['integrate_leaves_per_s']:,.0f} leaves/s)"
    )
    print(
        f"inclusion proof at {leaves:,}: p50 {proofs['inclusion_p50_ms']:.2f} ms,"
        f" p99 {proofs['inclusion_p99_ms']:.2f} ms (goal p99 <= 5)"
    )
    print(
        f"consistency proof to {leaves:,}: p50 {proofs['consistency_p50_ms']:.2f} ms,"
        f" p99 {proofs['consistency_p99_ms']:.2f} ms (goal p99 <= 5)"
    )
    print(
        f"checkpoint signed (integrate, root, consistency with the last, sign, store):"
        f" p50 {proofs['checkpoint_p50_ms']:.2f} ms, max {proofs['checkpoint_max_ms']:.2f} ms"
        " (goal <= 50)"
    )
    watch = await bench_watch(app, leaves, proofs["vkey"])
    print(
        f"audit watch caught up {leaves:,} leaves in {watch['seconds']:.1f} s:"
        f" {watch['leaves_per_s']:,.0f} leaves/s (goal >= 200,000)"
    )
    return {
        "batched_ratio": round(appended["batched_ratio"], 3),
        "single_ratio": round(appended["single_ratio"], 3),
        "leaves": leaves,
        "integrate_leaves_per_s": round(proofs["integrate_leaves_per_s"]),
        "inclusion_p99_ms": round(proofs["inclusion_p99_ms"], 3),
        "consistency_p99_ms": round(proofs["consistency_p99_ms"], 3),
        "checkpoint_ms": round(proofs["checkpoint_max_ms"], 2),
        "watch_leaves_per_s": round(watch["leaves_per_s"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leaves", type=int, default=1_000_000)
    parser.add_argument("--appends", type=int, default=20_000)
    args = parser.parse_args()
    configure_logging("console", "WARNING")  # not a line per request of the witness
    with contextlib.ExitStack() as stack:
        owner = bench_database(stack, "musrenbang_tlog_bench")
        figures = asyncio.run(run(owner, args.leaves, args.appends))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
