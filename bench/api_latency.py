"""API benchmark on the embedded stack (PostgreSQL wheel, Temporal dev server, worker and
uvicorn in this process): a decision request until its event is durable and the answer
returned, p50 and p99 over 1,000 requests; then the history endpoint with the log grown to
1,000,000 events. Not a test: it prints figures; the last line is one JSON object.

    .venv/bin/python bench/api_latency.py [--requests 1000] [--log-size 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from bench.event_log import fill
from musrenbang.api.app import create_app
from musrenbang.api.auth import issue_token
from musrenbang.config import Settings
from musrenbang.embedded import embedded_postgres, ensure_database, start_dev_server
from musrenbang.events.db import app_url, create_engine, migrate
from musrenbang.logging import configure_logging
from musrenbang.worker import build_worker

REGION = "36.71"
PORT = 8765


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


async def timed(http: httpx.AsyncClient, method: str, path: str, **kw: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    res = await http.request(method, path, **kw)
    elapsed = (time.perf_counter() - started) * 1000
    if res.status_code >= 400:
        raise RuntimeError(f"{method} {path}: {res.status_code} {res.text}")
    return elapsed, res.json()


async def scenario(settings: Settings, requests: int) -> tuple[list[float], list[str], str]:
    base = f"http://127.0.0.1:{PORT}/api/v1"
    admin = {"Authorization": f"Bearer {issue_token(settings, 'admin', 'admin', REGION)}"}
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        _, cycle = await timed(
            http, "POST", "/cycles", headers=admin, json={"region": REGION, "year": 2028}
        )
        cid = cycle["cycle_id"]
        units = [f"36.71.01.100{i}" for i in range(1, 9)]
        ids: dict[str, list[str]] = {}
        for unit in units:
            path = f"/cycles/{cid}/forums/kelurahan/{unit}"
            while (await http.get(path, headers=admin)).status_code != 200:
                await asyncio.sleep(0.2)
            drafts = [
                {
                    "masalah": f"Jalan rusak RT {i:03d}",
                    "gagasan": "Perbaikan",
                    "cost": 10_000_000,
                    "bidang": "jalan",
                    "volume": 10,
                    "satuan": "m",
                }
                for i in range(1, 41)
            ]
            _, got = await timed(
                http, "POST", f"{path}/proposals", headers=admin, json={"proposals": drafts}
            )
            ids[unit] = got["proposal_ids"]
        latencies = []
        rng = random.Random(5)
        for n in range(requests):
            unit = units[n % len(units)]
            lurah = {
                "Authorization": f"Bearer {issue_token(settings, 'lurah', 'coordinator', unit)}"
            }
            decision = {
                "proposal_id": rng.choice(ids[unit]),
                "kind": "prioritize",
                "rank": n % 40 + 1,
                "scores": {"spm": n % 5},
            }
            ms, _ = await timed(
                http,
                "POST",
                f"/cycles/{cid}/forums/kelurahan/{unit}/decisions",
                headers=lurah,
                json={"decisions": [decision]},
            )
            latencies.append(ms)
        return latencies, [p for v in ids.values() for p in v], cid


async def history(settings: Settings, pids: list[str], samples: int) -> list[float]:
    base = f"http://127.0.0.1:{PORT}/api/v1"
    auditor = {"Authorization": f"Bearer {issue_token(settings, 'bpk', 'auditor')}"}
    rng = random.Random(9)
    out = []
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        for _ in range(samples):
            ms, _ = await timed(
                http, "GET", f"/proposals/{rng.choice(pids)}/history", headers=auditor
            )
            out.append(ms)
    return out


async def main(requests: int, log_size: int) -> None:
    configure_logging("console", "WARNING")
    with (
        tempfile.TemporaryDirectory(prefix="musrenbang-apibench-") as tmp,
        embedded_postgres(Path(tmp) / "pgdata") as server,
    ):
        owner = ensure_database(server, "musrenbang")
        migrate(owner, "musrenbang_app", "musrenbang_app")
        env = await start_dev_server(str(Path(tmp) / "temporal.db"))
        settings = Settings(temporal_task_queue="apibench", api_port=PORT, log_level="WARNING")
        engine = create_engine(app_url(owner, "musrenbang_app", "musrenbang_app"))
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(settings, engine, env.client),
                host="127.0.0.1",
                port=PORT,
                log_config=None,
                log_level="warning",
            )
        )
        serving = asyncio.create_task(server.serve())
        try:
            async with build_worker(env.client, settings.temporal_task_queue, engine):
                while not server.started:
                    await asyncio.sleep(0.05)
                decide, pids, _ = await scenario(settings, requests)
                p50, p99 = statistics.median(decide), pct(decide, 0.99)
                print(
                    f"decision request until durable, {len(decide)} requests: p50 {p50:.1f} ms,"
                    f" p99 {p99:.1f} ms (goal p50 <= 50 ms)"
                )
                small = await history(settings, pids, 500)
                await fill(app_url(owner, "musrenbang_app", "musrenbang_app"), log_size)
                big = await history(settings, pids, 1000)
                print(
                    f"history endpoint, {log_size:,} events in the log: p50"
                    f" {statistics.median(big):.1f} ms, p99 {pct(big, 0.99):.1f} ms"
                    f" (goal p99 <= 20 ms); with a small log p99 {pct(small, 0.99):.1f} ms"
                )
        finally:
            server.should_exit = True
            await serving
            await engine.dispose()
            await env.shutdown()
    print(
        json.dumps(
            {
                "decision_p50_ms": round(statistics.median(decide), 2),
                "decision_p99_ms": round(pct(decide, 0.99), 2),
                "decision_requests": len(decide),
                "history_log_events": log_size,
                "history_p50_ms": round(statistics.median(big), 2),
                "history_p99_ms": round(pct(big, 0.99), 2),
            }
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--log-size", type=int, default=1_000_000)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.log_size))
