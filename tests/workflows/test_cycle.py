"""Whole cycles on the time-skipping server: weeks of deadlines in seconds."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from musrenbang.events.verify import verify_all
from musrenbang.worker import build_worker
from musrenbang.workflows.contracts import CloseRequest, DecisionRequest, SubmitRequest
from musrenbang.workflows.cycle import CycleWorkflow
from musrenbang.workflows.forum import ForumWorkflow
from tests.workflows.helpers import (
    ba,
    coordinator,
    decide,
    draft,
    drive_cycle,
    first_events,
    forum_handle,
    small_cycle,
)
from tests.workflows.histories import save_histories, save_history


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
    assert len(seen["not_accommodated"]) == 1
    assert not set(seen["not_accommodated"]) & set(result.rkpd_items)
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
        dropped = (
            await conn.execute(
                text(
                    "SELECT type, payload->>'reason' AS reason FROM audit.events"
                    " WHERE stream = :s ORDER BY version DESC LIMIT 1"
                ),
                {"s": f"proposal:{seen['not_accommodated'][0]}"},
            )
        ).one()
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
    assert tuple(dropped) == ("ProposalNotAccommodated", "Pagu OPD tidak mencukupi")
    assert reasons == 0, "every 'no' carries a reason"
    assert merged == 2 * len(inp.units["kelurahan"]), "lineage recorded on both usulan"
    forwards = [row.to_stage for row in path if row.type == "ProposalForwarded"]
    assert forwards in (["kecamatan", "forum-pd", "kota", "rkpd"], ["kota", "rkpd"])


async def test_without_coordinators_the_system_carries_the_cycle_to_the_perkada_and_waits(
    time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, task_queue: str, cycle_year: int
) -> None:
    """Nobody acts after one submission: the system reminds, escalates and auto-closes
    every forum up to the Penetapan RKPD, which no timer may close. There it records the
    miss, escalates to the Sekretaris Daerah and reminds every day, until a person closes
    it with the Perkada number; only then is the RKPD adopted, naming both."""
    client = time_skipping_env.client
    inp = small_cycle(cycle_year, auto_close_policy="forward")
    city = inp.region
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
        rkpd_id = f"{inp.cycle_id}-rkpd-{city}"
        rkpd = await _final_forum(time_skipping_env, cycle, inp)
        deadline = datetime.fromisoformat((await rkpd.query(ForumWorkflow.view)).deadline)
        now = await time_skipping_env.get_current_time()
        await time_skipping_env.sleep((deadline - now).total_seconds() + 10 * 86_400)
        view = await rkpd.query(ForumWorkflow.view)
        assert view.status == "overdue" and view.escalated_to == city  # still open, 10 days on
        assert (await cycle.describe()).status == WorkflowExecutionStatus.RUNNING
        perkada = f"Perwal Solok No. 7 Tahun {cycle_year - 1}"
        bappeda = coordinator(city)
        ids = sorted(view.proposals)
        await decide(rkpd, bappeda, [DecisionRequest(p, "include") for p in ids])
        await rkpd.execute_update(ForumWorkflow.close, CloseRequest(bappeda, ba(perkada=perkada)))
        result = await cycle.result()
        await save_history(rkpd, "forum-rkpd-waited")

    assert result.rkpd_items == submitted.proposal_ids and result.perkada == perkada
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT type, actor->>'role' AS role, payload, stream FROM audit.events"
                    " WHERE type IN ('DeadlineReminderSent', 'DeadlineMissed',"
                    " 'EscalationRaised', 'ForumAutoClosed', 'ForumClosed', 'RkpdAdopted')"
                    " ORDER BY seq"
                )
            )
        ).all()
        opened = (
            await conn.execute(text("SELECT count(*) FROM audit.events WHERE type = 'ForumOpened'"))
        ).scalar_one()
        assert (await verify_all(conn)).ok
    final = f"forum:{rkpd_id}"
    counts = Counter((r.type, r.role) for r in rows if r.stream != final)
    assert counts[("ForumAutoClosed", "system")] == opened - 1  # every forum but the final
    assert counts[("DeadlineMissed", "system")] == counts[("EscalationRaised", "system")]
    at_rkpd = [(r.type, r.payload) for r in rows if r.stream == final]
    types = [t for t, _ in at_rkpd]
    assert "ForumAutoClosed" not in types and types[-1] == "ForumClosed"
    raised = next(p for t, p in at_rkpd if t == "EscalationRaised")
    assert raised["to"] == city and raised["office"] == "Sekretaris Daerah"
    overdue = [p for t, p in at_rkpd if t == "DeadlineReminderSent" and "hours_overdue" in p]
    assert [p["hours_overdue"] for p in overdue] == [24 * n for n in range(1, 11)]
    assert all("Perkada" in p["waiting_for"] for p in overdue)
    [adopted] = [r.payload for r in rows if r.type == "RkpdAdopted"]
    assert adopted["perkada"] == perkada and adopted["closed_by"] == bappeda.subject


async def _final_forum(env: WorkflowEnvironment, cycle: Any, inp: Any) -> Any:
    """Skips time a day at a time until the cycle's final forum (the Penetapan RKPD) is
    open: the stages before it close themselves when nobody acts."""
    fid = f"{inp.cycle_id}-{inp.stages[-1]}-{inp.region}"
    for _ in range(400):
        if fid in (await cycle.query(CycleWorkflow.view)).open_forums:
            break
        await env.sleep(86_400)
    return await forum_handle(env.client, cycle, inp, inp.stages[-1], inp.region)


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
        rkpd = await _final_forum(time_skipping_env, cycle, inp)  # it waits for a person
        bappeda = coordinator(inp.region)
        ids = sorted((await rkpd.query(ForumWorkflow.view)).proposals)
        await decide(rkpd, bappeda, [DecisionRequest(p, "include") for p in ids])
        await rkpd.execute_update(
            ForumWorkflow.close, CloseRequest(bappeda, ba(perkada="Perwal No. 3 Tahun 2027"))
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
