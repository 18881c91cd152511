"""Current state of an usulan, a forum and a cycle, folded from their events.

Pure functions over plain JSON values, shared by the read models (projections), the
`as_of` reads and the workflows' own bookkeeping, so all three agree by construction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from musrenbang.domain.catalogue import EventType as ET

State = dict[str, Any]
Reducer = Callable[[State, dict[str, Any]], None]

_PROPOSAL_STATUS: dict[str, str] = {
    ET.PROPOSAL_ACCEPTED: "accepted",
    ET.PROPOSAL_REVISED: "accepted",
    ET.PROPOSAL_REJECTED: "rejected",
    ET.PROPOSAL_DEFERRED: "deferred",
    ET.PROPOSAL_FORWARDED: "forwarded",
    ET.PROPOSAL_INCLUDED: "included",
    ET.PROPOSAL_NOT_ACCOMMODATED: "not_accommodated",
    ET.PROPOSAL_NOT_DELIBERATED: "not_deliberated",
}


def _submitted(state: State, payload: dict[str, Any]) -> None:
    state.update(
        proposal_id=payload["proposal_id"],
        receipt=payload.get("receipt"),
        cycle_id=payload.get("cycle_id"),
        kind=payload.get("kind", "musrenbang"),
        stage=payload.get("stage"),
        unit=payload.get("unit"),
        origin={"stage": payload.get("stage"), "unit": payload.get("unit")},
        status="submitted",
        details=dict(payload.get("details", {})),
        proposer=payload.get("proposer"),
    )


def _revised(state: State, payload: dict[str, Any]) -> None:
    details = state["details"] = {**state.get("details", {}), **payload.get("changes", {})}
    if "sub_kegiatan_name" in payload:
        details["sub_kegiatan_name"] = payload["sub_kegiatan_name"]
    state["revisions"] = state.get("revisions", 0) + 1


def _reasoned(state: State, payload: dict[str, Any]) -> None:
    state["reason"] = {"code": payload.get("reason_code"), "text": payload.get("reason")}


def _merged(state: State, payload: dict[str, Any]) -> None:
    if "into" in payload:
        state["status"] = "merged"
        state["merged_into"] = payload["into"]
    if "absorbed" in payload:
        state["merged_from"] = [*state.get("merged_from", []), payload["absorbed"]]


def _prioritized(state: State, payload: dict[str, Any]) -> None:
    state["priority"] = {"rank": payload.get("rank"), "scores": payload.get("scores", {})}


def _forwarded(state: State, payload: dict[str, Any]) -> None:
    state["path"] = [
        *state.get("path", []),
        {"stage": state.get("stage"), "unit": state.get("unit")},
    ]
    state["stage"] = payload["to_stage"]
    state["unit"] = payload["to_unit"]
    state["status"] = "submitted"
    state.pop("priority", None)


def _assigned(state: State, payload: dict[str, Any]) -> None:
    details = state["details"] = dict(state.get("details", {}))
    for key in ("opd_akhir", "sub_kegiatan", "sub_kegiatan_name"):
        if key in payload:
            details[key] = payload[key]


_PROPOSAL_REDUCERS: dict[str, Reducer] = {
    ET.PROPOSAL_SUBMITTED: _submitted,
    ET.POKIR_SUBMITTED: _submitted,
    ET.PROPOSAL_REVISED: _revised,
    ET.PROPOSAL_REJECTED: _reasoned,
    ET.PROPOSAL_DEFERRED: _reasoned,
    ET.PROPOSAL_NOT_ACCOMMODATED: _reasoned,
    ET.PROPOSAL_NOT_DELIBERATED: _reasoned,
    ET.PROPOSAL_MERGED: _merged,
    ET.PROPOSAL_PRIORITIZED: _prioritized,
    ET.PROPOSAL_FORWARDED: _forwarded,
    ET.PROPOSAL_ASSIGNED: _assigned,
}


def evolve_proposal(state: State | None, event_type: str, payload: dict[str, Any]) -> State:
    """The usulan's state after one more event (a new dict; the input is not changed)."""
    new: State = _copy(state)
    reducer = _PROPOSAL_REDUCERS.get(event_type)
    if reducer is not None:
        reducer(new, payload)
    status = _PROPOSAL_STATUS.get(event_type)
    if status is not None and new.get("status") != "merged":
        new["status"] = status
    new["last_event"] = event_type
    return new


def evolve_forum(state: State | None, event_type: str, payload: dict[str, Any]) -> State:
    new: State = _copy(state)
    if event_type == ET.FORUM_OPENED:
        new.update(
            forum_id=payload["forum_id"],
            cycle_id=payload.get("cycle_id"),
            stage=payload.get("stage"),
            unit=payload.get("unit"),
            deadline=payload.get("deadline"),
            pagu=payload.get("pagu"),
            status="open",
        )
        for key in ("unit_name", "chaired_by"):
            if key in payload:
                new[key] = payload[key]
    elif event_type == ET.DEADLINE_EXTENDED:
        new["deadline"] = payload["new_deadline"]
        new["status"] = "open"
    elif event_type == ET.DEADLINE_MISSED:
        new["status"] = "overdue"
    elif event_type == ET.ESCALATION_RAISED:
        new["escalated_to"] = payload.get("to")
    elif event_type in (ET.FORUM_CLOSED, ET.FORUM_AUTO_CLOSED):
        new["status"] = "closed"
        new["closed_by"] = "system" if event_type == ET.FORUM_AUTO_CLOSED else "coordinator"
        new["berita_acara"] = payload.get("berita_acara")
    new["last_event"] = event_type
    return new


def evolve_cycle(state: State | None, event_type: str, payload: dict[str, Any]) -> State:
    new: State = _copy(state)
    if event_type == ET.CYCLE_OPENED:
        new.update(
            cycle_id=payload["cycle_id"],
            region=payload.get("region"),
            year=payload.get("year"),
            template=payload.get("template"),
            stages=payload.get("stages", []),
            status="open",
        )
        if "profile" in payload:  # planned with a profile: its names (units, OPDs) too
            for key in ("name", "profile", "stage_defs", "names"):
                if key in payload:
                    new[key] = payload[key]
    elif event_type == ET.STAGE_OPENED:
        new["current_stage"] = payload["stage"]
        new["opened_stages"] = [*new.get("opened_stages", []), payload["stage"]]
    elif event_type == ET.RKPD_ADOPTED:
        new["status"] = "adopted"
        new["rkpd"] = {k: payload[k] for k in ("perkada", "items", "total_cost") if k in payload}
    new["last_event"] = event_type
    return new


def _copy(state: State | None) -> State:
    """The next state starts as a shallow copy: no reducer changes a nested value in
    place (each one that changes `details`, a list or the like builds a new one), so the
    states before and after share what did not change, and neither is changed after."""
    return dict(state) if state else {}
