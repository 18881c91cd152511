"""A region's own profile runs end to end: a stage graph none of the templates has, its
own OPDs and chairs, a pagu for one kelurahan, its reason codes and its nomenclature; and
a cycle whose history grows long continues as new and still adopts its RKPD."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from musrenbang.domain.calendar import fixed_holidays
from musrenbang.events.verify import verify_all, verify_read_models
from musrenbang.planning import CyclePlan, cycle_input
from musrenbang.worker import build_worker
from musrenbang.workflows.contracts import DecideRequest, DecisionRequest, SubmitRequest
from musrenbang.workflows.cycle import CycleWorkflow
from musrenbang.workflows.forum import ForumWorkflow
from tests.workflows.helpers import (
    ADMIN,
    REGION,
    close,
    coordinator,
    decide,
    draft,
    drive_cycle,
    forum_handle,
    small_cycle,
)
from tests.workflows.histories import save_history

ROAD = "1.03.10.2.01.0055"  # Rehabilitasi Jalan (sipd-2027)
STAGES = [
    {"slug": "rembuk-warga", "name": "Rembuk Warga", "level": "kelurahan", "chaired_by": "Lurah"},
    {
        "slug": "forum-opd",
        "name": "Forum OPD",
        "level": "opd",
        "chaired_by": "Kepala OPD",
    },
    {"slug": "penetapan", "name": "Penetapan RKPD", "level": "city", "chaired_by": "Wali Kota"},
]


def _profile(first_kelurahan: str) -> dict[str, Any]:
    return {
        "opds": [
            {
                "slug": "dinas-pu",
                "name": "Dinas Pekerjaan Umum Kota Solok",
                "bidang": ["jalan", "drainase"],
                "chair": "Kepala Dinas PU",
            },
            {"slug": "dinas-sehat", "name": "Dinas Kesehatan", "bidang": ["kesehatan"]},
        ],
        "stages": STAGES,
        "pokir_stage": "forum-opd",
        "calendar": {"rembuk-warga": "01-25", "forum-opd": "03-10", "penetapan": "05-25"},
        "pagu": {"rembuk-warga": {"units": {first_kelurahan: 100_000_000}}},
        "reason_codes": [{"code": "sudah-ada", "name": "Sudah ada programnya"}],
    }


async def _refused(handle: Any, update: Any, req: Any, says: str) -> None:
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await handle.execute_update(update, req)
    assert says in str(err.value.cause), err.value.cause


async def test_a_stage_graph_of_its_own_runs_from_rembuk_to_rkpd(
    time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, task_queue: str, cycle_year: int
) -> None:
    client = time_skipping_env.client
    probe = cycle_input(
        CyclePlan(region=REGION, year=cycle_year, holidays=fixed_holidays(cycle_year - 1))
    )
    first = probe.units["kelurahan"][0]
    plan = CyclePlan(
        region=REGION,
        year=cycle_year,
        holidays=fixed_holidays(cycle_year - 1, cycle_year),
        profile=_profile(first),
    )
    inp = cycle_input(plan, ADMIN)
    assert inp.stages == ["rembuk-warga", "forum-opd", "penetapan"]
    async with build_worker(client, task_queue, engine):
        cycle = await client.start_workflow(
            CycleWorkflow.run, inp, id=f"cycle-{inp.cycle_id}", task_queue=task_queue
        )
        rejected = ""
        for kel in inp.units["kelurahan"]:
            forum = await forum_handle(client, cycle, inp, "rembuk-warga", kel)
            lurah = coordinator(kel)
            res = await forum.execute_update(
                ForumWorkflow.submit,
                SubmitRequest(
                    lurah,
                    [
                        draft("Jalan lingkungan rusak", "jalan", 150_000_000),
                        draft("Posyandu tanpa timbangan", "kesehatan", 20_000_000),
                    ],
                ),
            )
            road, health = res.proposal_ids
            if kel == first:  # its own pagu: Rp100 juta, below the road's cost
                await _refused(
                    forum,
                    ForumWorkflow.decide,
                    DecideRequest(lurah, [DecisionRequest(road, "accept")]),
                    "pagu indikatif",
                )
                await _refused(
                    forum,
                    ForumWorkflow.decide,
                    DecideRequest(
                        lurah, [DecisionRequest(road, "reject", reason="x", reason_code="asal")]
                    ),
                    "not one of the region's",
                )
                await decide(
                    forum,
                    lurah,
                    [
                        DecisionRequest(
                            road, "reject", reason="Sudah ada programnya", reason_code="sudah-ada"
                        ),
                        DecisionRequest(health, "accept"),
                    ],
                )
                rejected = road
            else:
                await decide(
                    forum,
                    lurah,
                    [DecisionRequest(road, "accept"), DecisionRequest(health, "accept")],
                )
            await close(forum, lurah)
        for opd in ("dinas-pu", "dinas-sehat"):
            forum = await forum_handle(client, cycle, inp, "forum-opd", opd)
            held = sorted((await forum.query(ForumWorkflow.view)).proposals)
            chair = coordinator(opd)
            await _refused(
                forum,
                ForumWorkflow.decide,
                DecideRequest(
                    chair, [DecisionRequest(held[0], "assign", sub_kegiatan="1.03.10.2.01.0001")]
                ),
                "not in the region's nomenclature",
            )
            await decide(
                forum,
                chair,
                [
                    *[DecisionRequest(p, "assign", sub_kegiatan=ROAD) for p in held],
                    *[DecisionRequest(p, "accept") for p in held],
                ],
            )
            await close(forum, chair)
        final = await forum_handle(client, cycle, inp, "penetapan", inp.region)
        held = sorted((await final.query(ForumWorkflow.view)).proposals)
        bappeda = coordinator(inp.region)
        await decide(final, bappeda, [DecisionRequest(p, "include") for p in held])
        await close(final, bappeda, perkada="Perwal Solok No. 3 Tahun 2028")
        result = await cycle.result()
        await save_history(cycle, "cycle-own-graph")
        await save_history(
            client.get_workflow_handle(f"forum-{inp.cycle_id}-forum-opd-dinas-pu"),
            "forum-own-graph-opd",
        )

    kelurahan = len(inp.units["kelurahan"])
    assert len(result.rkpd_items) == 2 * kelurahan - 1 and rejected not in result.rkpd_items
    async with engine.connect() as conn:
        assert (await verify_all(conn)).ok and (await verify_read_models(conn)).ok
        opened = {
            r.unit: r.payload
            for r in await conn.execute(
                text(
                    "SELECT payload->>'unit' AS unit, payload FROM audit.events"
                    " WHERE type = 'ForumOpened' AND payload->>'stage' = 'forum-opd'"
                )
            )
        }
        assigned = (
            (
                await conn.execute(
                    text(
                        "SELECT DISTINCT payload->>'sub_kegiatan_name' FROM audit.events"
                        " WHERE type = 'ProposalAssigned'"
                    )
                )
            )
            .scalars()
            .all()
        )
        kinds = (
            await conn.execute(text("SELECT payload FROM audit.events WHERE type = 'CycleOpened'"))
        ).scalar_one()
    assert opened["dinas-pu"]["chaired_by"] == "Kepala Dinas PU"
    assert opened["dinas-pu"]["unit_name"] == "Dinas Pekerjaan Umum Kota Solok"
    assert opened["dinas-sehat"]["chaired_by"] == "Kepala OPD"  # the stage's own chair
    assert assigned == ["Rehabilitasi Jalan"]
    assert kinds["profile"]["source"] == "request"
    assert [s["slug"] for s in kinds["stage_defs"]] == inp.stages
    assert kinds["names"][first] == inp.names[first]


async def test_a_long_cycle_continues_as_new_and_still_adopts(
    time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, task_queue: str, cycle_year: int
) -> None:
    client = time_skipping_env.client
    inp = dataclasses.replace(small_cycle(cycle_year), continue_after=50)
    async with build_worker(client, task_queue, engine):
        started = await client.start_workflow(
            CycleWorkflow.run, inp, id=f"cycle-{inp.cycle_id}", task_queue=task_queue
        )
        cycle = client.get_workflow_handle_for(CycleWorkflow.run, started.id)  # the latest run
        seen = await drive_cycle(client, cycle, inp)
        result = await cycle.result()
        first = client.get_workflow_handle(started.id, run_id=started.first_execution_run_id)
        assert (await first.describe()).status == WorkflowExecutionStatus.CONTINUED_AS_NEW
        # Walk back from the run that adopted: each run names the one it continued.
        latest = client.get_workflow_handle(started.id)
        run_ids = [(await latest.describe()).run_id]
        while True:
            events = (
                await client.get_workflow_handle(started.id, run_id=run_ids[-1]).fetch_history()
            ).events
            before = events[0].workflow_execution_started_event_attributes
            if not before.continued_execution_run_id:
                break
            run_ids.append(before.continued_execution_run_id)
        await save_history(first, "cycle-continued-first-run")
        await save_history(latest, "cycle-continued-last-run")
    assert run_ids[-1] == started.first_execution_run_id and len(run_ids) >= 3
    assert set(seen["pokir"]) <= set(result.rkpd_items)
    assert not set(seen["rejected"] + seen["not_accommodated"]) & set(result.rkpd_items)
    async with engine.connect() as conn:
        assert (await verify_all(conn)).ok
        counts = dict(
            (
                await conn.execute(
                    text(
                        "SELECT type, count(*) FROM audit.events WHERE stream LIKE 'cycle:%'"
                        " GROUP BY type"
                    )
                )
            ).all()
        )
    # each run went on where the last one stopped: nothing recorded twice
    assert counts["CycleOpened"] == 1 and counts["RkpdAdopted"] == 1
    assert counts["StageOpened"] == len(inp.stages)
