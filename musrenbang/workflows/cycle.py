"""CycleWorkflow: one planning cycle of one region and year (id `cycle-36.71-2027`).

It opens the stages in the order of the region's template, starts the forums of each
stage as child workflows, routes the usulan each forum forwards to the forum that is
next for it, opens a forum as soon as every forum that feeds it has closed, takes pokir
DPRD until their deadline, and ends when the RKPD is adopted.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from musrenbang.domain.catalogue import EventType as ET
    from musrenbang.domain.catalogue import cycle_workflow_id, forum_id, forum_workflow_id
    from musrenbang.domain.errors import Conflict, Forbidden, Refused
    from musrenbang.domain.intake import check_batch, draft_details, drafts
    from musrenbang.domain.opd import routes_before_profiles
    from musrenbang.domain.profiles import catalogue_for
    from musrenbang.domain.receipts import receipt_code
    from musrenbang.domain.routing import feeders, route, route_opd, units_at
    from musrenbang.domain.stages import Level, defined
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
    from musrenbang.workflows.recording import Recorder, new_proposal_id
    from musrenbang.workflows.refusals import refusals


LATE_OPENING_SPAN = timedelta(days=7)


# Forums report their result to the cycle by a signal, and the cycle continues as new
# once its history grows long (a year of pokir and forum results). Histories from before
# awaited each forum as a child and replay so.
REPORTS = "cycle-reports-by-signal"
# A run continues as new past this many events, or sooner when Temporal suggests it
# (well below its limits of 51,200 events and 50 MB), whichever comes first; never
# before MIN_HISTORY, so a fresh run cannot continue at once.
CONTINUE_AFTER = 10_000
MIN_HISTORY = 30


@workflow.defn
class CycleWorkflow:
    """The cycle of one region and year, from its first forum to the adopted RKPD."""

    @workflow.init
    def __init__(self, inp: CycleInput) -> None:
        self.inp = inp
        self.rec = Recorder(inp.region, inp.cycle_id, inp.cycle_id)
        self.stages = defined(inp.stages, inp.stage_defs)
        self.levels = [s.level for s in self.stages]
        self.profile_opds: dict[str, dict[str, Any]] = {
            o["slug"]: o for o in inp.profile.get("opds", [])
        }
        self.routes = inp.routes or routes_before_profiles(inp.opds)
        self.pokir_stage = inp.pokir_stage if inp.pokir_stage in inp.stages else None
        # per stage: unit -> usulan routed to it so far; and which feeders have closed
        self.inbox: list[dict[str, list[Incoming]]] = [{} for _ in inp.stages]
        self.closed: list[set[str]] = [set() for _ in inp.stages]
        self.started: list[set[str]] = [set() for _ in inp.stages]
        self.opened_stages: set[int] = set()
        self.result: CycleResult | None = None
        self.pokir_open = True
        self.pokir: dict[str, list[Incoming]] = {}
        self.reports: list[ForumResult] = []  # forum results signalled, not yet routed
        self.by_signal = False  # set by `run`: whether forums report by signal
        self.routed = 0  # forum results this run has routed
        self.lock = asyncio.Lock()
        self.tasks: list[asyncio.Task[None]] = []
        if inp.carried is not None:
            self._take(inp.carried)

    @workflow.run
    async def run(self, inp: CycleInput) -> CycleResult:
        search.publish(region=inp.region, cycle=inp.cycle_id, status="running")
        self.by_signal = workflow.patched(REPORTS)
        if inp.carried is None:
            async with self.lock:
                await self.rec.record(
                    [self.rec.cycle_event(ET.CYCLE_OPENED, self._opened_payload(), inp.actor)],
                    "opened",
                )
                for unit in self._units(0):
                    await self._start_forum(0, unit)
        if self.pokir_open:
            self.tasks.append(asyncio.create_task(self._pokir_freeze()))
        while self.result is None:
            await workflow.wait_condition(
                lambda: self.result is not None or bool(self.reports) or self._long()
            )
            if self.reports:
                async with self.lock:
                    while self.reports and self.result is None:
                        report = self.reports.pop(0)
                        await self._route(self.inp.stages.index(report.stage), report)
                        self.routed += 1
            elif self.result is None:
                # every update, signal and timer's record done first (none holds the lock),
                # so nothing is lost in between; then on at once, with no await between
                await workflow.wait_condition(
                    lambda: workflow.all_handlers_finished() and not self.lock.locked()
                )
                if not self.reports and self.result is None:
                    workflow.continue_as_new(self._next_run())
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._result()

    def _long(self) -> bool:
        """Whether this run's history should end here and go on in a new run: once it has
        routed a forum's result at least (so a run always moves the cycle on), past the
        limit or when Temporal suggests it."""
        if not self.by_signal or self.routed == 0:
            return False
        info = workflow.info()
        limit = max(self.inp.continue_after or CONTINUE_AFTER, MIN_HISTORY)
        return info.is_continue_as_new_suggested() or info.get_current_history_length() > limit

    def _next_run(self) -> CycleInput:
        carried = {
            "inbox": [
                {unit: [i.wire() for i in items] for unit, items in box.items()}
                for box in self.inbox
            ],
            "closed": [sorted(units) for units in self.closed],
            "started": [sorted(units) for units in self.started],
            "opened_stages": sorted(self.opened_stages),
            "pokir_open": self.pokir_open,
            "pokir": {opd: [i.wire() for i in items] for opd, items in self.pokir.items()},
            "runs": int((self.inp.carried or {}).get("runs", 1)) + 1,
        }
        fields = {k: v for k, v in vars(self.inp).items() if k != "carried"}
        return CycleInput(**fields, carried=carried)

    def _take(self, carried: dict[str, Any]) -> None:
        self.inbox = [
            {unit: [Incoming.of(r) for r in rows] for unit, rows in box.items()}
            for box in carried["inbox"]
        ]
        self.closed = [set(units) for units in carried["closed"]]
        self.started = [set(units) for units in carried["started"]]
        self.opened_stages = set(carried["opened_stages"])
        self.pokir_open = bool(carried["pokir_open"])
        self.pokir = {opd: [Incoming.of(r) for r in rows] for opd, rows in carried["pokir"].items()}

    def _opened_payload(self) -> dict[str, Any]:
        inp = self.inp
        payload: dict[str, Any] = {
            "cycle_id": inp.cycle_id,
            "region": inp.region,
            "name": inp.region_name,
            "year": inp.year,
            "template": inp.template,
            "stages": inp.stages,
            "deadlines": inp.deadlines,
            "pokir_deadline": inp.pokir_deadline,
        }
        if inp.profile:  # the profile it was planned with, and the names people read
            payload.update(profile=inp.profile, stage_defs=inp.stage_defs, names=inp.names)
        return payload

    @workflow.signal
    def forum_closed(self, result: ForumResult) -> None:
        """A forum of this cycle has closed (sent by the forum, to whichever run is
        current); a report already routed is ignored."""
        stage = self.inp.stages.index(result.stage) if result.stage in self.inp.stages else -1
        fresh = all(r.forum_id != result.forum_id for r in self.reports)
        if stage >= 0 and result.unit not in self.closed[stage] and fresh:
            self.reports.append(result)

    def _result(self) -> CycleResult:
        if self.result is None:
            raise RuntimeError("the RKPD has not been adopted")
        return self.result

    def _units(self, stage: int) -> list[str]:
        return units_at(self.levels[stage], self.inp.units, self.inp.opds, self.inp.region)

    async def _start_forum(self, stage: int, unit: str) -> None:
        slug = self.inp.stages[stage]
        if stage not in self.opened_stages:
            self.opened_stages.add(stage)
            await self.rec.record(
                [
                    self.rec.cycle_event(
                        ET.STAGE_OPENED,
                        {"stage": slug, "name": self.stages[stage].name},
                        system=True,
                    )
                ],
                f"stage:{slug}",
            )
        self.started[stage].add(unit)
        incoming = self.inbox[stage].pop(unit, [])
        if slug == self.pokir_stage:
            incoming += self.pokir.pop(unit, [])
        handle = await workflow.start_child_workflow(
            ForumWorkflow.run,
            self._forum_input(stage, unit, incoming),
            id=forum_workflow_id(self.inp.cycle_id, slug, unit),
            parent_close_policy=(
                ParentClosePolicy.ABANDON if self.by_signal else ParentClosePolicy.TERMINATE
            ),
        )
        if not self.by_signal:
            self.tasks.append(asyncio.create_task(self._when_closed(stage, handle)))

    def _forum_input(self, stage: int, unit: str, incoming: list[Incoming]) -> ForumInput:
        slug = self.inp.stages[stage]
        last = stage == len(self.inp.stages) - 1
        level = self.levels[stage]
        profiled = bool(self.inp.profile)
        pagu = self.inp.pagu_units.get(slug, {}).get(unit, self.inp.pagu.get(slug))
        return ForumInput(
            cycle_id=self.inp.cycle_id,
            city=self.inp.region,
            stage=slug,
            level=level.value,
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
            pagu=pagu,
            intake=stage == 0,
            incoming=[i.wire() for i in incoming],
            opds=self.inp.opds,
            routes=self.inp.routes if stage == 0 else {},
            reason_codes=self.inp.reason_codes,
            # the nomenclature goes to the forums that assign: each OPD's Forum PD, its part
            sub_kegiatan=self._catalogue(stage, unit) if profiled else None,
            chair=self._chair(stage, unit) if profiled else None,
            unit_name=self.inp.names.get(unit) if profiled else None,
            report_to=cycle_workflow_id(self.inp.cycle_id) if self.by_signal else None,
        )

    def _catalogue(self, stage: int, unit: str) -> dict[str, str]:
        if self.levels[stage] is not Level.OPD:
            return {}
        opd = self.profile_opds.get(unit, {})
        return catalogue_for(self.inp.sub_kegiatan, opd.get("urusan") or [])

    def _chair(self, stage: int, unit: str) -> str:
        """Who chairs the forum: the OPD's own chair at an OPD stage, else the stage's."""
        chair = self.profile_opds.get(unit, {}).get("chair")
        if self.levels[stage] is Level.OPD and chair:
            return str(chair)
        return self.stages[stage].chaired_by

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
        previous = self._units(stage - 1)
        for unit in self._units(stage):
            waits_for = feeders(self.levels[stage], self.levels[stage - 1], unit, previous)
            if unit in self.started[stage] or not waits_for <= self.closed[stage - 1]:
                continue
            slug = self.inp.stages[stage]
            has_pokir = slug == self.pokir_stage and bool(self.pokir.get(unit))
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
            [self.rec.cycle_event(ET.RKPD_ADOPTED, payload, system=True)], "adopted"
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
                        ET.POKIR_WINDOW_CLOSED,
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
            stage = self.pokir_stage or ""
            events, ids = [], []
            late: dict[str | None, list[Incoming]] = {}
            held: list[Incoming] = []
            for draft in drafts(req.proposals):
                pid = new_proposal_id()
                opd = route_opd(draft.opd, draft.bidang, self.routes)
                payload = {
                    "proposal_id": pid,
                    "receipt": receipt_code(pid),
                    "cycle_id": self.inp.cycle_id,
                    "stage": stage,
                    "unit": opd,
                    "kind": "pokir",
                    "details": draft_details(draft, opd),
                    "proposer": {
                        "member": req.actor.subject,
                        "fraksi": req.actor.fraksi,
                        "dapil": req.dapil,
                    },
                }
                events.append(self.rec.proposal_event(pid, ET.POKIR_SUBMITTED, payload, req.actor))
                item = Incoming(pid, draft.cost, opd, "pokir")
                if opd in self.started[self.inp.stages.index(stage)]:
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
                    forum_workflow_id(self.inp.cycle_id, stage, opd or "")
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
        if self.pokir_stage is None:
            raise Refused("this cycle's stages take no pokir (no Forum Perangkat Daerah)")
        if not self.pokir_open:
            raise Conflict(f"pokir are frozen since {self.inp.pokir_deadline}")
        if not req.proposals or not req.dapil.strip():
            raise Refused("pokir need the dapil and at least one usulan")
        batch = drafts(req.proposals)
        check_batch(batch, self.inp.opds, self.routes, {}, what="pokir")
        pd = self.inp.stages.index(self.pokir_stage)
        for n, draft in enumerate(batch, start=1):
            opd = route_opd(draft.opd, draft.bidang, self.routes)
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
