"""CycleWorkflow: one planning cycle of one region and year (id `cycle-36.71-2027`).

It opens the stages in the order of the region's template, starts the forums of each
stage as child workflows, routes the usulan each forum forwards to the forum that is
next for it, opens a forum as soon as every forum that feeds it has closed, takes pokir
DPRD until their deadline, and ends when the RKPD is adopted.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from musrenbang.domain.errors import Conflict, Forbidden, Refused
    from musrenbang.domain.receipts import receipt_code
    from musrenbang.domain.stages import POKIR_STAGE, STAGES, Level, forum_id
    from musrenbang.domain.text import check_texts
    from musrenbang.workflows import search
    from musrenbang.workflows.contracts import (
        CommandResult,
        CycleInput,
        CycleResult,
        CycleView,
        ForumConfig,
        ForumInput,
        ForumResult,
        Incoming,
        PokirRequest,
    )
    from musrenbang.workflows.forum import ForumWorkflow
    from musrenbang.workflows.recording import (
        Recorder,
        draft_details,
        drafts,
        new_proposal_id,
        route,
        route_opd,
        validate_draft,
    )
    from musrenbang.workflows.refusals import refusals


LATE_OPENING_SPAN = timedelta(days=7)


@workflow.defn
class CycleWorkflow:
    """The cycle of one region and year, from its first forum to the adopted RKPD."""

    @workflow.init
    def __init__(self, inp: CycleInput) -> None:
        self.inp = inp
        self.rec = Recorder(inp.region, inp.cycle_id, inp.cycle_id)
        self.levels = [STAGES[s].level for s in inp.stages]
        # per stage: unit -> usulan routed to it so far; and which feeders have closed
        self.inbox: list[dict[str, list[Incoming]]] = [{} for _ in inp.stages]
        self.closed: list[set[str]] = [set() for _ in inp.stages]
        self.started: list[set[str]] = [set() for _ in inp.stages]
        self.opened_stages: set[int] = set()
        self.result: CycleResult | None = None
        self.pokir_open = True
        self.pokir: dict[str, list[Incoming]] = {}
        self.lock = asyncio.Lock()
        self.tasks: list[asyncio.Task[None]] = []

    @workflow.run
    async def run(self, inp: CycleInput) -> CycleResult:
        search.publish(region=inp.region, cycle=inp.cycle_id, status="running")
        async with self.lock:
            opened = {
                "cycle_id": inp.cycle_id,
                "region": inp.region,
                "name": inp.region_name,
                "year": inp.year,
                "template": inp.template,
                "stages": inp.stages,
                "deadlines": inp.deadlines,
                "pokir_deadline": inp.pokir_deadline,
            }
            await self.rec.record(
                [self.rec.cycle_event("CycleOpened", opened, inp.actor)], "opened"
            )
            for unit in self._units(0):
                await self._start_forum(0, unit)
        self.tasks.append(asyncio.create_task(self._pokir_freeze()))
        await workflow.wait_condition(lambda: self.result is not None)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._result()

    def _result(self) -> CycleResult:
        if self.result is None:
            raise RuntimeError("the RKPD has not been adopted")
        return self.result

    def _units(self, stage: int) -> list[str]:
        level = self.levels[stage]
        if level is Level.CITY:
            return [self.inp.region]
        if level is Level.OPD:
            return list(self.inp.opds)
        return list(self.inp.units[level.value])

    def _feeders(self, stage: int, unit: str) -> set[str]:
        """The forums of the stage before that must close before `unit` opens at `stage`."""
        prev = stage - 1
        if self.levels[stage] is Level.KECAMATAN and self.levels[prev] is Level.KELURAHAN:
            return {u for u in self._units(prev) if u.rsplit(".", 1)[0] == unit}
        if self.levels[stage] == self.levels[prev] and self.levels[stage] is not Level.CITY:
            return {unit}
        return set(self._units(prev))

    async def _start_forum(self, stage: int, unit: str) -> None:
        slug = self.inp.stages[stage]
        if stage not in self.opened_stages:
            self.opened_stages.add(stage)
            await self.rec.record(
                [
                    self.rec.cycle_event(
                        "StageOpened", {"stage": slug, "name": STAGES[slug].name}, system=True
                    )
                ],
                f"stage:{slug}",
            )
        self.started[stage].add(unit)
        incoming = self.inbox[stage].pop(unit, [])
        if slug == POKIR_STAGE:
            incoming += self.pokir.pop(unit, [])
        last = stage == len(self.inp.stages) - 1
        inp = ForumInput(
            cycle_id=self.inp.cycle_id,
            city=self.inp.region,
            stage=slug,
            level=self.levels[stage].value,
            unit=unit,
            next_stage=None if last else self.inp.stages[stage + 1],
            next_level=None if last else self.levels[stage + 1].value,
            config=ForumConfig(
                deadline=self._deadline(slug),
                reminder_hours=self.inp.reminder_hours,
                grace_working_days=self.inp.grace_working_days,
                holidays=self.inp.holidays,
                auto_close_policy=self.inp.auto_close_policy,
                timer_may_close=self.inp.timer_closes.get(slug, True),
            ),
            pagu=self.inp.pagu.get(slug),
            intake=stage == 0,
            incoming=[i.wire() for i in incoming],
            opds=self.inp.opds,
        )
        handle = await workflow.start_child_workflow(
            ForumWorkflow.run,
            inp,
            id=f"forum-{forum_id(self.inp.cycle_id, slug, unit)}",
            parent_close_policy=ParentClosePolicy.TERMINATE,
        )
        self.tasks.append(asyncio.create_task(self._when_closed(stage, handle)))

    def _deadline(self, slug: str) -> str:
        deadline = datetime.fromisoformat(self.inp.deadlines[slug])
        # A forum that opens after its stage's calendar deadline (its feeders ran late)
        # still gets time to deliberate.
        if deadline <= workflow.now():
            deadline = workflow.now() + LATE_OPENING_SPAN
        return deadline.isoformat()

    async def _when_closed(self, stage: int, handle: workflow.ChildWorkflowHandle) -> None:  # type: ignore[type-arg]
        result: ForumResult = await handle
        async with self.lock:
            await self._route(stage, result)

    async def _route(self, stage: int, result: ForumResult) -> None:
        self.closed[stage].add(result.unit)
        if stage == len(self.inp.stages) - 1:
            await self._adopt(result)
            return
        nxt = stage + 1
        for item in map(Incoming.of, result.forwarded):
            to_unit = route(self.levels[nxt], result.unit, item.opd, self.inp.region)
            self.inbox[nxt].setdefault(to_unit, []).append(item)
        await self._open_ready(nxt)

    async def _open_ready(self, stage: int) -> None:
        """Opens every forum of `stage` whose feeders have all closed."""
        skipped = False
        for unit in self._units(stage):
            if (
                unit in self.started[stage]
                or not self._feeders(stage, unit) <= self.closed[stage - 1]
            ):
                continue
            has_pokir = self.inp.stages[stage] == POKIR_STAGE and bool(self.pokir.get(unit))
            if (
                self.levels[stage] is Level.OPD
                and not self.inbox[stage].get(unit)
                and not has_pokir
            ):
                self.started[stage].add(unit)  # an OPD nobody proposed to holds no forum
                self.closed[stage].add(unit)
                skipped = True
                continue
            await self._start_forum(stage, unit)
        if skipped and stage + 1 < len(self.inp.stages):
            await self._open_ready(stage + 1)

    async def _adopt(self, result: ForumResult) -> None:
        items = sorted(row[0] for row in result.forwarded)
        total = sum(row[1] for row in result.forwarded)
        payload = {
            "perkada": result.perkada,
            "closed_by": result.closed_by,
            "items": items,
            "total_cost": total,
        }
        await self.rec.record(
            [self.rec.cycle_event("RkpdAdopted", payload, system=True)], "adopted"
        )
        self.result = CycleResult(self.inp.cycle_id, items, total, result.perkada)
        search.publish(region=self.inp.region, cycle=self.inp.cycle_id, status="adopted")
        await self.rec.checkpoint("adopted", f"RKPD {self.inp.cycle_id} adopted")

    async def _pokir_freeze(self) -> None:
        deadline = datetime.fromisoformat(self.inp.pokir_deadline)
        await workflow.sleep(max((deadline - workflow.now()).total_seconds(), 0))
        async with self.lock:
            self.pokir_open = False
            count = sum(len(v) for v in self.pokir.values())
            await self.rec.record(
                [
                    self.rec.cycle_event(
                        "PokirWindowClosed",
                        {"deadline": self.inp.pokir_deadline, "held": count},
                        system=True,
                    )
                ],
                "pokir-freeze",
            )

    @workflow.update
    async def submit_pokir(self, req: PokirRequest) -> CommandResult:
        with refusals():
            return await self._submit_pokir(req)

    async def _submit_pokir(self, req: PokirRequest) -> CommandResult:
        async with self.lock:
            self._check_pokir(req)
            events, ids = [], []
            late: dict[str | None, list[Incoming]] = {}
            held: list[Incoming] = []
            for draft in drafts(req.proposals):
                pid = new_proposal_id()
                opd = route_opd(draft.opd, draft.bidang, self.inp.opds)
                details = draft_details(draft, opd)
                payload = {
                    "proposal_id": pid,
                    "receipt": receipt_code(pid),
                    "cycle_id": self.inp.cycle_id,
                    "stage": POKIR_STAGE,
                    "unit": opd,
                    "kind": "pokir",
                    "details": details,
                    "proposer": {
                        "member": req.actor.subject,
                        "fraksi": req.actor.fraksi,
                        "dapil": req.dapil,
                    },
                }
                events.append(self.rec.proposal_event(pid, "PokirSubmitted", payload, req.actor))
                item = Incoming(pid, draft.cost, opd, "pokir")
                if opd in self.started[self.inp.stages.index(POKIR_STAGE)]:
                    late.setdefault(opd, []).append(item)
                else:
                    held.append(item)
                ids.append(pid)
            info = workflow.current_update_info()
            seqs = await self.rec.record(events, f"update:{info.id if info else 'pokir'}")
            for item in held:  # only once recorded: a refused append leaves nothing held
                self.pokir.setdefault(item.opd or "", []).append(item)
            for opd, items in late.items():
                handle = workflow.get_external_workflow_handle(
                    f"forum-{forum_id(self.inp.cycle_id, POKIR_STAGE, opd or '')}"
                )
                await handle.signal(ForumWorkflow.receive, [i.wire() for i in items])
            return CommandResult(seqs, ids, [receipt_code(p) for p in ids])

    @submit_pokir.validator
    def _validate_pokir(self, req: PokirRequest) -> None:
        with refusals():
            check_texts(req.proposals, "proposals")
            self._check_pokir(req)

    def _check_pokir(self, req: PokirRequest) -> None:
        check_texts({"dapil": req.dapil, "fraksi": req.actor.fraksi or ""})
        if req.actor.role not in ("dprd", "admin"):
            raise Forbidden("only DPRD members submit pokir")
        if POKIR_STAGE not in self.inp.stages:
            raise Refused("this cycle's template has no Forum PD")
        if not self.pokir_open:
            raise Conflict(f"pokir are frozen since {self.inp.pokir_deadline}")
        if not req.proposals or not req.dapil.strip():
            raise Refused("pokir need the dapil and at least one usulan")
        pd = self.inp.stages.index(POKIR_STAGE)
        seen: set[str] = set()
        for n, draft in enumerate(drafts(req.proposals), start=1):
            problem = validate_draft(draft, self.inp.opds)
            if problem:
                raise Refused(f"pokir {n}: {problem}")
            ref = draft.client_reference
            if ref and ref in seen:
                raise Refused(f"pokir {n}: reference {ref} is given twice in this batch")
            if ref:
                seen.add(ref)
            opd = route_opd(draft.opd, draft.bidang, self.inp.opds)
            if opd in self.closed[pd]:
                raise Conflict(f"pokir {n}: the Forum PD of {opd} has already closed")

    @workflow.query
    def view(self) -> CycleView:
        open_forums = [
            forum_id(self.inp.cycle_id, self.inp.stages[i], u)
            for i in range(len(self.inp.stages))
            for u in sorted(self.started[i] - self.closed[i])
        ]
        closed = [
            forum_id(self.inp.cycle_id, self.inp.stages[i], u)
            for i in range(len(self.inp.stages))
            for u in sorted(self.closed[i])
            if u
        ]
        status = "adopted" if self.result else "running"
        items = len(self.result.rkpd_items) if self.result else 0
        return CycleView(self.inp.cycle_id, status, open_forums, closed, self.pokir_open, items)
