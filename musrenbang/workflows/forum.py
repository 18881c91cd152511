"""ForumWorkflow: one forum (a Musrenbang Kelurahan, Kecamatan, Forum PD, Kota, or the
Penetapan RKPD), from opening to its Berita Acara.

It holds the usulan under deliberation and is their only writer while it holds them.
Updates carry validators, so a refused request leaves no trace in history and writes
nothing. Timers send reminders before the deadline, escalate at it, and auto-close after
the grace period; each is recorded with the system as the actor.
"""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from musrenbang.domain.access import Actor, escalation_target, may_decide, may_extend
    from musrenbang.domain.calendar import WIB, add_working_days, end_of_day, holidays_from
    from musrenbang.domain.decisions import Decision, Entry, ForumBook
    from musrenbang.domain.errors import Conflict, Forbidden, Refused
    from musrenbang.domain.receipts import receipt_code
    from musrenbang.domain.stages import STAGES, Level, forum_id
    from musrenbang.domain.text import check_texts
    from musrenbang.domain.usulan import KELURAHAN
    from musrenbang.workflows import search
    from musrenbang.workflows.contracts import (
        ActorRef,
        CloseRequest,
        CommandResult,
        DecideRequest,
        ExtendRequest,
        ForumInput,
        ForumResult,
        ForumView,
        Incoming,
        NotifyInput,
        ProposalDraft,
        SubmitRequest,
    )
    from musrenbang.workflows.recording import (
        Recorder,
        draft_details,
        drafts,
        new_proposal_id,
        plain,
        route,
        route_opd,
        validate_draft,
    )
    from musrenbang.workflows.refusals import refusal_of, refusals


@workflow.defn
class ForumWorkflow:
    """One forum of one stage for one unit (a kelurahan, kecamatan, OPD or the city)."""

    @workflow.init
    def __init__(self, inp: ForumInput) -> None:
        self.inp = inp
        self.id = forum_id(inp.cycle_id, inp.stage, inp.unit)
        self.level = Level(inp.level)
        self.book = ForumBook(inp.stage, inp.pagu)
        for row in inp.incoming:
            item = Incoming.of(row)
            self.book.entries[item.proposal_id] = Entry(item.cost, item.opd, item.kind)
        self.deadline = _parse(inp.config.deadline)
        self.status = "open"
        self.escalated_to: str | None = None
        self.closed_by: str | None = None
        self.perkada: str | None = None
        self.references: dict[str, str] = {}  # client reference -> usulan id
        stage = STAGES.get(inp.stage)
        self.bappeda_chairs = stage is not None and stage.chaired_by == "Bappeda"
        self.lock = asyncio.Lock()
        self.rec = Recorder(inp.city, inp.cycle_id, self.id, inp.stage, inp.unit)

    @workflow.run
    async def run(self, inp: ForumInput) -> ForumResult:
        self._publish()
        async with self.lock:
            await self.rec.record(
                [self.rec.forum_event("ForumOpened", self._opened_payload())], "opened"
            )
        while True:
            await self._watch_deadline()
            await workflow.wait_condition(workflow.all_handlers_finished)
            if self.status == "closed":  # a close refused after it stopped the timers
                break  # is put back: then the timers run again
        # covering the closing record itself and the usulan it forwards
        await self.rec.checkpoint("closed", f"forum {self.id} closed")
        forwarded = [
            Incoming(pid, e.cost, e.opd, e.kind).wire()
            for pid, e in self.book.entries.items()
            if e.outcome in ("accept", "revise", "include")
        ]
        return ForumResult(
            self.id, inp.stage, inp.unit, self.closed_by or "", forwarded, self.perkada
        )

    # -- deadlines --------------------------------------------------------------------

    async def _watch_deadline(self) -> None:
        """Reminders, then escalation at the deadline, then auto-close after the grace
        period. An extension moves the deadline and starts the sequence again."""
        sent: set[tuple[str, int]] = set()
        while self.status != "closed":
            due, action = self._next_due(sent)
            delay = max((due - workflow.now()).total_seconds(), 0)
            marker = self.deadline
            try:
                await workflow.wait_condition(
                    lambda m=marker: self.status == "closed" or self.deadline != m,  # type: ignore[misc]
                    timeout=delay,
                )
                continue  # closed, or the deadline moved
            except TimeoutError:
                pass
            async with self.lock:
                if self.status == "closed" or self.deadline != marker:
                    continue
                notice, refused = await self._run_timer(action, sent)
                if notice is not None and not self.rec.by_child():
                    await self.rec.deliver_here(notice)  # as histories from before it did
                    notice = None
            if notice is not None:  # delivered outside the lock, by a workflow of its own
                await self.rec.send(notice)
            if refused:
                await workflow.sleep(TIMER_RETRY)

    async def _run_timer(
        self, action: Any, sent: set[tuple[str, int]]
    ) -> tuple[NotifyInput | None, bool]:
        """Runs a reminder, escalation or auto-close. If the log refuses the system's own
        record for good, the forum is put back as it was and the timer tries again later."""
        before = (self.status, self.escalated_to, self.closed_by, set(sent))
        outcomes = {pid: e.outcome for pid, e in self.book.entries.items()}
        try:
            result: NotifyInput | None = await action(sent)
            return result, False
        except ActivityError as exc:
            refusal = refusal_of(exc)
            if refusal is None:
                raise
            self.status, self.escalated_to, self.closed_by, kept = before
            sent.clear()
            sent.update(kept)
            for pid, outcome in outcomes.items():
                self.book.entries[pid].outcome = outcome
            self._publish()
            workflow.logger.error("forum.timer_refused", extra={"detail": refusal.detail})
            return None, True

    def _next_due(self, sent: set[tuple[str, int]]) -> tuple[datetime, Any]:
        key = self.deadline.isoformat()
        if self.status == "open":
            for hours in sorted(self.inp.config.reminder_hours, reverse=True):
                at = self.deadline - timedelta(hours=hours)
                if (key, hours) not in sent and at > workflow.now():
                    return at, lambda s, h=hours: self._remind(s, h)
                sent.add((key, hours))
            return self.deadline, self._escalate
        if self._waits_for_a_person():
            done = sum(1 for k, _ in sent if k == f"overdue:{key}")
            every = timedelta(hours=self.inp.config.overdue_reminder_hours)
            return self.deadline + every * (done + 1), lambda s, n=done + 1: self._overdue(s, n)
        grace_end = end_of_day(
            add_working_days(
                self.deadline.astimezone(WIB).date(),
                self.inp.config.grace_working_days,
                holidays_from(self.inp.config.holidays),
            )
        )
        return grace_end, self._auto_close

    async def _remind(self, sent: set[tuple[str, int]], hours: int) -> NotifyInput:
        sent.add((self.deadline.isoformat(), hours))
        undecided = len(self.book.undecided())
        payload = {"deadline": _iso(self.deadline), "hours_left": hours, "undecided": undecided}
        await self.rec.record(
            [self.rec.forum_event("DeadlineReminderSent", payload, system=True)],
            f"reminder:{_iso(self.deadline)}:{hours}",
        )
        return self.rec.notice(
            "reminder",
            f"{self.inp.stage} {self.inp.unit}: tenggat {hours} jam lagi,"
            f" {undecided} usulan belum diputuskan",
            payload,
            f"reminder:{_iso(self.deadline)}:{hours}",
        )

    def _waits_for_a_person(self) -> bool:
        """Past its deadline, does this forum wait (escalated and reminded) for a person to
        close it, rather than close itself? The cycle's plan says so per stage; the final
        stage always waits (histories from before that rule replay as they ran)."""
        if not self.inp.config.timer_may_close:
            return True
        return self.inp.next_stage is None and workflow.patched(FINAL_STAGE_WAITS)

    async def _overdue(self, sent: set[tuple[str, int]], n: int) -> NotifyInput:
        """The n-th reminder after the deadline of a forum only a person may close."""
        sent.add((f"overdue:{self.deadline.isoformat()}", n))
        hours = n * self.inp.config.overdue_reminder_hours
        waiting = "penutupan oleh pimpinan forum"
        if self.inp.next_stage is None:
            waiting = "penetapan RKPD dengan nomor Perkada"
        payload = {
            "deadline": _iso(self.deadline),
            "hours_overdue": hours,
            "undecided": len(self.book.undecided()),
            "escalated_to": self.escalated_to,
            "waiting_for": waiting,
        }
        cause = f"overdue:{_iso(self.deadline)}:{n}"
        await self.rec.record(
            [self.rec.forum_event("DeadlineReminderSent", payload, system=True)], cause
        )
        return self.rec.notice(
            "overdue",
            f"{self.inp.stage} {self.inp.unit}: {hours} jam melewati tenggat; menunggu {waiting}",
            payload,
            cause,
        )

    async def _escalate(self, sent: set[tuple[str, int]]) -> NotifyInput:
        self.status = "overdue"
        self.escalated_to = escalation_target(self.level, self.inp.unit, self.inp.city)
        self._publish()
        key = f"deadline:{_iso(self.deadline)}"
        missed = {"deadline": _iso(self.deadline), "undecided": len(self.book.undecided())}
        raised = {"to": self.escalated_to, "deadline": _iso(self.deadline)}
        if self._waits_for_a_person():  # only a person closes it: the region's top office
            raised["office"] = "Sekretaris Daerah" if self.inp.next_stage is None else "admin"
        await self.rec.record(
            [
                self.rec.forum_event("DeadlineMissed", missed, system=True),
                self.rec.forum_event("EscalationRaised", raised, system=True),
            ],
            key,
        )
        return self.rec.notice(
            "escalation",
            f"{self.inp.stage} {self.inp.unit} melewati tenggat; dieskalasi ke {self.escalated_to}",
            raised,
            key,
        )

    async def _auto_close(self, sent: set[tuple[str, int]]) -> None:
        policy = self.inp.config.auto_close_policy
        events = []
        for pid in self.book.undecided():
            if policy == "forward":
                self.book.entries[pid].outcome = "accept"
                events.append(
                    self.rec.proposal_event(pid, "ProposalAccepted", {"auto": True}, system=True)
                )
            else:
                self.book.entries[pid].outcome = "not_deliberated"
                events.append(
                    self.rec.proposal_event(
                        pid,
                        "ProposalNotDeliberated",
                        {
                            "reason": "Forum ditutup otomatis setelah tenggat dan masa tenggang",
                            "reason_code": "tidak-dibahas",
                        },
                        system=True,
                    )
                )
        payload = {"policy": policy, "deadline": _iso(self.deadline), **self._closing_summary()}
        cause = f"autoclose:{_iso(self.deadline)}"
        checkpoint = await self.rec.checkpoint(cause, f"forum {self.id} closing")
        if checkpoint is not None:
            payload["checkpoint"] = checkpoint
        events.append(self.rec.forum_event("ForumAutoClosed", payload, system=True))
        events.extend(self._forward_events(system=True))
        self.status, self.closed_by = "closed", "system"
        self._publish()
        await self.rec.record(events, cause)

    # -- updates ----------------------------------------------------------------------
    # Each handler checks again under the lock (another update may have changed the forum
    # since its validator ran), records, and only then changes what the forum holds, so
    # a refusal at any point leaves the forum as it was.

    @workflow.update
    async def submit(self, req: SubmitRequest) -> CommandResult:
        with refusals():
            async with self.lock:
                strict = workflow.patched(STRICT_USULAN)
                self._check_submit(req, strict)
                events, ids, entries = [], [], {}
                batch = drafts(req.proposals)
                for draft in batch:
                    # before STRICT_USULAN a client's id became the usulan's
                    pid = new_proposal_id() if strict else draft.proposal_id or new_proposal_id()
                    opd = route_opd(draft.opd, draft.bidang, self.inp.opds)
                    details = draft_details(draft, opd)
                    if self.level is Level.KELURAHAN:
                        details["kelurahan"] = self.inp.unit
                    entries[pid] = Entry(draft.cost, opd, "musrenbang", None, details)
                    payload = {
                        "proposal_id": pid,
                        "receipt": receipt_code(pid),
                        "cycle_id": self.inp.cycle_id,
                        "stage": self.inp.stage,
                        "unit": self.inp.unit,
                        "kind": "musrenbang",
                        "details": details,
                        "proposer": draft.pengusul,
                    }
                    events.append(
                        self.rec.proposal_event(pid, "ProposalSubmitted", payload, req.actor)
                    )
                    ids.append(pid)
                seqs = await self.rec.record(events, _update_key())
                self.book.entries.update(entries)
                self.references.update(
                    (d.client_reference, pid)
                    for d, pid in zip(batch, ids, strict=True)
                    if d.client_reference
                )
                return CommandResult(seqs, ids, [receipt_code(p) for p in ids])

    @submit.validator
    def _validate_submit(self, req: SubmitRequest) -> None:
        with refusals():
            check_texts(req.proposals, "proposals")
            self._check_submit(req)

    def _check_submit(self, req: SubmitRequest, strict: bool = True) -> None:
        self._authorize(req.actor, strict)
        if not self.inp.intake:
            raise Refused(f"usulan are not submitted at the {self.inp.stage} forum")
        if not req.proposals:
            raise Refused("no usulan in the request")
        seen: set[str] = set()
        for n, draft in enumerate(drafts(req.proposals), start=1):
            problem = validate_draft(draft, self.inp.opds)
            if strict:
                problem = problem or self._origin_problem(draft)
            if problem:
                raise Refused(f"usulan {n}: {problem}")
            if not strict:
                continue
            ref = draft.client_reference
            if ref and ref in seen:
                raise Refused(f"usulan {n}: reference {ref} is given twice in this batch")
            if ref and ref in self.references:
                raise Conflict(f"usulan {n}: reference {ref} is already submitted here")
            if ref:
                seen.add(ref)

    @workflow.update
    async def decide(self, req: DecideRequest) -> CommandResult:
        with refusals():
            async with self.lock:
                decisions = self._check_decisions(req, strict=workflow.patched(STRICT_USULAN))
                saved = self.book.snapshot(decisions)
                try:
                    events = [
                        self.rec.proposal_event(pid, etype, {**payload}, req.actor)
                        for pid, etype, payload in self.book.apply(decisions)
                    ]
                    return CommandResult(await self.rec.record(events, _update_key()))
                except BaseException:
                    self.book.restore(saved)
                    raise

    @decide.validator
    def _validate_decide(self, req: DecideRequest) -> None:
        # Texts are checked here only: an accepted update's texts cannot change before
        # its handler runs, and a batch of thousands is walked once.
        with refusals():
            check_texts(req.decisions, "decisions")
            self._check_decisions(req)

    def _check_decisions(self, req: DecideRequest, strict: bool = True) -> list[Decision]:
        self._authorize(req.actor, strict)
        if not req.decisions:
            raise Refused("no decisions in the request")
        try:
            decisions = [Decision(**d) for d in req.decisions]
        except TypeError as exc:
            raise Refused(f"a decision has a field this forum does not know: {exc}") from None
        problems = self.book.check(decisions, frozenset(self.inp.opds), strict)
        if problems:
            raise Refused("; ".join(problems[:20]))
        return decisions

    @workflow.update
    async def close(self, req: CloseRequest) -> CommandResult:
        with refusals():
            async with self.lock:
                self._check_close(req, strict=workflow.patched(STRICT_USULAN))
                ba = plain(req.berita_acara)
                # the signed checkpoint of every event of this forum before its closing
                checkpoint = await self.rec.checkpoint(_update_key(), f"forum {self.id} closing")
                if checkpoint is not None:
                    self._check_close(req)  # the forum may have changed meanwhile
                payload = {"berita_acara": ba, **self._closing_summary()}
                if checkpoint is not None:
                    payload["checkpoint"] = checkpoint
                events = [
                    self.rec.forum_event("ForumClosed", payload, req.actor),
                    *self._forward_events(actor=req.actor),
                ]
                # Closed before the append, so the deadline timers stop in the same step
                # (histories depend on that order); put back if the append is refused.
                before = self.status, self.closed_by, self.perkada
                self.status, self.closed_by = "closed", req.actor.subject
                self.perkada = req.berita_acara.perkada
                try:
                    seqs = await self.rec.record(events, _update_key())
                except BaseException:
                    self.status, self.closed_by, self.perkada = before
                    raise
                self._publish()
                return CommandResult(seqs)

    @close.validator
    def _validate_close(self, req: CloseRequest) -> None:
        with refusals():
            self._check_close(req)

    def _check_close(self, req: CloseRequest, strict: bool = True) -> None:
        self._authorize(req.actor, strict)
        ba = req.berita_acara
        check_texts(plain(ba), "berita_acara")
        if not ba.tempat.strip() or ba.peserta < 1 or not ba.penandatangan:
            raise Refused("the Berita Acara needs a place, attendance and signatories")
        try:
            date.fromisoformat(ba.tanggal)
        except ValueError:
            raise Refused("berita_acara.tanggal must be a date (YYYY-MM-DD)") from None
        if self.inp.next_stage is None and not (ba.perkada and ba.perkada.strip()):
            raise Refused("adopting the RKPD needs the number of the Perkada")
        undecided = self.book.undecided()
        if undecided:
            raise Refused(
                f"{len(undecided)} usulan are still undecided (e.g. {', '.join(undecided[:3])})"
            )

    @workflow.update
    async def extend(self, req: ExtendRequest) -> CommandResult:
        with refusals():
            async with self.lock:
                new = self._check_extend(req)
                payload = {
                    "old_deadline": _iso(self.deadline),
                    "new_deadline": _iso(new),
                    "reason": req.reason,
                }
                seqs = await self.rec.record(
                    [self.rec.forum_event("DeadlineExtended", payload, req.actor)], _update_key()
                )
                self.deadline, self.status = new, "open"
                self._publish()
                return CommandResult(seqs)

    @extend.validator
    def _validate_extend(self, req: ExtendRequest) -> None:
        with refusals():
            self._check_extend(req)

    def _check_extend(self, req: ExtendRequest) -> datetime:
        actor = Actor(
            req.actor.subject, req.actor.role, req.actor.jurisdiction, region=req.actor.region
        )
        if not may_extend(actor, self.level, self.inp.unit, self.inp.city):
            raise Forbidden(f"{req.actor.subject} may not extend this forum's deadline")
        if self.status == "closed":
            raise Conflict(f"the forum {self.id} is closed")
        check_texts({"reason": req.reason, "new_deadline": req.new_deadline})
        if not req.reason.strip():
            raise Refused("an extension needs a reason")
        try:
            new = _parse(req.new_deadline)
        except ValueError:
            raise Refused("new_deadline must be an ISO-8601 timestamp with a zone") from None
        if new <= workflow.now() or new <= self.deadline:
            raise Refused("the new deadline must be later than the current one and than now")
        return new

    @workflow.signal
    def receive(self, rows: list[list[Any]]) -> None:
        """Late arrivals (pokir submitted while this Forum PD is open)."""
        for item in map(Incoming.of, rows):
            self.book.entries.setdefault(item.proposal_id, Entry(item.cost, item.opd, item.kind))

    @workflow.query
    def view(self) -> ForumView:
        return ForumView(
            self.id,
            self.inp.stage,
            self.inp.unit,
            self.status,
            _iso(self.deadline),
            self.escalated_to,
            self.inp.pagu,
            self.book.accepted_total(),
            {pid: e.outcome for pid, e in self.book.entries.items()},
        )

    # -- helpers ----------------------------------------------------------------------

    def _authorize(self, ref: ActorRef, strict: bool = True) -> None:
        if self.status == "closed":
            raise Conflict(f"the forum {self.id} is closed")
        actor = Actor(ref.subject, ref.role, ref.jurisdiction, region=ref.region)
        bappeda = strict and self.bappeda_chairs
        if not may_decide(
            actor, self.level, self.inp.unit, self.inp.city, self.escalated_to, bappeda
        ):
            raise Forbidden(
                f"{ref.subject} ({ref.role}, {ref.jurisdiction}) may not act on {self.id}"
            )

    def _origin_problem(self, draft: ProposalDraft) -> str | None:
        """Where an usulan comes from: its kelurahan, which a forum above the kelurahan
        (tanpa-kelurahan) must be told and which must lie within the forum's unit."""
        if self.level is Level.KELURAHAN:
            if draft.kelurahan not in (None, self.inp.unit):
                return f"kelurahan {draft.kelurahan} is not this forum's ({self.inp.unit})"
            return None
        kel = draft.kelurahan or ""
        if not (KELURAHAN.match(kel) and kel.startswith(f"{self.inp.unit}.")):
            return f"name the kelurahan it comes from (a code under {self.inp.unit})"
        return None

    def _publish(self) -> None:
        search.publish(
            region=self.inp.city,
            cycle=self.inp.cycle_id,
            status=self.status,
            stage=self.inp.stage,
            unit=self.inp.unit,
            deadline=self.deadline,
        )

    def _opened_payload(self) -> dict[str, Any]:
        return {
            "forum_id": self.id,
            "cycle_id": self.inp.cycle_id,
            "stage": self.inp.stage,
            "unit": self.inp.unit,
            "deadline": _iso(self.deadline),
            "pagu": self.inp.pagu,
            "incoming": [row[0] for row in self.inp.incoming],
        }

    def _closing_summary(self) -> dict[str, Any]:
        ranked = sorted(self.book.forwarded(), key=lambda p: (self._rank(p), p))
        return {
            "forwarded": ranked,
            "accepted_total": self.book.accepted_total(),
            "held": len(self.book.entries),
        }

    def _rank(self, pid: str) -> int:
        rank = self.book.entries[pid].details.get("rank")
        return int(rank) if isinstance(rank, int) else 1_000_000

    def _forward_events(self, actor: ActorRef | None = None, system: bool = False) -> list[Any]:
        if self.inp.next_stage is None or self.inp.next_level is None:
            return []
        events = []
        for pid in self.book.forwarded():
            to_unit = route(
                Level(self.inp.next_level), self.inp.unit, self.book.entries[pid].opd, self.inp.city
            )
            payload = {
                "from_stage": self.inp.stage,
                "from_unit": self.inp.unit,
                "to_stage": self.inp.next_stage,
                "to_unit": to_unit,
            }
            events.append(
                self.rec.proposal_event(pid, "ProposalForwarded", payload, actor, system=system)
            )
        return events


# Revisions pass the usulan validator and carry their reason; decisions recorded before
# that rule replay without it.
STRICT_USULAN = "strict-usulan-rules"
# The final stage's forum is never closed by a timer (only a person adopts the RKPD).
FINAL_STAGE_WAITS = "final-stage-waits"
# A timer whose record the log refused tries again after this long.
TIMER_RETRY = timedelta(hours=1)


def _update_key() -> str:
    info = workflow.current_update_info()
    if info is None:
        raise ApplicationError("no update in progress")
    return f"update:{info.id}"


def _parse(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError("timestamp without a zone")
    return moment


def _iso(moment: datetime) -> str:
    return moment.isoformat()
