"""A small cycle driven the way coordinators drive it, for the workflow tests."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError

from musrenbang.domain.calendar import fixed_holidays
from musrenbang.domain.catalogue import forum_id
from musrenbang.domain.profiles import catalogue_for
from musrenbang.planning import CyclePlan, cycle_input
from musrenbang.workflows.contracts import (
    ActorRef,
    BeritaAcara,
    CloseRequest,
    CycleInput,
    CycleView,
    DecideRequest,
    DecisionRequest,
    ForumView,
    PokirRequest,
    ProposalDraft,
    SubmitRequest,
)
from musrenbang.workflows.cycle import CycleWorkflow
from musrenbang.workflows.forum import ForumWorkflow

REGION = "13.72"  # Kota Solok: 2 kecamatan, 13 kelurahan
ADMIN = ActorRef("admin.bappeda", "admin", "13.72")


def small_cycle(year: int = 2028, **overrides: Any) -> CycleInput:
    overrides.setdefault("holidays", fixed_holidays(year - 1, year))
    first = "kecamatan" if overrides.get("template") == "tanpa-kelurahan" else "kelurahan"
    plan = CyclePlan(region=REGION, year=year, pagu={first: 1_000_000_000}, **overrides)
    return cycle_input(plan, ADMIN)


def coordinator(unit: str) -> ActorRef:
    return ActorRef(f"koordinator.{unit}", "coordinator", unit)


def draft(masalah: str, bidang: str, cost: int, **kw: Any) -> ProposalDraft:
    return ProposalDraft(
        masalah=masalah,
        gagasan=f"Perbaikan: {masalah.lower()}",
        cost=cost,
        bidang=bidang,
        volume=kw.pop("volume", 100),
        satuan=kw.pop("satuan", "m"),
        rt="003",
        rw="002",
        **kw,
    )


def ba(**kw: Any) -> BeritaAcara:
    return BeritaAcara(
        tanggal="2027-01-20",
        tempat="Aula",
        peserta=40,
        penandatangan=["Ketua Forum", "Notulis"],
        **kw,
    )


async def cycle_view(cycle: WorkflowHandle[Any, Any]) -> CycleView:
    """The cycle's live view. A query sent while the cycle continues as new can go
    unanswered until its deadline: it is asked again."""
    while True:
        try:
            view: CycleView = await cycle.query(
                CycleWorkflow.view, rpc_timeout=timedelta(seconds=2)
            )
            return view
        except RPCError:
            await asyncio.sleep(0.05)


async def forum_handle(
    client: Client, cycle: WorkflowHandle[Any, Any], inp: CycleInput, stage: str, unit: str
) -> WorkflowHandle[Any, Any]:
    """Waits (without advancing time) until the forum is open, then returns it."""
    fid = forum_id(inp.cycle_id, stage, unit)
    for _ in range(600):
        view = await cycle_view(cycle)
        if fid in view.open_forums:
            return client.get_workflow_handle(f"forum-{fid}")
        await asyncio.sleep(0.05)
    raise AssertionError(f"forum {fid} never opened")


async def decide(
    handle: WorkflowHandle[Any, Any], actor: ActorRef, decisions: list[DecisionRequest]
) -> None:
    await handle.execute_update(ForumWorkflow.decide, DecideRequest(actor, decisions))


async def close(handle: WorkflowHandle[Any, Any], actor: ActorRef, **kw: Any) -> None:
    await handle.execute_update(ForumWorkflow.close, CloseRequest(actor, ba(**kw)))


def sub_kegiatan_of(inp: CycleInput, opd: str) -> str:
    """A sub-kegiatan the OPD's Forum PD may assign: the first under its urusan."""
    [urusan] = [o["urusan"] for o in inp.profile["opds"] if o["slug"] == opd]
    return sorted(catalogue_for(inp.sub_kegiatan, urusan))[0]


async def drive_cycle(
    client: Client, cycle: WorkflowHandle[Any, Any], inp: CycleInput
) -> dict[str, Any]:
    """Coordinators act at every forum: every decision of DOMAIN.md is taken somewhere."""
    pokir = await cycle.execute_update(
        CycleWorkflow.submit_pokir,
        PokirRequest(
            ActorRef("anggota.dprd.1", "dprd", None, fraksi="Fraksi A"),
            "Solok 1",
            [draft("Lampu jalan padam di Jl. Sudirman", "pju", 60_000_000)],
        ),
    )
    rejected: list[str] = []
    for kel in inp.units["kelurahan"]:
        forum = await forum_handle(client, cycle, inp, "kelurahan", kel)
        lurah = coordinator(kel)
        res = await forum.execute_update(
            ForumWorkflow.submit,
            SubmitRequest(
                lurah,
                [
                    draft("Jalan lingkungan rusak", "jalan", 150_000_000),
                    draft("Drainase tersumbat", "drainase", 90_000_000),
                    draft("Jalan lingkungan berlubang (sama)", "jalan", 140_000_000),
                    draft("Alat posyandu kurang", "posyandu", 25_000_000, satuan="paket", volume=1),
                ],
            ),
        )
        a, b, c, d = res.proposal_ids
        await decide(
            forum,
            lurah,
            [
                DecisionRequest(a, "prioritize", rank=1, scores={"rkpd": 5, "spm": 4}),
                DecisionRequest(a, "accept"),
                DecisionRequest(
                    b,
                    "revise",
                    reason="Volume disesuaikan",
                    changes={"cost": 80_000_000, "volume": 80},
                ),
                DecisionRequest(c, "merge", into=a),
                DecisionRequest(
                    d,
                    "reject",
                    reason="Sudah dianggarkan Dinas Kesehatan tahun ini",
                    reason_code="sudah-dianggarkan",
                ),
            ],
        )
        rejected.append(d)
        await close(forum, lurah)
    for kec in inp.units["kecamatan"]:
        forum = await forum_handle(client, cycle, inp, "kecamatan", kec)
        held = (await forum.query(ForumWorkflow.view)).proposals
        ids = sorted(held)
        decisions = [
            DecisionRequest(p, "prioritize", rank=i + 1, scores={"lintas-kecamatan": 3})
            for i, p in enumerate(ids)
        ]
        decisions += [DecisionRequest(p, "accept") for p in ids[1:]]
        decisions.append(DecisionRequest(ids[0], "defer", reason="Menunggu kajian teknis"))
        await decide(forum, coordinator(kec), decisions)
        await close(forum, coordinator(kec))
    bappeda = coordinator(inp.region)
    for opd in inp.opds:
        view = await cycle_view(cycle)
        fid = forum_id(inp.cycle_id, "forum-pd", opd)
        if fid not in view.open_forums and fid in view.closed_forums:
            continue
        forum = await forum_handle(client, cycle, inp, "forum-pd", opd)
        ids = sorted((await forum.query(ForumWorkflow.view)).proposals)
        code = sub_kegiatan_of(inp, opd)
        await decide(
            forum,
            coordinator(opd),
            [
                *[DecisionRequest(p, "assign", opd_akhir=opd, sub_kegiatan=code) for p in ids],
                *[DecisionRequest(p, "accept") for p in ids],
            ],
        )
        await close(forum, coordinator(opd))
    kota = await forum_handle(client, cycle, inp, "kota", inp.region)
    ids = sorted(
        (await kota.query(ForumWorkflow.view)).proposals, key=lambda p: (p in pokir.proposal_ids, p)
    )  # a pokir is not the one dropped
    dropped = ids[0]
    await decide(
        kota,
        bappeda,
        [
            DecisionRequest(dropped, "not_accommodated", reason="Pagu OPD tidak mencukupi"),
            *[DecisionRequest(p, "include") for p in ids[1:]],
        ],
    )
    await close(kota, bappeda)
    rkpd = await forum_handle(client, cycle, inp, "rkpd", inp.region)
    ids = sorted((await rkpd.query(ForumWorkflow.view)).proposals)
    await decide(rkpd, bappeda, [DecisionRequest(p, "include") for p in ids])
    await close(rkpd, bappeda, perkada="Perwal Solok No. 12 Tahun 2027")
    return {"pokir": pokir.proposal_ids, "rejected": rejected, "not_accommodated": [dropped]}


async def first_events(engine: AsyncEngine, proposal_ids: list[str]) -> dict[str, tuple[str, Any]]:
    """Each usulan's first event: (type, stage)."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT DISTINCT ON (stream) stream, type, payload->>'stage' AS stage "
                "FROM audit.events WHERE stream = ANY(:s) ORDER BY stream, version"
            ),
            {"s": [f"proposal:{p}" for p in proposal_ids]},
        )
        return {r.stream.split(":", 1)[1]: (r.type, r.stage) for r in rows}


async def forum_view(handle: WorkflowHandle[Any, Any]) -> ForumView:
    view: ForumView = await handle.query(ForumWorkflow.view)
    return view
