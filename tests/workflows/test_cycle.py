"""Whole cycles on the time-skipping server: weeks of deadlines in seconds."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import WorkflowEnvironment

from musrenbang.events.verify import verify_all
from musrenbang.worker import build_worker
from musrenbang.workflows.contracts import SubmitRequest
from musrenbang.workflows.cycle import CycleWorkflow
from musrenbang.workflows.forum import ForumWorkflow
from tests.workflows.helpers import (
    coordinator,
    draft,
    drive_cycle,
    first_events,
    forum_handle,
    small_cycle,
)
from tests.workflows.histories import save_histories


async def test_full_cycle_ends_in_an_adopted_rkpd_that_traces_back(
    time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, task_queue: str, cycle_year: int
) -> None:
    client = time_skipping_env.client
    inp = small_cycle(cycle_year)
    async with build_worker(client, task_queue, engine):
        cycle = await client.start_workflow(
            CycleWorkflow.run, inp, id=f"cycle-{inp.cycle_id}", task_queue=task_queue
        )
        seen = await drive_cycle(client, cycle, inp)
        result = await cycle.result()
        await save_histories(client, cycle, inp)

    assert result.perkada == "Perwal Solok No. 12 Tahun 2027"
    assert len(result.rkpd_items) > 5
    assert set(seen["pokir"]) <= set(result.rkpd_items)
    assert not set(seen["rejected"]) & set(result.rkpd_items)
    origins = await first_events(engine, result.rkpd_items)
    assert set(origins) == set(result.rkpd_items)
    for pid, (etype, stage) in origins.items():
        assert (etype, stage) in {
            ("ProposalSubmitted", "kelurahan"),
            ("PokirSubmitted", "forum-pd"),
        }, pid

    async with engine.connect() as conn:
        assert (await verify_all(conn)).ok
        path = (
            await conn.execute(
                text(
                    "SELECT type, payload->>'to_stage' AS to_stage FROM audit.events "
                    "WHERE stream = :s ORDER BY version"
                ),
                {"s": f"proposal:{result.rkpd_items[0]}"},
            )
        ).all()
        adopted = (
            await conn.execute(text("SELECT payload FROM audit.events WHERE type = 'RkpdAdopted'"))
        ).scalar_one()
        reasons = (
            await conn.execute(
                text(
                    "SELECT count(*) FROM audit.events WHERE type IN "
                    "('ProposalRejected','ProposalDeferred','ProposalNotAccommodated') "
                    "AND coalesce(payload->>'reason', '') = ''"
                )
            )
        ).scalar_one()
        merged = (
            await conn.execute(
                text("SELECT count(*) FROM audit.events WHERE type = 'ProposalMerged'")
            )
        ).scalar_one()
    assert adopted["items"] == result.rkpd_items and adopted["total_cost"] == result.total_cost
    assert reasons == 0, "every 'no' carries a reason"
    assert merged == 2 * len(inp.units["kelurahan"]), "lineage recorded on both usulan"
    forwards = [row.to_stage for row in path if row.type == "ProposalForwarded"]
    assert forwards in (["kecamatan", "forum-pd", "kota", "rkpd"], ["kota", "rkpd"])


async def test_without_coordinators_the_system_carries_the_cycle_to_the_end(
    time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, task_queue: str, cycle_year: int
) -> None:
    client = time_skipping_env.client
    inp = small_cycle(cycle_year, auto_close_policy="forward")
    async with build_worker(client, task_queue, engine):
        cycle = await client.start_workflow(
            CycleWorkflow.run, inp, id=f"cycle-{inp.cycle_id}", task_queue=task_queue
        )
        first = inp.units["kelurahan"][0]
        forum = await forum_handle(client, cycle, inp, "kelurahan", first)
        submitted = await forum.execute_update(
            ForumWorkflow.submit,
            SubmitRequest(coordinator(first), [draft("Jalan rusak", "jalan", 100_000_000)]),
        )
        result = await cycle.result()  # nobody acts again: time skips through every deadline

    assert result.rkpd_items == submitted.proposal_ids and result.perkada is None
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT type, actor->>'role' AS role, count(*) AS n FROM audit.events "
                    "WHERE type IN ('DeadlineReminderSent', 'DeadlineMissed', 'EscalationRaised', "
                    "'ForumAutoClosed', 'RkpdAdopted') GROUP BY 1, 2"
                )
            )
        ).all()
        opened = (
            await conn.execute(text("SELECT count(*) FROM audit.events WHERE type = 'ForumOpened'"))
        ).scalar_one()
        assert (await verify_all(conn)).ok
    counts = {(r.type, r.role): r.n for r in rows}
    assert {role for _, role in counts} == {"system"}
    assert counts[("ForumAutoClosed", "system")] == opened
    assert counts[("DeadlineMissed", "system")] == counts[("EscalationRaised", "system")] == opened
    assert counts[("DeadlineReminderSent", "system")] == 2 * opened
    assert counts[("RkpdAdopted", "system")] == 1


@pytest.mark.parametrize("template", ["tanpa-kelurahan", "sipd"])
async def test_other_stage_templates_run_to_an_adopted_rkpd(
    time_skipping_env: WorkflowEnvironment,
    engine: AsyncEngine,
    task_queue: str,
    cycle_year: int,
    template: str,
) -> None:
    client = time_skipping_env.client
    inp = small_cycle(cycle_year, template=template, auto_close_policy="forward")
    first_stage = inp.stages[0]
    unit = inp.units["kecamatan" if first_stage == "kecamatan" else "kelurahan"][0]
    async with build_worker(client, task_queue, engine):
        cycle = await client.start_workflow(
            CycleWorkflow.run, inp, id=f"cycle-{inp.cycle_id}", task_queue=task_queue
        )
        forum = await forum_handle(client, cycle, inp, first_stage, unit)
        # At a kecamatan intake (tanpa-kelurahan) the usulan names its kelurahan.
        within = [k for k in inp.units["kelurahan"] if k.startswith(f"{unit}.")]
        origin = {"kelurahan": within[0]} if first_stage == "kecamatan" else {}
        submitted = await forum.execute_update(
            ForumWorkflow.submit,
            SubmitRequest(
                coordinator(unit), [draft("Drainase tersumbat", "drainase", 80_000_000, **origin)]
            ),
        )
        result = await cycle.result()
    assert result.rkpd_items == submitted.proposal_ids
    async with engine.connect() as conn:
        stages = (
            (
                await conn.execute(
                    text(
                        "SELECT payload->>'to_stage' FROM audit.events"
                        " WHERE type = 'ProposalForwarded' "
                        "AND stream = :s ORDER BY version"
                    ),
                    {"s": f"proposal:{result.rkpd_items[0]}"},
                )
            )
            .scalars()
            .all()
        )
    assert [first_stage, *stages] == inp.stages
