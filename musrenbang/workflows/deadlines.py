"""What a forum holds, and its deadline timers: reminders before the deadline, escalation
at it, and after the grace period an auto-close (or, for a forum only a person may close,
a reminder a day). Each is recorded with the system as the actor. ForumWorkflow
(forum.py) adds the updates people send."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from musrenbang.domain.access import escalation_target
    from musrenbang.domain.calendar import WIB, add_working_days, end_of_day, holidays_from
    from musrenbang.domain.catalogue import EventType as ET
    from musrenbang.domain.catalogue import forum_id
    from musrenbang.domain.decisions import Entry, ForumBook, allowed_kinds
    from musrenbang.domain.opd import routes_before_profiles
    from musrenbang.domain.routing import route
    from musrenbang.domain.stages import STAGES, Level
    from musrenbang.workflows import search
    from musrenbang.workflows.contracts import ActorRef, ForumInput, Incoming, NotifyInput
    from musrenbang.workflows.recording import Recorder
    from musrenbang.workflows.refusals import refusal_of

# The final stage's forum is never closed by a timer (only a person adopts the RKPD).
FINAL_STAGE_WAITS = "final-stage-waits"
# A timer whose record the log refused tries again after this long.
TIMER_RETRY = timedelta(hours=1)

Sent = set[tuple[str, int]]
Timer = Callable[[Sent], Awaitable[NotifyInput | None]]


class ForumState:
    """One forum's state and timers (the base of ForumWorkflow)."""

    def __init__(self, inp: ForumInput) -> None:
        self.inp = inp
        self.id = forum_id(inp.cycle_id, inp.stage, inp.unit)
        self.level = Level(inp.level)
        self.final = inp.next_stage is None
        catalogue = inp.sub_kegiatan
        self.book = ForumBook(
            inp.stage,
            inp.pagu,
            allowed_kinds(self.level, self.final),
            reason_codes=frozenset(inp.reason_codes),
            catalogue=catalogue,
        )
        for row in inp.incoming:
            item = Incoming.of(row)
            self.book.entries[item.proposal_id] = Entry(item.cost, item.opd, item.kind)
        self.routes = inp.routes or routes_before_profiles(inp.opds)
        self.deadline = parse_moment(inp.config.deadline)
        self.status = "open"
        self.escalated_to: str | None = None
        self.closed_by: str | None = None
        self.perkada: str | None = None
        self.references: dict[str, str] = {}  # client reference -> usulan id
        chair = inp.chair if inp.chair is not None else _built_in_chair(inp.stage)
        self.bappeda_chairs = chair == "Bappeda"
        self.lock = asyncio.Lock()
        self.rec = Recorder(inp.city, inp.cycle_id, self.id, inp.stage, inp.unit)

    # -- what the forum records of itself --------------------------------------------

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
        payload = {
            "forum_id": self.id,
            "cycle_id": self.inp.cycle_id,
            "stage": self.inp.stage,
            "unit": self.inp.unit,
            "deadline": self.deadline.isoformat(),
            "pagu": self.inp.pagu,
            "incoming": [row[0] for row in self.inp.incoming],
        }
        if self.inp.unit_name is not None:
            payload["unit_name"] = self.inp.unit_name
        if self.inp.chair is not None:
            payload["chaired_by"] = self.inp.chair
        return payload

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
                self.rec.proposal_event(pid, ET.PROPOSAL_FORWARDED, payload, actor, system=system)
            )
        return events

    # -- deadlines --------------------------------------------------------------------

    async def _watch_deadline(self) -> None:
        """Reminders, then escalation at the deadline, then auto-close after the grace
        period. An extension moves the deadline and starts the sequence again."""
        sent: Sent = set()
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

    async def _run_timer(self, action: Timer, sent: Sent) -> tuple[NotifyInput | None, bool]:
        """Runs a reminder, escalation or auto-close. If the log refuses the system's own
        record for good, the forum is put back as it was and the timer tries again later."""
        before = (self.status, self.escalated_to, self.closed_by, set(sent))
        outcomes = {pid: e.outcome for pid, e in self.book.entries.items()}
        try:
            return await action(sent), False
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

    def _next_due(self, sent: Sent) -> tuple[datetime, Timer]:
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
            return (
                self.deadline + every * (done + 1),
                lambda s, n=done + 1: self._overdue(s, n),
            )
        grace_end = end_of_day(
            add_working_days(
                self.deadline.astimezone(WIB).date(),
                self.inp.config.grace_working_days,
                holidays_from(self.inp.config.holidays),
            )
        )
        return grace_end, self._auto_close

    async def _remind(self, sent: Sent, hours: int) -> NotifyInput:
        sent.add((self.deadline.isoformat(), hours))
        undecided = len(self.book.undecided())
        deadline = self.deadline.isoformat()
        payload = {"deadline": deadline, "hours_left": hours, "undecided": undecided}
        message = (
            f"{self.inp.stage} {self.inp.unit}: tenggat {hours} jam lagi,"
            f" {undecided} usulan belum diputuskan"
        )
        return await self._reminded("reminder", payload, f"reminder:{deadline}:{hours}", message)

    async def _reminded(
        self, kind: str, payload: dict[str, Any], cause: str, message: str
    ) -> NotifyInput:
        """Records one DeadlineReminderSent; the notice goes out once the lock is let go."""
        await self.rec.record(
            [self.rec.forum_event(ET.DEADLINE_REMINDER_SENT, payload, system=True)], cause
        )
        return self.rec.notice(kind, message, payload, cause)

    def _waits_for_a_person(self) -> bool:
        """Past its deadline, does this forum wait (escalated and reminded) for a person to
        close it, rather than close itself? The cycle's plan says so per stage; the final
        stage always waits (histories from before that rule replay as they ran)."""
        if not self.inp.config.timer_may_close:
            return True
        return self.final and workflow.patched(FINAL_STAGE_WAITS)

    async def _overdue(self, sent: Sent, n: int) -> NotifyInput:
        """The n-th reminder after the deadline of a forum only a person may close."""
        sent.add((f"overdue:{self.deadline.isoformat()}", n))
        hours = n * self.inp.config.overdue_reminder_hours
        waiting = "penutupan oleh pimpinan forum"
        if self.final:
            waiting = "penetapan RKPD dengan nomor Perkada"
        payload = {
            "deadline": self.deadline.isoformat(),
            "hours_overdue": hours,
            "undecided": len(self.book.undecided()),
            "escalated_to": self.escalated_to,
            "waiting_for": waiting,
        }
        cause = f"overdue:{self.deadline.isoformat()}:{n}"
        message = (
            f"{self.inp.stage} {self.inp.unit}: {hours} jam melewati tenggat; menunggu {waiting}"
        )
        return await self._reminded("overdue", payload, cause, message)

    async def _escalate(self, sent: Sent) -> NotifyInput:
        self.status = "overdue"
        self.escalated_to = escalation_target(self.level, self.inp.unit, self.inp.city)
        self._publish()
        deadline = self.deadline.isoformat()
        key = f"deadline:{deadline}"
        missed = {"deadline": deadline, "undecided": len(self.book.undecided())}
        raised = {"to": self.escalated_to, "deadline": deadline}
        if self._waits_for_a_person():  # only a person closes it: the region's top office
            raised["office"] = "Sekretaris Daerah" if self.final else "admin"
        await self.rec.record(
            [
                self.rec.forum_event(ET.DEADLINE_MISSED, missed, system=True),
                self.rec.forum_event(ET.ESCALATION_RAISED, raised, system=True),
            ],
            key,
        )
        return self.rec.notice(
            "escalation",
            f"{self.inp.stage} {self.inp.unit} melewati tenggat; dieskalasi ke {self.escalated_to}",
            raised,
            key,
        )

    async def _auto_close(self, sent: Sent) -> None:
        policy = self.inp.config.auto_close_policy
        events = [
            self.rec.proposal_event(pid, etype, payload, system=True)
            for pid, etype, payload in self.book.auto_close(policy)
        ]
        deadline = self.deadline.isoformat()
        payload = {"policy": policy, "deadline": deadline, **self.book.closing_summary()}
        cause = f"autoclose:{deadline}"
        checkpoint = await self.rec.checkpoint(cause, f"forum {self.id} closing")
        if checkpoint is not None:
            payload["checkpoint"] = checkpoint
        document = await self.rec.berita_acara(payload)
        if document is not None:
            payload["berita_acara_pdf"] = document
        events.append(self.rec.forum_event(ET.FORUM_AUTO_CLOSED, payload, system=True))
        events.extend(self._forward_events(system=True))
        self.status, self.closed_by = "closed", "system"
        self._publish()
        await self.rec.record(events, cause)


def _built_in_chair(stage: str) -> str | None:
    """Who chairs a built-in stage (forums of cycles planned before profiles)."""
    found = STAGES.get(stage)
    return found.chaired_by if found is not None else None


def parse_moment(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError("timestamp without a zone")
    return moment
