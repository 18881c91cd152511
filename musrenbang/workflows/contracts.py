"""What goes in and out of the workflows: inputs, update requests and results.

Plain dataclasses (the Temporal JSON converter carries them), shared with the API. Each
workflow and activity takes one dataclass so fields can be added later.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from musrenbang.domain.decisions import Decision
from musrenbang.domain.intake import ProposalDraft

__all__ = ["ProposalDraft"]  # a new usulan's fields, as clients build them

# A decision as a client builds one (the API and the tests); on the wire it is a dict.
DecisionRequest = Decision


@dataclass
class ActorRef:
    subject: str
    role: str
    jurisdiction: str | None = None
    fraksi: str | None = None
    request_id: str | None = None  # the API request that caused this, for correlation
    region: str | None = None  # the kota/kabupaten the token belongs to (None: all, admin)
    regions: list[str] | None = None  # an auditor's: the regions it reads, ["*"] for all


@dataclass
class Incoming:
    """An usulan arriving at a forum: its id and what the forum's rules need of it.

    On the wire (workflow inputs and results) it travels as a plain list: thousands of
    them pass between the forums of a large city, and decoding a dataclass per usulan
    would cost more than the stage itself."""

    proposal_id: str
    cost: int
    opd: str | None
    kind: str = "musrenbang"

    def wire(self) -> list[Any]:
        return [self.proposal_id, self.cost, self.opd, self.kind]

    @classmethod
    def of(cls, row: list[Any]) -> Incoming:
        return cls(*row[:4])  # rows from before carried a fifth, unused, field


@dataclass
class ForumConfig:
    """Deadline policy of a forum."""

    deadline: str  # ISO-8601 UTC
    reminder_hours: list[int] = field(default_factory=lambda: [72, 24])
    grace_working_days: int = 3
    holidays: list[str] = field(default_factory=list)
    auto_close_policy: str = "not_deliberated"  # or "forward"
    # False: past the deadline it stays open, escalated and reminded, until a person closes
    # it (the final stage always; decided when the cycle is planned).
    timer_may_close: bool = True
    overdue_reminder_hours: int = 24


@dataclass
class ForumInput:
    cycle_id: str
    city: str
    stage: str
    level: str
    unit: str
    next_stage: str | None
    next_level: str | None
    config: ForumConfig
    pagu: int | None = None
    intake: bool = False
    incoming: list[list[Any]] = field(default_factory=list)  # Incoming.wire() rows
    opds: list[str] = field(default_factory=list)
    # From the region's profile (empty or None: a forum of a cycle planned before profiles).
    routes: dict[str, str] = field(default_factory=dict)  # bidang -> OPD
    reason_codes: list[str] = field(default_factory=list)
    # The nomenclature this forum assigns sub-kegiatan from ({}: it assigns none here).
    sub_kegiatan: dict[str, str] | None = None
    chair: str | None = None
    unit_name: str | None = None
    report_to: str | None = None  # the cycle's workflow, signalled with the result


@dataclass
class SubmitRequest:
    actor: ActorRef
    proposals: list[dict[str, Any]]  # ProposalDraft fields; plain dicts decode fast


@dataclass
class DecideRequest:
    actor: ActorRef
    decisions: list[dict[str, Any]]  # DecisionRequest fields; plain dicts decode fast


@dataclass
class BeritaAcara:
    tanggal: str
    tempat: str
    peserta: int
    penandatangan: list[str]
    catatan: str | None = None
    perkada: str | None = None  # at the rkpd stage: the Perkada that adopts the RKPD


@dataclass
class CloseRequest:
    actor: ActorRef
    berita_acara: BeritaAcara


@dataclass
class ExtendRequest:
    actor: ActorRef
    new_deadline: str
    reason: str


@dataclass
class CommandResult:
    seqs: list[int]
    proposal_ids: list[str] = field(default_factory=list)
    receipt_codes: list[str] = field(default_factory=list)  # beside proposal_ids, in order


@dataclass
class ForumResult:
    forum_id: str
    stage: str
    unit: str
    closed_by: str
    forwarded: list[list[Any]]  # Incoming.wire() rows
    perkada: str | None = None


@dataclass
class ForumView:
    forum_id: str
    stage: str
    unit: str
    status: str
    deadline: str
    escalated_to: str | None
    pagu: int | None
    accepted_total: int
    proposals: dict[str, str | None]


@dataclass
class CycleInput:
    cycle_id: str
    region: str
    region_name: str
    year: int
    template: str
    stages: list[str]
    units: dict[str, list[str]]  # kelurahan: [...], kecamatan: [...]
    opds: list[str]
    deadlines: dict[str, str]  # stage slug -> ISO-8601 UTC (already a working day)
    pokir_deadline: str
    holidays: list[str] = field(default_factory=list)
    pagu: dict[str, int] = field(default_factory=dict)  # stage slug -> pagu per forum
    reminder_hours: list[int] = field(default_factory=lambda: [72, 24])
    grace_working_days: int = 3
    auto_close_policy: str = "not_deliberated"
    actor: ActorRef | None = None
    timer_closes: dict[str, bool] = field(default_factory=dict)  # stage -> a timer may close
    # From the region's profile, resolved when the cycle was planned (empty: planned before
    # profiles, and replayed as it ran then).
    stage_defs: list[dict[str, Any]] = field(default_factory=list)  # slug, name, level, chair
    pokir_stage: str | None = "forum-pd"
    routes: dict[str, str] = field(default_factory=dict)  # bidang -> OPD
    pagu_units: dict[str, dict[str, int]] = field(default_factory=dict)  # stage -> unit -> pagu
    reason_codes: list[str] = field(default_factory=list)
    sub_kegiatan: dict[str, str] = field(default_factory=dict)  # code -> name
    names: dict[str, str] = field(default_factory=dict)  # kelurahan, kecamatan, OPD -> name
    profile: dict[str, Any] = field(default_factory=dict)  # what CycleOpened records of it
    # Continue-as-new past this many history events (0: CONTINUE_AFTER in cycle.py; sooner
    # when Temporal suggests it), and the state a run carries into the next.
    continue_after: int = 0
    carried: dict[str, Any] | None = None


@dataclass
class PokirRequest:
    actor: ActorRef
    dapil: str
    proposals: list[dict[str, Any]]  # ProposalDraft fields


@dataclass
class CycleResult:
    cycle_id: str
    rkpd_items: list[str]
    total_cost: int
    perkada: str | None


@dataclass
class CycleView:
    cycle_id: str
    status: str
    open_forums: list[str]
    closed_forums: list[str]
    pokir_open: bool
    rkpd_items: int


@dataclass
class EventSpec:
    """An event a workflow asks to record (the activity turns it into a log entry)."""

    stream: str
    type: str
    payload: dict[str, Any]
    actor: dict[str, Any]
    occurred_at: str
    idempotency_key: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class RecordInput:
    log_id: str
    events: list[EventSpec]


@dataclass
class NotifyInput:
    log_id: str
    forum_id: str
    cycle_id: str
    kind: str  # reminder | escalation
    message: str
    details: dict[str, Any]
    idempotency_key: str
    occurred_at: str


@dataclass
class CheckpointInput:
    """A signed checkpoint of a log, asked for by a cause (`key`, derived from the
    workflow and the update or step that asks): the same key always answers with the
    checkpoint first issued for it."""

    log_id: str
    key: str
    reason: str
    occurred_at: str


@dataclass
class DocumentInput:
    """A closing forum's Berita Acara to render from the log (its closing record's payload
    given, as it is about to be appended)."""

    log_id: str
    forum_id: str
    closing: dict[str, Any]
