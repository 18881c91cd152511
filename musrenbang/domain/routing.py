"""Routing: which forums a stage holds, which forums feed which, where a forwarded usulan
goes, which OPD an usulan is for, and which stage graphs can route at all. Pure: the
cycle workflow keeps the state and asks these."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import pairwise

from musrenbang.domain.stages import Level, Stage

# Usulan only ever move up (or stay at a level): a kelurahan's to its kecamatan, a
# kecamatan's to the OPD that will fund it, the OPDs' to the city.
LEVEL_ORDER = (Level.KELURAHAN, Level.KECAMATAN, Level.OPD, Level.CITY)
INTAKE_LEVELS = (Level.KELURAHAN, Level.KECAMATAN)  # an usulan comes from a kelurahan


def kecamatan_of(kelurahan: str) -> str:
    """`36.71.01.1001` -> `36.71.01`."""
    return kelurahan.rsplit(".", 1)[0]


def route(next_level: Level, unit: str, opd: str | None, city: str) -> str:
    """The unit of the next stage that a usulan forwarded by the forum of `unit` goes to:
    a kelurahan's to its kecamatan (a kecamatan stays), to the OPD it is assigned to at
    the OPD level, else to the city."""
    if next_level is Level.KECAMATAN:
        return unit if unit.count(".") == 2 else kecamatan_of(unit)
    if next_level is Level.KELURAHAN:
        return unit
    if next_level is Level.OPD:
        return opd or "bappeda"
    return city


def units_at(
    level: Level, units: Mapping[str, Sequence[str]], opds: Sequence[str], city: str
) -> list[str]:
    """The units that hold one forum each at a stage of `level`."""
    if level is Level.CITY:
        return [city]
    if level is Level.OPD:
        return list(opds)
    return list(units[level.value])


def feeders(level: Level, previous: Level, unit: str, previous_units: Sequence[str]) -> set[str]:
    """The forums of the stage before that must close before `unit` opens: a kecamatan
    waits for its own kelurahan, a unit of the same level for itself, else every forum
    of the stage before."""
    if level is Level.KECAMATAN and previous is Level.KELURAHAN:
        return {u for u in previous_units if kecamatan_of(u) == unit}
    if level == previous and level is not Level.CITY:
        return {unit}
    return set(previous_units)


def route_opd(opd: str | None, bidang: str, routes: Mapping[str, str]) -> str | None:
    """The OPD an usulan is for: the one named, else the region's OPD for its bidang."""
    return opd or routes.get(bidang)


def graph_problem(stages: Sequence[Stage], pokir_stage: str | None) -> str | None:
    """Why a stage graph cannot run a cycle, or None: unique stages, the first taking
    usulan from kelurahan, levels that only go up (so every forwarded usulan has a forum
    to go to), a final stage of the city that adopts the RKPD, and pokir entering at an
    OPD stage that exists."""
    if len(stages) < 2:
        return "a stage graph needs at least two stages: one that takes usulan, one that adopts"
    slugs = [s.slug for s in stages]
    twice = sorted({s for s in slugs if slugs.count(s) > 1})
    if twice:
        return f"stages must be unique; given twice: {', '.join(twice)}"
    if stages[0].level not in INTAKE_LEVELS:
        return (
            f"the first stage ({stages[0].slug}) takes the usulan of kelurahan: its level must"
            " be kelurahan or kecamatan"
        )
    for before, after in pairwise(stages):
        if LEVEL_ORDER.index(after.level) < LEVEL_ORDER.index(before.level):
            return (
                f"{after.slug} ({after.level.value}) cannot follow {before.slug}"
                f" ({before.level.value}): usulan go up from kelurahan to kecamatan, OPD and city"
            )
    if stages[-1].level is not Level.CITY:
        return f"the final stage ({stages[-1].slug}) adopts the RKPD: its level must be city"
    if pokir_stage is not None:
        found = next((s for s in stages if s.slug == pokir_stage), None)
        if found is None:
            return f"pokir_stage {pokir_stage!r} is not a stage of this graph ({', '.join(slugs)})"
        if found.level is not Level.OPD:
            return f"pokir enter at an OPD's forum: pokir_stage {pokir_stage} must be of level opd"
    return None
