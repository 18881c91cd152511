"""Who may act on which forum. Coordinators act within their own jurisdiction; an
escalation lets the coordinator one level up act on the forum that missed its deadline."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from musrenbang.domain.stages import Level


class Role(StrEnum):
    ADMIN = "admin"
    COORDINATOR = "coordinator"
    AUDITOR = "auditor"
    DPRD = "dprd"


@dataclass(frozen=True)
class Actor:
    """A person acting (subject, role, jurisdiction: a region code or an OPD slug)."""

    subject: str
    role: str
    jurisdiction: str | None = None
    fraksi: str | None = None
    region: str | None = None  # the kota/kabupaten the actor belongs to


def system_actor(workflow_id: str) -> dict[str, Any]:
    """How the system records itself as the actor of reminders, escalations, auto-closes."""
    return {"system": True, "role": "system", "workflow": workflow_id}


def escalation_target(level: Level, unit: str, city: str) -> str:
    """The jurisdiction one level above a forum's unit."""
    if level is Level.KELURAHAN:
        return unit.rsplit(".", 1)[0]
    return city


def may_decide(
    actor: Actor,
    level: Level,
    unit: str,
    city: str,
    escalated_to: str | None,
    bappeda_chairs: bool = False,
) -> bool:
    """May `actor` submit, decide or close on the forum of `unit`? A stage Bappeda chairs
    (SIPD's Validasi Mitra Bappeda) is Bappeda's, whatever unit its forums are per."""
    if actor.region is not None and actor.region != city:
        return False  # an OPD slug or a code is only ever meant within its own region
    if actor.role == Role.ADMIN:
        return True
    if actor.role != Role.COORDINATOR or actor.jurisdiction is None:
        return False
    if bappeda_chairs:
        return actor.jurisdiction == city
    if actor.jurisdiction == unit:
        return True
    if level is Level.OPD and actor.jurisdiction == city:  # Bappeda sits in every Forum PD
        return True
    return escalated_to is not None and actor.jurisdiction == escalated_to


def may_extend(actor: Actor, level: Level, unit: str, city: str) -> bool:
    """Only the level above (or an admin) may move a forum's deadline."""
    if actor.region is not None and actor.region != city:
        return False
    if actor.role == Role.ADMIN:
        return True
    return actor.role == Role.COORDINATOR and actor.jurisdiction == escalation_target(
        level, unit, city
    )
