"""Answers of the API (pydantic), one model per shape, so the OpenAPI document describes
the bodies the routes really send, and the errors each route can give.

Two kinds of model. A closed one (`Closed`) lists every key its route sends and nothing
else. A read model's state (`Open`: a cycle, a forum, an usulan) is folded from the log
by domain/records.py and may carry keys an older or newer event put there: the known keys
are typed, the rest pass through as they are. Keys that only some states have are
optional, and their routes leave out what a state does not hold (exclude unset), so no
answer gains a key it did not have."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

JSONObject = dict[str, Any]


class Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorBody(Closed):
    """Every refusal and failure: its kind and a sentence for a person."""

    error: str = Field(
        description="the kind: ValidationError, Refused, IdempotencyKeyReused, Unauthorized,"
        " Forbidden, NotFound, Conflict, Unavailable, ...",
        examples=["NotFound"],
    )
    detail: str = Field(description="what went wrong, as a sentence", examples=["..."])


_MEANING = {
    400: "the body is not JSON",
    401: "no bearer token, or one that is not valid",
    403: "the token's role or region may not do this",
    404: "no such cycle, forum, usulan or log (or not one this token reads)",
    409: "a conflict: the forum is closed, the id is taken, the log has no checkpoint yet",
    422: "a malformed request (ValidationError) or one a rule refuses (Refused,"
    " IdempotencyKeyReused)",
    503: "the database or the workflow engine did not answer; send it again",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The error answers a route can give, for its `responses=`."""
    return {s: {"model": ErrorBody, "description": _MEANING[s]} for s in statuses}


# Health and commands


class ServiceCheck(Closed):
    ok: bool
    ms: float | None = Field(default=None, description="how long it took (when ok)")
    error: str | None = Field(default=None, description="why not (when not ok)")


class HealthReport(Closed):
    status: Literal["ok", "unavailable"]
    version: str
    postgres: ServiceCheck
    temporal: ServiceCheck
    detail: str | None = Field(default=None, description="which did not answer (on 503)")


class CommandAnswer(Closed):
    """A command's events are durable: their seqs, and the usulan it created."""

    seqs: list[int]
    proposal_ids: list[str]
    receipt_codes: list[str] = Field(description="beside proposal_ids, in order")


class CycleCreated(Closed):
    cycle_id: str
    region: str
    name: str
    stages: list[str]
    deadlines: dict[str, str] = Field(description="stage slug to ISO-8601 UTC")
    pokir_deadline: str
    kelurahan: int = Field(description="how many kelurahan forums the cycle opens")
    kecamatan: int
    opds: list[str] = Field(description="the OPDs of its profile, by slug")
    profile: str = Field(description="where its profile came from: shipped:<region>, request, ...")


# Read models


class ForumCount(Closed):
    stage: str
    status: str
    count: int


class RkpdAdoption(Open):
    perkada: str | None = None
    items: list[str] | None = None
    total_cost: int | None = None


class CycleView(Open):
    cycle_id: str
    region: str | None
    name: str | None = Field(default=None, description="the kota/kabupaten's name")
    names: dict[str, str] | None = Field(
        default=None, description="its kelurahan, kecamatan and OPDs: code or slug to name"
    )
    profile: JSONObject | None = Field(default=None, description="the profile it was planned with")
    stage_defs: list[JSONObject] | None = None
    year: int | None
    template: str | None
    stages: list[str]
    status: str
    current_stage: str | None = None
    opened_stages: list[str] | None = None
    rkpd: RkpdAdoption | None = None
    last_event: str
    last_seq: int
    forums: list[ForumCount]


class HeldProposal(Closed):
    proposal_id: str
    status: str
    masalah: str | None
    cost: int | None
    kelurahan: str | None = None
    kelurahan_name: str | None = None
    opd: str | None = None
    opd_name: str | None = None


class ForumView(Open):
    forum_id: str
    cycle_id: str | None
    stage: str | None
    unit: str | None
    unit_name: str | None = Field(
        default=None, description="the kelurahan's, kecamatan's or OPD's name"
    )
    chaired_by: str | None = None
    deadline: str | None
    pagu: int | None
    status: str
    escalated_to: str | None = None
    closed_by: str | None = None
    berita_acara: JSONObject | None = None
    last_event: str
    last_seq: int
    proposals: list[HeldProposal]


class ForumListing(Closed):
    forum_id: str
    stage: str
    unit: str
    unit_name: str | None
    status: str = Field(description="open, overdue, closed, stuck (or escalated)")
    deadline: str | None
    escalated_to: str | None
    escalated_to_name: str | None
    closed_by: str | None
    workflow_status: str | None = Field(description="how a stuck forum's workflow ended")
    last_seq: int


class CycleSummary(Closed):
    cycle_id: str
    region: str
    name: str | None
    year: int | None
    status: str
    current_stage: str | None
    last_seq: int


class CycleList(Closed):
    cycles: list[CycleSummary]


class ProposalListing(Closed):
    proposal_id: str
    receipt: str | None
    kind: str | None
    status: str
    stage: str | None
    unit: str | None
    masalah: str | None
    bidang: str | None
    cost: int | None
    kelurahan: str | None
    kelurahan_name: str | None
    kecamatan: str | None
    kecamatan_name: str | None
    opd_name: str | None


class ProposalList(Closed):
    cycle_id: str
    proposals: list[ProposalListing]
    next_after: str | None = Field(description="pass as `after` for the next page; null: no more")


class OpenData(Closed):
    """A cycle's usulan as open data (its JSON Schema: GET /schemas/open-data.json)."""

    schema_: str = Field(alias="schema", serialization_alias="schema")
    cycle_id: str
    region: str | None
    region_name: str | None
    year: int | None
    status: str | None
    generated_from_seq: int | None
    usulan: list[JSONObject]


class ForumList(Closed):
    cycle_id: str
    forums: list[ForumListing]
    counts: dict[str, int] = Field(description="how many forums have each status")
    workflows_checked: bool = Field(description="false: Temporal could not say which are stuck")


class Place(Open):
    stage: str | None = None
    unit: str | None = None


class Reason(Open):
    code: str | None = None
    text: str | None = None


class Priority(Open):
    rank: int | None = None
    scores: dict[str, int] | None = None


class PokirProposer(Open):
    member: str | None = None
    fraksi: str | None = None
    dapil: str | None = None


class ProposalState(Open):
    """An usulan as it stands; `details` holds what was proposed (masalah, gagasan, cost,
    bidang, volume, satuan, rt, rw, ...) as revised since."""

    proposal_id: str
    receipt: str | None = None
    cycle_id: str | None = None
    kind: str | None = None
    stage: str | None = None
    unit: str | None = None
    names: dict[str, str | None] | None = Field(
        default=None,
        description="names beside its codes: kelurahan_name, kecamatan, kecamatan_name,"
        " opd_name, unit_name (the forum it is at)",
    )
    origin: Place | None = None
    status: str
    details: JSONObject = Field(default_factory=dict)
    proposer: str | PokirProposer | None = None
    revisions: int | None = None
    reason: Reason | None = None
    merged_into: str | None = None
    merged_from: list[str] | None = None
    priority: Priority | None = None
    path: list[Place] | None = None
    last_event: str | None = None


# The log


class Actor(Open):
    """Who acted: a person (subject, role, jurisdiction) or the system and its workflow."""

    subject: str | None = None
    role: str | None = None
    jurisdiction: str | None = None
    fraksi: str | None = None
    system: bool | None = None
    workflow: str | None = None


class HistoryEntry(Closed):
    seq: int
    log_id: str
    type: str
    stage: str | None
    unit: str | None
    actor: Actor
    reason: str | None
    reason_code: str | None
    payload: JSONObject
    occurred_at: str
    recorded_at: str
    hash: str = Field(description="hex")
    prev_hash: str


class Lineage(Closed):
    merged_into: str | None
    absorbed: list[str]


class History(Closed):
    proposal_id: str
    events: list[HistoryEntry]
    lineage: Lineage
    related: dict[str, list[HistoryEntry]] = Field(
        description="the history of each usulan in the lineage, by id"
    )


class LogEvent(Closed):
    log_id: str
    seq: int
    event_id: str
    stream: str
    version: int
    type: str
    schema_version: int
    payload: JSONObject
    actor: Actor
    metadata: JSONObject
    occurred_at: str
    recorded_at: str
    prev_hash: str = Field(description="hex")
    hash: str


class EventsPage(Closed):
    log_id: str
    events: list[LogEvent]
    next_after: int = Field(description="pass it as `after` for the next page")


class AuditVerification(Closed):
    ok: bool
    checked: int
    first_bad_seq: int | None
    log_id: str | None
    problem: str | None
    tree_checked: int
    read_models_checked: int
    first_bad_record: str | None = Field(description='e.g. "proposal:<id>"')


# Auditors' reports


class StageExit(Closed):
    count: int
    reasons: dict[str, int] = Field(description="reason code (or reason) to how many")


class FunnelStage(Closed):
    stage: str
    entered: int
    forwarded: int
    left: dict[str, StageExit] = Field(
        description="rejected, deferred, merged, not_accommodated, not_deliberated"
    )


class Funnel(Closed):
    cycle_id: str
    stages: list[FunnelStage]


class WithoutAncestor(Closed):
    proposal_id: str
    stage: str | None


class RkpdUntraced(Closed):
    proposal_id: str
    first_event: str | None = Field(description="<type>:<stage> of its first event")


class Stranded(Closed):
    proposal_id: str
    stage: str | None
    unit: str | None


class SubmittedAfterEscalation(Closed):
    proposal_id: str
    stage: str | None
    unit: str | None
    seq: int
    escalated_seq: int


class Duplicate(Closed):
    kelurahan: str | None
    masalah: str | None
    bidang: str | None
    proposal_ids: list[str]


class Findings(Closed):
    cycle_id: str
    without_ancestor: list[WithoutAncestor]
    rkpd_untraced: list[RkpdUntraced]
    stranded: list[Stranded]
    submitted_after_escalation: list[SubmittedAfterEscalation]
    duplicates: list[Duplicate]
    ok: bool


# The transparency log


class LogSummary(Closed):
    log_id: str
    size: int
    checkpoint_size: int | None


class LogList(Closed):
    logs: list[LogSummary]


class InclusionProof(Closed):
    log_id: str
    seq: int
    leaf_index: int
    size: int
    leaf_hash: str = Field(description="base64")
    root: str
    proof: list[str] = Field(description="RFC 9162 inclusion proof, base64 hashes")


class ConsistencyProof(Closed):
    log_id: str
    from_: int = Field(alias="from")
    to: int
    proof: list[str] = Field(description="RFC 9162 consistency proof, base64 hashes")


class EvidenceRecord(Closed):
    seq: int
    leaf_index: int
    stream: str
    version: int
    recorded_at: str
    content: str = Field(description="the event's RFC 8785 canonical JSON")
    prev_hash: str = Field(description="base64")
    hash: str
    inclusion_proof: list[str]


class EvidenceBundle(Closed):
    format: str = Field(examples=["musrenbang-evidence/1"])
    proposal_id: str
    log_id: str
    checkpoint: str = Field(description="the signed note the records are proven against")
    streams: dict[str, int] = Field(description="each stream to how many of its events")
    records: list[EvidenceRecord]
    uncovered: list[int] = Field(description="seqs recorded after the checkpoint")


def text_body(media_type: str, description: str, **schema: Any) -> dict[int | str, Any]:
    """A 200 whose body is not JSON."""
    return {
        200: {
            "description": description,
            "content": {media_type: {"schema": {"type": "string", **schema}}},
        }
    }
