"""ForumWorkflow: one forum (a Musrenbang Kelurahan, Kecamatan, Forum PD, Kota, or the
Penetapan RKPD), from opening to its Berita Acara.

It holds the usulan under deliberation and is their only writer while it holds them.
Updates carry validators, so a refused request leaves no trace in history and writes
nothing. Timers send reminders before the deadline, escalate at it, and auto-close after
the grace period; each is recorded with the system as the actor.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from musrenbang.domain.access import Actor, may_decide, may_extend
    from musrenbang.domain.catalogue import EventType as ET
    from musrenbang.domain.decisions import (
        EVENT_OF,
        FORWARDING,
        NEEDS_REASON,
        Decision,
        Entry,
        Kind,
    )
    from musrenbang.domain.errors import Conflict, Forbidden, Refused
    from musrenbang.domain.intake import check_batch, draft_details, drafts
    from musrenbang.domain.receipts import receipt_code
    from musrenbang.domain.routing import route_opd
    from musrenbang.domain.stages import Level
    from musrenbang.domain.text import check_texts
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
        SubmitRequest,
    )
    from musrenbang.workflows.deadlines import ForumState, parse_moment
    from musrenbang.workflows.recording import new_proposal_id, plain
    from musrenbang.workflows.refusals import refusals


@workflow.defn
class ForumWorkflow(ForumState):
    """One forum of one stage for one unit (a kelurahan, kecamatan, OPD or the city)."""

    @workflow.init
    def __init__(self, inp: ForumInput) -> None:
        super().__init__(inp)

    @workflow.run
    async def run(self, inp: ForumInput) -> ForumResult:
        self._publish()
        async with self.lock:
            await self.rec.record(
                [self.rec.forum_event(ET.FORUM_OPENED, self._opened_payload())], "opened"
            )
        while True:
            await self._watch_deadline()
            await workflow.wait_condition(workflow.all_handlers_finished)
            if self.status == "closed":  # a close refused after it stopped the timers
                break  # is put back: then the timers run again
        # covering the closing record itself and the usulan it forwards
        await self.rec.checkpoint("closed", f"forum {self.id} closed")
        forwarded = [Incoming(*row).wire() for row in self.book.forwarded_rows()]
        result = ForumResult(
            self.id, inp.stage, inp.unit, self.closed_by or "", forwarded, self.perkada
        )
        if inp.report_to is not None:  # the cycle may have continued as new: it is told
            try:
                await workflow.get_external_workflow_handle(inp.report_to).signal(
                    "forum_closed", result
                )
            except FailureError:  # the cycle is gone (terminated): the forum still ends
                workflow.logger.error("forum.report_undelivered", extra={"cycle": inp.report_to})
        return result

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
                    opd = route_opd(draft.opd, draft.bidang, self.routes)
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
                        self.rec.proposal_event(pid, ET.PROPOSAL_SUBMITTED, payload, req.actor)
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
        # before STRICT_USULAN: the fields only, neither origin nor references
        origin = (self.level, self.inp.unit) if strict else None
        known = self.references if strict else None
        check_batch(drafts(req.proposals), self.inp.opds, self.routes, known, origin=origin)

    @workflow.update
    async def decide(self, req: DecideRequest) -> CommandResult:
        with refusals():
            async with self.lock:
                decisions = self._check_decisions(req, strict=workflow.patched(STRICT_USULAN))
                saved = self.book.snapshot(decisions)
                try:
                    decided = self.book.apply(decisions)
                    events = [
                        self.rec.proposal_event(pid, etype, {**payload}, req.actor)
                        for pid, etype, payload in decided
                    ]
                    result = CommandResult(await self.rec.record(events, _update_key()))
                except BaseException:
                    self.book.restore(saved)
                    raise
            if workflow.patched(NOTIFY_PROPOSERS):  # delivered by a workflow of its own
                notice = self._proposers_notice(decided)
                if notice is not None:
                    await self.rec.send(notice)
            return result

    def _proposers_notice(self, decided: list[tuple[str, str, dict[str, Any]]]) -> Any:
        """One notice for the batch: each usulan's outcome and reason, for the proposers
        who left a contact (the delivery looks them up; none is held here)."""
        outcomes = [
            {
                "proposal_id": pid,
                "receipt": receipt_code(pid),
                "outcome": etype,
                "reason": payload.get("reason"),
                "stage": self.inp.stage,
                "unit": self.inp.unit,
            }
            for pid, etype, payload in decided
            if etype in OUTCOMES and "absorbed" not in payload
        ]
        if not outcomes:
            return None
        return self.rec.notice(
            "proposer",
            f"{len(outcomes)} usulan diputuskan di {self.inp.stage} {self.inp.unit}",
            {"decisions": outcomes},
            f"{_update_key()}:proposers",
        )

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
                payload = {"berita_acara": ba, **self.book.closing_summary()}
                if checkpoint is not None:
                    payload["checkpoint"] = checkpoint
                document = await self.rec.berita_acara(payload)
                if document is not None:  # its PDF's SHA-256, in the record it anchors
                    self._check_close(req)  # the forum may have changed meanwhile
                    payload["berita_acara_pdf"] = document
                events = [
                    self.rec.forum_event(ET.FORUM_CLOSED, payload, req.actor),
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
                    "old_deadline": self.deadline.isoformat(),
                    "new_deadline": new.isoformat(),
                    "reason": req.reason,
                }
                seqs = await self.rec.record(
                    [self.rec.forum_event(ET.DEADLINE_EXTENDED, payload, req.actor)], _update_key()
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
            new = parse_moment(req.new_deadline)
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
            self.deadline.isoformat(),
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


# Proposers who left a contact are told their usulan's outcome and its reason.
NOTIFY_PROPOSERS = "notify-proposers"
OUTCOMES = frozenset(EVENT_OF[k] for k in FORWARDING | NEEDS_REASON | {Kind.MERGE})
# Revisions pass the usulan validator and carry their reason; decisions recorded before
# that rule replay without it.
STRICT_USULAN = "strict-usulan-rules"


def _update_key() -> str:
    info = workflow.current_update_info()
    if info is None:
        raise ApplicationError("no update in progress")
    return f"update:{info.id}"
