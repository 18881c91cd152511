"""Decisions a forum takes on its usulan, the rules they must pass, and the events they
become. Pure: the forum workflow keeps a `ForumBook` and asks it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from lokal import format_rupiah

from musrenbang.domain.catalogue import EventType as ET
from musrenbang.domain.stages import Level
from musrenbang.domain.usulan import SUB_KEGIATAN, changes_problem

# The official kecamatan criteria (Permendagri 86/2017).
CRITERIA = ("rkpd", "spm", "hak-dasar", "lintas-kecamatan", "lainnya")


class Kind(StrEnum):
    ACCEPT = "accept"
    REVISE = "revise"
    REJECT = "reject"
    DEFER = "defer"
    MERGE = "merge"
    PRIORITIZE = "prioritize"
    ASSIGN = "assign"
    INCLUDE = "include"
    NOT_ACCOMMODATED = "not_accommodated"


EVENT_OF = {
    Kind.ACCEPT: ET.PROPOSAL_ACCEPTED,
    Kind.REVISE: ET.PROPOSAL_REVISED,
    Kind.REJECT: ET.PROPOSAL_REJECTED,
    Kind.DEFER: ET.PROPOSAL_DEFERRED,
    Kind.MERGE: ET.PROPOSAL_MERGED,
    Kind.PRIORITIZE: ET.PROPOSAL_PRIORITIZED,
    Kind.ASSIGN: ET.PROPOSAL_ASSIGNED,
    Kind.INCLUDE: ET.PROPOSAL_INCLUDED,
    Kind.NOT_ACCOMMODATED: ET.PROPOSAL_NOT_ACCOMMODATED,
}
FORWARDING = {Kind.ACCEPT, Kind.REVISE, Kind.INCLUDE}
NEEDS_REASON = {Kind.REJECT, Kind.DEFER, Kind.NOT_ACCOMMODATED}
ADOPTING = frozenset({Kind.INCLUDE, Kind.NOT_ACCOMMODATED, Kind.DEFER})
AT_OPD = frozenset(Kind) - {Kind.INCLUDE, Kind.NOT_ACCOMMODATED}
AT_CITY = frozenset(Kind) - {Kind.ASSIGN}
ELSEWHERE = frozenset(Kind) - {Kind.ASSIGN, Kind.INCLUDE, Kind.NOT_ACCOMMODATED}
REVISABLE = ("masalah", "gagasan", "volume", "satuan", "cost", "opd", "sub_kegiatan", "alamat")
AUTO_CLOSE_REASON = "Forum ditutup otomatis setelah tenggat dan masa tenggang"


def allowed_kinds(level: Level, final: bool) -> frozenset[Kind]:
    """The decisions a forum takes: the final stage includes in the RKPD or not; a Forum
    PD assigns OPD and sub-kegiatan; the city's forum includes or does not accommodate;
    the forums below accept, revise, reject, defer, merge and rank."""
    if final:
        return ADOPTING
    if level is Level.OPD:
        return AT_OPD
    if level is Level.CITY:
        return AT_CITY
    return ELSEWHERE


@dataclass(frozen=True)
class Decision:
    """One decision on one usulan. Which fields matter depends on `kind`."""

    proposal_id: str
    kind: str
    reason: str | None = None
    reason_code: str | None = None
    changes: dict[str, Any] = field(default_factory=dict)
    into: str | None = None
    rank: int | None = None
    scores: dict[str, int] = field(default_factory=dict)
    opd_akhir: str | None = None
    sub_kegiatan: str | None = None


@dataclass
class Entry:
    """What a forum knows of one usulan it holds."""

    cost: int
    opd: str | None
    kind: str = "musrenbang"
    outcome: str | None = None  # the kind of the decision that currently stands
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class ForumBook:
    """The usulan a forum holds and the decisions standing on them."""

    stage: str
    pagu: int | None
    allowed: frozenset[Kind] = ELSEWHERE
    entries: dict[str, Entry] = field(default_factory=dict)
    # The region's reason codes (empty: any, as cycles planned before profiles took), and
    # the sub-kegiatan nomenclature this forum assigns from: None, any code of the right
    # shape (before profiles); empty, this forum assigns none.
    reason_codes: frozenset[str] = frozenset()
    catalogue: Mapping[str, str] | None = None

    def accepted_total(self) -> int:
        return sum(e.cost for e in self.entries.values() if e.outcome in FORWARDING)

    def undecided(self) -> list[str]:
        return [pid for pid, e in self.entries.items() if e.outcome is None]

    def forwarded(self) -> list[str]:
        return [pid for pid, e in self.entries.items() if e.outcome in FORWARDING]

    def snapshot(self, decisions: list[Decision]) -> dict[str, Entry]:
        """Copies of the entries `decisions` may change, for :meth:`restore`."""
        touched = {d.proposal_id for d in decisions} | {d.into for d in decisions if d.into}
        return {
            pid: replace(self.entries[pid], details=dict(self.entries[pid].details))
            for pid in touched
            if pid in self.entries
        }

    def restore(self, saved: dict[str, Entry]) -> None:
        """Puts back what :meth:`snapshot` copied (the batch could not be recorded)."""
        self.entries.update(saved)

    def check(
        self, decisions: list[Decision], known_opds: frozenset[str], strict: bool = True
    ) -> list[str]:
        """Every reason the batch is refused (empty: it may be recorded). A batch is
        all-or-nothing, and the pagu is checked against its end state. `strict` is the
        usulan validator on revisions and a revision's reason; histories recorded before
        those rules replay without them."""
        problems: list[str] = []
        trial = {pid: (e.outcome, e.cost) for pid, e in self.entries.items()}
        for n, d in enumerate(decisions, start=1):
            where = f"decision {n} ({d.kind} on {d.proposal_id})"
            problem = _check_one(d, self, known_opds, trial, strict) or self._reference_problem(d)
            if problem:
                problems.append(f"{where}: {problem}")
                continue
            if d.kind != Kind.PRIORITIZE and d.kind != Kind.ASSIGN:
                cost = int(d.changes.get("cost", trial[d.proposal_id][1]))
                trial[d.proposal_id] = (d.kind, cost)
        total = sum(cost for outcome, cost in trial.values() if outcome in FORWARDING)
        if not problems and self.pagu is not None and total > self.pagu:
            problems.append(
                f"the accepted total {_rupiah(total)} would exceed the pagu indikatif"
                f" {_rupiah(self.pagu)}"
            )
        return problems

    def _reference_problem(self, d: Decision) -> str | None:
        """A reason code the region does not have, or a sub-kegiatan not in the forum's
        nomenclature."""
        if (
            d.reason_code is not None
            and self.reason_codes
            and d.reason_code not in self.reason_codes
        ):
            return (
                f"reason_code {d.reason_code!r} is not one of the region's"
                f" ({', '.join(sorted(self.reason_codes))})"
            )
        given = [d.sub_kegiatan, d.changes.get("sub_kegiatan")]
        for code in (c for c in given if c is not None and self.catalogue is not None):
            if not self.catalogue:
                return "sub-kegiatan are assigned at the Forum Perangkat Daerah, not here"
            if code not in self.catalogue:
                return f"sub_kegiatan {code} is not in the region's nomenclature"
        return None

    def forwarded_rows(self) -> list[tuple[str, int, str | None, str]]:
        """(id, cost, OPD, kind) of the usulan this forum sends on."""
        return [
            (pid, e.cost, e.opd, e.kind)
            for pid, e in self.entries.items()
            if e.outcome in FORWARDING
        ]

    def ranked(self) -> list[str]:
        """The forwarded usulan in priority order (ranked first, then by id)."""

        def rank(pid: str) -> int:
            value = self.entries[pid].details.get("rank")
            return value if isinstance(value, int) else 1_000_000

        return sorted(self.forwarded(), key=lambda p: (rank(p), p))

    def closing_summary(self) -> dict[str, Any]:
        """What the closing record says of the forum's usulan."""
        return {
            "forwarded": self.ranked(),
            "accepted_total": self.accepted_total(),
            "held": len(self.entries),
        }

    def auto_close(self, policy: str) -> list[tuple[str, str, dict[str, Any]]]:
        """The outcomes of the usulan still undecided when the system closes the forum:
        forwarded as they are (policy "forward"), else not deliberated, with the reason."""
        out: list[tuple[str, str, dict[str, Any]]] = []
        for pid in self.undecided():
            if policy == "forward":
                self.entries[pid].outcome = Kind.ACCEPT
                out.append((pid, ET.PROPOSAL_ACCEPTED, {"auto": True}))
            else:
                self.entries[pid].outcome = "not_deliberated"
                reason = {"reason": AUTO_CLOSE_REASON, "reason_code": "tidak-dibahas"}
                out.append((pid, ET.PROPOSAL_NOT_DELIBERATED, reason))
        return out

    def apply(self, decisions: list[Decision]) -> list[tuple[str, str, dict[str, Any]]]:
        """Records a checked batch; returns (stream id, event type, payload) to append."""
        out: list[tuple[str, str, dict[str, Any]]] = []
        for d in decisions:
            entry = self.entries[d.proposal_id]
            kind = Kind(d.kind)
            payload = _payload(d, kind, entry, self.catalogue)
            if kind not in (Kind.PRIORITIZE, Kind.ASSIGN):
                entry.outcome = kind
            if kind is Kind.REVISE:
                entry.cost = int(d.changes.get("cost", entry.cost))
                entry.opd = str(d.changes.get("opd", entry.opd))
                entry.details.update(d.changes)
            if kind is Kind.ASSIGN and d.opd_akhir:
                entry.opd = d.opd_akhir
            if kind is Kind.PRIORITIZE:
                entry.details["rank"] = d.rank
            out.append((d.proposal_id, EVENT_OF[kind], payload))
            if kind is Kind.MERGE and d.into:
                out.append((d.into, ET.PROPOSAL_MERGED, {"absorbed": d.proposal_id}))
        return out


def _check_one(
    d: Decision,
    book: ForumBook,
    known_opds: frozenset[str],
    trial: dict[str, tuple[str | None, int]],
    strict: bool = True,
) -> str | None:
    if d.proposal_id not in book.entries:
        return "this usulan is not held by this forum"
    try:
        kind = Kind(d.kind)
    except ValueError:
        return f"unknown decision; use one of {', '.join(k.value for k in Kind)}"
    if kind not in book.allowed:
        return f"not a decision the {book.stage} forum takes"
    if trial[d.proposal_id][0] == Kind.MERGE:
        return "already merged into another usulan"
    if kind in NEEDS_REASON and not (d.reason and d.reason.strip()):
        return "a reason is required"
    if kind is Kind.REJECT and not d.reason_code:
        return "a reason code is required to reject"
    if kind is Kind.REVISE and strict:
        if not (d.reason and d.reason.strip()):
            return "a revision needs its reason"
        if not d.changes:
            return "accept with changes needs the changes"
        return changes_problem(d.changes, REVISABLE, known_opds)
    if kind is Kind.REVISE:
        return _check_revision(d.changes)
    if kind is Kind.MERGE:
        if not d.into or d.into == d.proposal_id or d.into not in book.entries:
            return "merge needs `into`: another usulan held by this forum"
        if trial[d.into][0] in (Kind.MERGE, Kind.REJECT):
            return f"cannot merge into {d.into}, which is merged or rejected"
    if kind is Kind.PRIORITIZE:
        return _check_priority(d)
    if kind is Kind.ASSIGN:
        if d.opd_akhir is None and d.sub_kegiatan is None:
            return "assign needs opd_akhir and/or sub_kegiatan"
        if d.opd_akhir is not None and d.opd_akhir not in known_opds:
            return f"unknown OPD {d.opd_akhir!r}"
        if d.sub_kegiatan is not None and not SUB_KEGIATAN.fullmatch(d.sub_kegiatan):
            return "sub_kegiatan must look like 1.03.10.2.01.0001 (Permendagri 90/2019)"
    return None


def _check_revision(changes: dict[str, Any]) -> str | None:
    if not changes:
        return "accept with changes needs the changes"
    unknown = set(changes) - set(REVISABLE)
    if unknown:
        return f"cannot revise {sorted(unknown)}; revisable: {', '.join(REVISABLE)}"
    cost = changes.get("cost")
    if cost is not None and (not isinstance(cost, int) or isinstance(cost, bool) or cost <= 0):
        return "cost must be a positive whole number of Rupiah"
    return None


def _check_priority(d: Decision) -> str | None:
    if d.rank is None or d.rank < 1:
        return "prioritize needs a rank of 1 or more"
    bad = {k: v for k, v in d.scores.items() if k not in CRITERIA or not 0 <= v <= 5}
    if bad:
        return f"scores must be 0-5 on the criteria {', '.join(CRITERIA)}"
    return None


def _payload(
    d: Decision, kind: Kind, entry: Entry, catalogue: Mapping[str, str] | None
) -> dict[str, Any]:
    payload: dict[str, Any] = {}
    if kind in NEEDS_REASON:
        payload.update(reason=d.reason, reason_code=d.reason_code)
    if kind is Kind.REVISE:
        if d.reason:
            payload.update(reason=d.reason, reason_code=d.reason_code)
        payload["changes"] = d.changes
        if catalogue and "sub_kegiatan" in d.changes:
            payload["sub_kegiatan_name"] = catalogue[d.changes["sub_kegiatan"]]
        payload["original"] = {k: entry.details.get(k) for k in d.changes}
        if "cost" in d.changes:
            payload["original"]["cost"] = entry.cost
    if kind is Kind.MERGE:
        payload["into"] = d.into
    if kind is Kind.PRIORITIZE:
        payload.update(rank=d.rank, scores=d.scores)
    if kind is Kind.ASSIGN:
        payload.update(opd_awal=entry.opd, opd_akhir=d.opd_akhir or entry.opd)
        if d.sub_kegiatan:
            payload["sub_kegiatan"] = d.sub_kegiatan
            if catalogue:  # the name beside the code, as the nomenclature gives it
                payload["sub_kegiatan_name"] = catalogue[d.sub_kegiatan]
    return payload


def _rupiah(amount: int) -> str:
    return str(format_rupiah(amount))
