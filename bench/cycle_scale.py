"""Scale benchmark: a Surabaya-size cycle (153 kelurahan, all five stages) end to end on the
Temporal dev server, once with 3,000 usulan and once with 10,000, against the embedded
PostgreSQL. Coordinators act through workflow updates, many forums at once, as they do
in the week before a deadline. Not a test: it prints figures; the last line is JSON.

    .venv/bin/python bench/cycle_scale.py [--sizes 3000 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import URL, text
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from musrenbang.domain.calendar import fixed_holidays
from musrenbang.domain.catalogue import forum_id
from musrenbang.embedded import embedded_postgres, ensure_database, start_dev_server
from musrenbang.events.db import app_url, create_engine, migrate
from musrenbang.events.verify import verify_all
from musrenbang.planning import CyclePlan, cycle_input
from musrenbang.worker import build_worker
from musrenbang.workflows.contracts import (
    ActorRef,
    BeritaAcara,
    CloseRequest,
    CycleInput,
    DecideRequest,
    DecisionRequest,
    ProposalDraft,
    SubmitRequest,
)
from musrenbang.workflows.cycle import CycleWorkflow
from musrenbang.workflows.forum import ForumWorkflow

SURABAYA = "35.78"
APP = ("musrenbang_app", "musrenbang_app")
BIDANG = [
    ("jalan", "Jalan kampung rusak"),
    ("drainase", "Saluran air tersumbat"),
    ("posyandu", "Alat posyandu kurang"),
    ("pju", "Lampu jalan padam"),
]
PARALLEL = 24
BA = BeritaAcara("2027-01-20", "Balai RW", 35, ["Ketua Forum", "Sekretaris"])


def who(unit: str) -> ActorRef:
    return ActorRef(f"koordinator.{unit}", "coordinator", unit)


async def wait_open(cycle: WorkflowHandle[Any, Any], fids: set[str]) -> None:
    while True:
        view = await cycle.query(CycleWorkflow.view)
        if fids <= set(view.open_forums) | set(view.closed_forums):
            return
        await asyncio.sleep(0.2)


async def run_stage(
    client: Client,
    cycle: WorkflowHandle[Any, Any],
    inp: CycleInput,
    stage: str,
    units: list[str],
    act: Any,
) -> None:
    fids = {forum_id(inp.cycle_id, stage, u): u for u in units}
    await wait_open(cycle, set(fids))
    view = await cycle.query(CycleWorkflow.view)
    gate = asyncio.Semaphore(PARALLEL)

    async def one(fid: str, unit: str) -> None:
        if fid not in view.open_forums:
            return  # an OPD nobody proposed to
        async with gate:
            await act(client.get_workflow_handle(f"forum-{fid}"), unit)

    await asyncio.gather(*(one(fid, unit) for fid, unit in fids.items()))


async def drive(
    client: Client, cycle: WorkflowHandle[Any, Any], inp: CycleInput, total: int
) -> None:
    kel = inp.units["kelurahan"]
    per = [total // len(kel) + (1 if i < total % len(kel) else 0) for i in range(len(kel))]

    async def kelurahan(forum: WorkflowHandle[Any, Any], unit: str) -> None:
        n = per[kel.index(unit)]
        drafts = [
            ProposalDraft(
                f"{BIDANG[i % 4][1]} RT {i % 12 + 1:03d}",
                "Perbaikan",
                50_000_000 + i,
                BIDANG[i % 4][0],
                100,
                "m",
                rt=f"{i % 12 + 1:03d}",
                rw="002",
            )
            for i in range(n)
        ]
        ids = (
            await forum.execute_update(ForumWorkflow.submit, SubmitRequest(who(unit), drafts))
        ).proposal_ids
        decisions = [
            DecisionRequest(
                p, "reject", reason="Bukan kewenangan kota", reason_code="bukan-kewenangan"
            )
            if i % 10 == 9
            else DecisionRequest(p, "accept")
            for i, p in enumerate(ids)
        ]
        await forum.execute_update(ForumWorkflow.decide, DecideRequest(who(unit), decisions))
        await forum.execute_update(ForumWorkflow.close, CloseRequest(who(unit), BA))

    def accept_all(kind: str, **extra: Any) -> Any:
        async def act(forum: WorkflowHandle[Any, Any], unit: str) -> None:
            ids = sorted((await forum.query(ForumWorkflow.view)).proposals)
            decisions = [DecisionRequest(p, kind, **extra) for p in ids]
            if decisions:
                await forum.execute_update(
                    ForumWorkflow.decide, DecideRequest(who(unit), decisions)
                )
            ba = BA if unit != inp.region or kind != "include" else None
            await forum.execute_update(
                ForumWorkflow.close,
                CloseRequest(
                    who(unit),
                    ba
                    or BeritaAcara(
                        "2027-05-20",
                        "Balai Kota",
                        60,
                        ["Wali Kota"],
                        perkada="Perwali No. 20 Tahun 2027",
                    ),
                ),
            )

        return act

    await run_stage(client, cycle, inp, "kelurahan", kel, kelurahan)
    await run_stage(client, cycle, inp, "kecamatan", inp.units["kecamatan"], accept_all("accept"))
    await run_stage(client, cycle, inp, "forum-pd", inp.opds, accept_all("accept"))
    await run_stage(client, cycle, inp, "kota", [inp.region], accept_all("accept"))
    await run_stage(client, cycle, inp, "rkpd", [inp.region], accept_all("include"))


async def one_cycle(env: WorkflowEnvironment, owner: URL, total: int, year: int) -> dict[str, Any]:
    engine = create_engine(app_url(owner, *APP), pool_size=8)
    queue = f"bench-{total}"
    plan = CyclePlan(region=SURABAYA, year=year, holidays=fixed_holidays(year - 1))
    inp = cycle_input(plan, ActorRef("admin", "admin", SURABAYA))
    async with build_worker(env.client, queue, engine):
        started = time.perf_counter()
        cycle = await env.client.start_workflow(
            CycleWorkflow.run, inp, id=f"cycle-{inp.cycle_id}", task_queue=queue
        )
        await drive(env.client, cycle, inp, total)
        result = await cycle.result()
        wall = time.perf_counter() - started
    async with engine.connect() as conn:
        events = (await conn.execute(text("SELECT count(*) FROM audit.events"))).scalar_one()
        intact = (await verify_all(conn)).ok
    await engine.dispose()
    return {
        "usulan": total,
        "seconds": round(wall, 1),
        "events": events,
        "events_per_s": round(events / wall),
        "rkpd_items": len(result.rkpd_items),
        "intact": intact,
    }


async def main(sizes: list[int]) -> None:
    with (
        tempfile.TemporaryDirectory(prefix="musrenbang-scale-") as tmp,
        embedded_postgres(Path(tmp) / "pgdata") as server,
    ):
        env = await start_dev_server(str(Path(tmp) / "temporal.db"))
        figures = []
        try:
            for n, total in enumerate(sizes):
                owner = ensure_database(server, f"scale_{total}")
                migrate(owner, *APP)
                fig = await one_cycle(env, owner, total, 2028 + n)
                print(
                    f"{total:,} usulan, 153 kelurahan, 5 stages: {fig['seconds']} s, "
                    f"{fig['events']:,} events ({fig['events_per_s']:,}/s), "
                    f"{fig['rkpd_items']:,} in the RKPD, log intact: {fig['intact']}"
                )
                figures.append(fig)
        finally:
            await env.shutdown()
    out: dict[str, Any] = {f"usulan_{f['usulan']}": f for f in figures}
    if len(figures) == 2:
        ratio = figures[1]["seconds"] / figures[0]["seconds"]
        size_ratio = figures[1]["usulan"] / figures[0]["usulan"]
        print(
            f"time ratio {figures[1]['usulan']:,}/{figures[0]['usulan']:,}: {ratio:.2f} "
            f"(linear would be {size_ratio:.2f}; goal <= 3.7)"
        )
        out["time_ratio"] = round(ratio, 2)
    print(json.dumps(out))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[3000, 10000])
    asyncio.run(main(parser.parse_args().sizes))
