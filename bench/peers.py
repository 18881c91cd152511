"""musrenbang's event log beside pyeventsourcing's `PostgresApplicationRecorder`, the
best-known Python event store, on one PostgreSQL server in one run. Not a test: it prints
each pair of figures and its ratio, and its last line is one JSON object with them all.

    make peers        # or: .tools/bin/uv run --frozen --group bench python -m bench.peers

The recorder serializes its inserts with `LOCK TABLE ... IN EXCLUSIVE MODE` so that its
notification ids are gapless and in commit order, and stores opaque bytes; musrenbang
serializes appends on the log's head row and in the same transaction chains each event
(SHA-256), checks its idempotency key and stream version and projects the read models.
Both sides get the same events: the recorder stores, as its `state`, the very canonical
JSON text musrenbang stores, built before the clock starts (musrenbang builds and hashes
its own inside the timed path). The cases run in alternating blocks, so that a checkpoint
or autovacuum falls on both alike, with `--prefill` events already in each table, and each
side is then checked gapless and duplicate-free. A ratio above 1 means musrenbang is better.
The prebuilt inputs are kept out of the garbage collector's sight while a case is timed
(`inputs_frozen`): a full collection would scan them on one side's clock or the other's.

Uses MUSRENBANG_DATABASE_URL when set, else a throwaway embedded PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import multiprocessing
import statistics
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from eventsourcing.persistence import StoredEvent as PeerEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from sqlalchemy import URL

from bench.event_log import APP, bench_database
from musrenbang.events.append import EventWriter, append_events
from musrenbang.events.db import app_url, conninfo, create_engine
from musrenbang.events.model import NewEvent
from musrenbang.events.store import read_stream

LOG = "36.71"
SCHEMA = "peer"
T0 = datetime(2027, 1, 4, 1, 0, tzinfo=UTC)
ACTOR = {"subject": "lurah.sukasari", "role": "chair", "jurisdiction": "36.71.01.1001"}
DECISIONS = ["ProposalAccepted", "ProposalPrioritized", "ProposalForwarded", "ProposalRevised"]
HISTORY = 20  # events in one usulan's history
WORKERS = 8


def event(tag: str, stream_no: int, n: int) -> NewEvent:
    """The n-th event of an usulan: its submission, then decisions (about 600 bytes)."""
    pid = f"{tag}-{stream_no:07d}"
    payload: dict[str, Any] = (
        {
            "proposal_id": pid,
            "cycle_id": "36.71-2027",
            "stage": "kelurahan",
            "unit": "36.71.01.1001",
            "details": {"masalah": "Drainase tersumbat RT 004/RW 007", "cost": 75_000_000},
        }
        if n == 0
        else {
            "stage": "kelurahan",
            "unit": "36.71.01.1001",
            "rank": n,
            "scores": {"urgensi": 4, "manfaat": 5},
            "changes": {"volume": 100 + n},
            "to_stage": "kecamatan",
            "to_unit": "36.71.01",
            "reason": "Prioritas wilayah",
        }
    )
    return NewEvent(
        stream=f"proposal:{pid}",
        type="ProposalSubmitted" if n == 0 else DECISIONS[n % len(DECISIONS)],
        payload=payload,
        actor=ACTOR,
        occurred_at=T0 + timedelta(seconds=stream_no, milliseconds=n),
        idempotency_key=f"{tag}:{stream_no}:{n}",
        metadata={"cycle_id": "36.71-2027"},
    )


def peer_event(e: NewEvent) -> PeerEvent:
    return PeerEvent(
        originator_id=e.stream,
        originator_version=1 + int(e.idempotency_key.rsplit(":", 1)[1]),
        topic=e.type,
        state=e.content(LOG).encode(),
    )


def new_streams(tag: str, count: int, per_stream: int = 1) -> list[NewEvent]:
    return [event(tag, s, n) for s in range(count) for n in range(per_stream)]


# --- the peer -------------------------------------------------------------------------------


def recorder(owner: URL, pool_size: int = 1) -> PostgresApplicationRecorder:
    datastore = PostgresDatastore(
        dbname=str(owner.database),
        host=str(owner.host or owner.query.get("host")),  # a socket directory, when embedded
        port=owner.port or 5432,
        user=str(owner.username),
        password=str(owner.password or ""),
        pool_size=pool_size,
        schema=SCHEMA,
        originator_id_type="text",
    )
    return PostgresApplicationRecorder(datastore)


def peer_setup(owner: URL) -> None:
    with psycopg.connect(conninfo(owner), autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        conn.execute(f"CREATE SCHEMA {SCHEMA}")
    peer = recorder(owner)
    peer.create_table()
    peer.datastore.close()


# --- timing ---------------------------------------------------------------------------------


def blocks(events: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(events), size):
        yield events[i : i + size]


@contextlib.contextmanager
def inputs_frozen() -> Iterator[None]:
    """The prebuilt inputs of a case (tens of thousands of events a side, built before the
    clock) kept out of the garbage collector's sight while its blocks are timed. A full
    collection scans every object it tracks, about 0.1 s with those inputs, and would land
    on whichever side's block happened to be running then, shifting a ratio by some 10%.
    What either side allocates while timed is collected as usual."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


class Clock:
    """Seconds spent by each side, summed over the blocks."""

    def __init__(self) -> None:
        self.spent = {"musrenbang": 0.0, "recorder": 0.0}

    @contextlib.contextmanager
    def timing(self, side: str) -> Iterator[None]:
        started = time.perf_counter()
        yield
        self.spent[side] += time.perf_counter() - started

    def rates(self, n: int) -> dict[str, float]:
        return {side: n / seconds for side, seconds in self.spent.items()}


async def case_transactions(owner: URL, tag: str, n: int, per_txn: int) -> dict[str, float]:
    """`n` events, `per_txn` to a transaction (ten events to an usulan when batched)."""
    per_stream = 10 if per_txn >= 10 else 1
    ours = new_streams(f"{tag}-m", n // per_stream, per_stream)
    theirs = [peer_event(e) for e in new_streams(f"{tag}-r", n // per_stream, per_stream)]
    writer = EventWriter(app_url(owner, *APP))
    peer = recorder(owner)
    clock = Clock()
    block = max(per_txn, 2_000 // per_txn * per_txn)
    with inputs_frozen():
        for mine, peers in zip(blocks(ours, block), blocks(theirs, block), strict=True):
            with clock.timing("musrenbang"):
                for batch in blocks(mine, per_txn):
                    await writer.append(LOG, batch)
            with clock.timing("recorder"):
                for peer_batch in blocks(peers, per_txn):
                    peer.insert_events(peer_batch)
    await writer.aclose()
    peer.datastore.close()
    return clock.rates(n)


async def case_tasks(owner: URL, tag: str, n: int) -> dict[str, float]:
    """`WORKERS` writers at once, one event a transaction: asyncio tasks sharing the
    application's writer, against threads sharing a recorder with a pool of `WORKERS`."""
    ours = new_streams(f"{tag}-m", n)
    theirs = [peer_event(e) for e in new_streams(f"{tag}-r", n)]
    writer = EventWriter(app_url(owner, *APP))
    peer = recorder(owner, pool_size=WORKERS)
    peer.insert_events([peer_event(event(f"{tag}-rwarm", 0, 0))])
    await writer.append(LOG, [event(f"{tag}-mwarm", 0, 0)])
    clock = Clock()
    with inputs_frozen():
        for mine, peers in zip(blocks(ours, 2_000), blocks(theirs, 2_000), strict=True):

            async def task(share: Sequence[NewEvent]) -> None:
                for e in share:
                    await writer.append(LOG, [e])

            with clock.timing("musrenbang"):
                await asyncio.gather(*(task(mine[k::WORKERS]) for k in range(WORKERS)))

            def thread(share: Sequence[PeerEvent]) -> None:
                for e in share:
                    peer.insert_events([e])

            threads = [
                threading.Thread(target=thread, args=(peers[k::WORKERS],)) for k in range(WORKERS)
            ]
            with clock.timing("recorder"):
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
    await writer.aclose()
    peer.datastore.close()
    return clock.rates(n)


def _process(side: str, owner: URL, tag: str, start: int, n: int, barrier: Any, spans: Any) -> None:
    """One writer process: `n` events of its own, one a transaction, after the barrier;
    it reports when it started and ended writing (a clock all processes share)."""
    if side == "musrenbang":

        async def write() -> None:
            writer = EventWriter(app_url(owner, *APP))
            mine = [event(tag, start + s, 0) for s in range(n)]
            await writer.append(LOG, [event(f"{tag}-warm", start, 0)])
            with inputs_frozen():
                barrier.wait()
                began = time.monotonic()
                for e in mine:
                    await writer.append(LOG, [e])
                spans.put((began, time.monotonic()))
            await writer.aclose()

        asyncio.run(write())
    else:
        peer = recorder(owner)
        theirs = [peer_event(event(tag, start + s, 0)) for s in range(n)]
        peer.insert_events([peer_event(event(f"{tag}-warm", start, 0))])
        with inputs_frozen():
            barrier.wait()
            began = time.monotonic()
            for e in theirs:
                peer.insert_events([e])
            spans.put((began, time.monotonic()))
        peer.datastore.close()


def case_processes(owner: URL, tag: str, n: int, rounds: int = 4) -> dict[str, float]:
    """`WORKERS` writer processes on each side, one event a transaction, in alternating
    rounds; a round is timed from the first writer's start to the last one's end."""
    context = multiprocessing.get_context("spawn")
    clock = Clock()
    share = n // rounds // WORKERS
    for r in range(rounds):
        for side in ("musrenbang", "recorder"):
            barrier = context.Barrier(WORKERS)
            spans = context.Queue()
            processes = [
                context.Process(
                    target=_process,
                    args=(
                        side,
                        owner,
                        f"{tag}-{side[0]}",
                        (r * WORKERS + k) * share,
                        share,
                        barrier,
                        spans,
                    ),
                )
                for k in range(WORKERS)
            ]
            for p in processes:
                p.start()
            ends = [spans.get(timeout=600) for _ in processes]
            for p in processes:
                p.join()
            clock.spent[side] += max(e for _, e in ends) - min(b for b, _ in ends)
            assert all(p.exitcode == 0 for p in processes), f"a {side} writer failed"
    return clock.rates(share * WORKERS * rounds)


async def prefill(owner: URL, total: int) -> None:
    """`total` events in each table, in usulan of `HISTORY` events."""
    streams = total // HISTORY
    engine = create_engine(app_url(owner, *APP), pool_size=1)
    peer = recorder(owner)
    for first in range(0, streams, 25):
        chunk = [
            event("fill", s, k)
            for s in range(first, min(first + 25, streams))
            for k in range(HISTORY)
        ]
        async with engine.begin() as conn:
            await append_events(conn, LOG, chunk)
        peer.insert_events([peer_event(e) for e in chunk])
    await engine.dispose()
    peer.datastore.close()
    with psycopg.connect(conninfo(owner), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE audit.events")
        conn.execute(f"VACUUM ANALYZE {SCHEMA}.stored_events")


async def case_history(
    owner: URL, streams: int, samples: int = 4_000
) -> dict[str, dict[str, float]]:
    """One usulan's whole history, each side through its own read."""
    engine = create_engine(app_url(owner, *APP), pool_size=1)
    peer = recorder(owner)
    order = [f"proposal:fill-{(i * 7919) % streams:07d}" for i in range(samples)]
    timings: dict[str, list[float]] = {"musrenbang": [], "recorder": []}
    async with engine.connect() as conn:
        for chunk in blocks(order, 200):
            for stream in chunk:
                started = time.perf_counter()
                events = await read_stream(conn, stream)
                timings["musrenbang"].append((time.perf_counter() - started) * 1000)
                assert len(events) == HISTORY
            for stream in chunk:
                started = time.perf_counter()
                stored = peer.select_events(stream)
                timings["recorder"].append((time.perf_counter() - started) * 1000)
                assert len(stored) == HISTORY
    await engine.dispose()
    peer.datastore.close()
    return {
        side: {"p50_ms": statistics.median(t), "p99_ms": sorted(t)[int(len(t) * 0.99) - 1]}
        for side, t in timings.items()
    }


# --- checks ---------------------------------------------------------------------------------


def check(owner: URL) -> dict[str, dict[str, int]]:
    """Both sides: every id and every stream position once (duplicates), no id missing
    between the first and the last (gaps), and as many rows on each (each was given the
    same events)."""
    found = {}
    with psycopg.connect(conninfo(owner)) as conn:
        for side, sql in (
            (
                "musrenbang",
                "SELECT count(*), count(DISTINCT seq), min(seq), max(seq),"
                " count(DISTINCT stream || ':' || version) FROM audit.events WHERE log_id = %s",
            ),
            (
                "recorder",
                f"SELECT count(*), count(DISTINCT notification_id), min(notification_id),"
                f" max(notification_id), count(DISTINCT originator_id || ':' || originator_version)"
                f" FROM {SCHEMA}.stored_events WHERE %s::text IS NOT NULL",
            ),
        ):
            rows, ids, low, high, positions = conn.execute(sql, (LOG,)).fetchone()  # type: ignore[misc]
            found[side] = {
                "rows": rows,
                "duplicates": (rows - ids) + (rows - positions),
                "gaps": (high - low + 1) - ids,
            }
    assert found["musrenbang"]["rows"] == found["recorder"]["rows"], found
    assert found["musrenbang"]["duplicates"] == found["musrenbang"]["gaps"] == 0, found
    return found


def ratio(ours: float, theirs: float) -> float:
    return round(ours / theirs, 3)


async def run(owner: URL, args: argparse.Namespace) -> dict[str, Any]:
    peer_setup(owner)
    await prefill(owner, args.prefill)
    print(f"{args.prefill:,} events in each table before the cases")
    figures: dict[str, Any] = {"prefill_events": args.prefill}

    def pair(name: str, label: str, rates: dict[str, float], goal: float) -> None:
        r = ratio(rates["musrenbang"], rates["recorder"])
        figures[f"{name}_per_s"] = {side: round(v) for side, v in rates.items()}
        figures[f"{name}_ratio"] = r
        print(
            f"{label}: musrenbang {rates['musrenbang']:,.0f} ev/s, recorder"
            f" {rates['recorder']:,.0f} ev/s; ratio {r:.2f} (goal >= {goal})"
        )

    pair(
        "single",
        "one event per transaction",
        await case_transactions(owner, "single", args.events, 1),
        1.0,
    )
    pair(
        "batch",
        "100 events per transaction",
        await case_transactions(owner, "batch", args.events * 5, 100),
        1.0,
    )
    pair(
        "concurrent",
        f"{WORKERS} concurrent writers (tasks / threads)",
        await case_tasks(owner, "tasks", args.events),
        1.4,
    )
    pair(
        "processes",
        f"{WORKERS} writer processes each side",
        case_processes(owner, "procs", args.events),
        1.0,
    )
    history = await case_history(owner, args.prefill // HISTORY)
    figures["history_ms"] = history
    figures["history_p50_ratio"] = ratio(
        history["recorder"]["p50_ms"], history["musrenbang"]["p50_ms"]
    )
    figures["history_p99_ratio"] = ratio(
        history["recorder"]["p99_ms"], history["musrenbang"]["p99_ms"]
    )
    print(
        f"one usulan's history ({HISTORY} events), p50 / p99: musrenbang"
        f" {history['musrenbang']['p50_ms']:.3f} / {history['musrenbang']['p99_ms']:.3f} ms,"
        f" recorder {history['recorder']['p50_ms']:.3f} / {history['recorder']['p99_ms']:.3f} ms;"
        f" p50 ratio {figures['history_p50_ratio']:.2f} (goal >= 1.0)"
    )
    checked = check(owner)
    figures["checks"] = checked
    for side, c in checked.items():
        print(f"{side}: {c['rows']:,} rows, {c['duplicates']} duplicates, {c['gaps']} gaps")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prefill", type=int, default=200_000)
    parser.add_argument("--events", type=int, default=4_000, help="events a side in a case")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        owner = bench_database(stack, "musrenbang_peers")
        figures = asyncio.run(run(owner, args))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
