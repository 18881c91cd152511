"""Intake: the rules an usulan passes to enter a cycle, at a kelurahan forum (or the first
stage of the region's graph) or as a DPRD member's pokir. Pure: the workflows call these
in their update validators and again in the handlers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from musrenbang.domain.errors import Conflict, Refused
from musrenbang.domain.routing import route_opd
from musrenbang.domain.stages import Level
from musrenbang.domain.usulan import KELURAHAN, usulan_problem


@dataclass
class ProposalDraft:
    """A new usulan as submitted at a kelurahan forum (or a pokir at the cycle)."""

    masalah: str
    gagasan: str
    cost: int
    bidang: str
    volume: float
    satuan: str
    kelurahan: str | None = None
    rt: str | None = None
    rw: str | None = None
    alamat: str | None = None
    fisik: bool = True
    opd: str | None = None
    koordinat: list[float] | None = None
    pengusul: str | None = None
    proposal_id: str | None = None  # older clients' name for `reference`
    reference: str | None = None  # the client's own reference, unique within its cycle

    @property
    def client_reference(self) -> str | None:
        return self.reference or self.proposal_id

    def fields(self) -> dict[str, Any]:
        """Its fields as a dict, one level deep (`dataclasses.asdict` deep-copies, which
        inside the workflow sandbox costs seconds on large batches)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def drafts(rows: Sequence[Mapping[str, Any]]) -> list[ProposalDraft]:
    """Submitted usulan as drafts; a field no draft has is refused with its name."""
    out = []
    for n, row in enumerate(rows, start=1):
        try:
            out.append(ProposalDraft(**row))
        except TypeError as exc:
            raise Refused(f"usulan {n}: {exc}") from None
    return out


def draft_problem(
    draft: ProposalDraft, opds: Sequence[str], routes: Mapping[str, str]
) -> str | None:
    """Why a submitted usulan is refused, or None (its texts are checked apart, by
    `check_texts`): the usulan validator of the domain, and an OPD that will hold a Forum
    PD for it."""
    problem = usulan_problem(draft.fields(), opds)
    if problem:
        return problem
    if route_opd(draft.opd, draft.bidang, routes) is None:
        return f"no OPD handles bidang {draft.bidang!r}; name the opd"
    return None


def origin_problem(level: Level, unit: str, kelurahan: str | None) -> str | None:
    """Where an usulan comes from: the forum's kelurahan, or one a forum above the
    kelurahan (a graph without kelurahan forums) is told and which lies within its unit."""
    if level is Level.KELURAHAN:
        if kelurahan not in (None, unit):
            return f"kelurahan {kelurahan} is not this forum's ({unit})"
        return None
    kel = kelurahan or ""
    if not (KELURAHAN.fullmatch(kel) and kel.startswith(f"{unit}.")):
        return f"name the kelurahan it comes from (a code under {unit})"
    return None


def check_batch(
    batch: Sequence[ProposalDraft],
    opds: Sequence[str],
    routes: Mapping[str, str],
    known: Mapping[str, str] | None,
    *,
    what: str = "usulan",
    origin: tuple[Level, str] | None = None,
) -> None:
    """Refuses the batch (Refused, or Conflict for a reference already taken) unless every
    draft may enter: valid fields, an OPD for it, its origin (when `origin` is the forum's
    level and unit), and client references unique in the batch and not yet `known` (None:
    references unchecked, as forums planned before these rules replay)."""
    seen: set[str] = set()
    for n, draft in enumerate(batch, start=1):
        problem = draft_problem(draft, opds, routes)
        if problem is None and origin is not None:
            problem = origin_problem(origin[0], origin[1], draft.kelurahan)
        if problem:
            raise Refused(f"{what} {n}: {problem}")
        ref = draft.client_reference if known is not None else None
        if ref and ref in seen:
            raise Refused(f"{what} {n}: reference {ref} is given twice in this batch")
        if ref and known is not None and ref in known:
            raise Conflict(f"{what} {n}: reference {ref} is already submitted here")
        if ref:
            seen.add(ref)


def draft_details(draft: ProposalDraft, opd: str | None) -> dict[str, Any]:
    """What an usulan's submission records of it: the fields given, and its OPD."""
    details = {
        k: v
        for k, v in draft.fields().items()
        if v is not None and k not in ("proposal_id", "reference")
    }
    details["opd"] = opd
    if draft.client_reference:
        details["reference"] = draft.client_reference
    return details
