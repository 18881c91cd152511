"""A region's profile: its OPDs and the bidang each handles, its stage graph, its pagu, its
reason codes, its calendar and the sub-kegiatan nomenclature it assigns from.

Pure: a profile is parsed from plain JSON (a data file shipped in the package, a file of
the Bappeda's own, or the body of `POST /cycles`) and validated here; musrenbang/profiles.py
reads the files. A profile is resolved when a cycle is planned and travels in the
workflow input, so no workflow reads reference data from code.
"""

from __future__ import annotations

import calendar as gregorian
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from musrenbang.domain.routing import LEVEL_ORDER, graph_problem
from musrenbang.domain.stages import STAGES, TEMPLATES, Level, Stage
from musrenbang.domain.usulan import SUB_KEGIATAN

SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,58}[a-z0-9]")  # whole text: use fullmatch
CALENDAR_DAY = re.compile(r"(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])")
URUSAN = re.compile(r"\d(\.\d{2}){0,2}")  # 1, 1.03 or 1.03.10: a prefix of sub-kegiatan codes
MAX_OPDS = 200
MAX_SUB_KEGIATAN = 5000  # a city's own sub-kegiatan; the whole national list stays outside
MAX_PAGU = 10**15
# The reason code the system itself gives when a forum closes past its deadline.
SYSTEM_REASON = ("tidak-dibahas", "Tidak dibahas: forum ditutup otomatis setelah tenggat")
KEYS = (
    "region",
    "name",
    "opds",
    "stages",
    "pokir_stage",
    "pagu",
    "reason_codes",
    "calendar",
    "nomenclature",
    "sub_kegiatan",
    "notes",
    "source",  # as GET /profiles/{region} shows it: informational, not read
    "template",  # a template's name, where "stages" is not given
)


class ProfileError(ValueError):
    """A profile that cannot plan a cycle, with the reason in words."""


@dataclass(frozen=True)
class OpdProfile:
    slug: str
    name: str
    bidang: tuple[str, ...]
    chair: str | None = None  # who chairs its Forum PD
    # The urusan (or bidang urusan, program) whose sub-kegiatan its Forum PD assigns,
    # as code prefixes ("1.03"); empty: any of the nomenclature.
    urusan: tuple[str, ...] = ()

    def assigns(self, catalogue: Mapping[str, str]) -> dict[str, str]:
        """The part of the nomenclature this OPD's Forum PD assigns from."""
        return catalogue_for(catalogue, self.urusan)


def catalogue_for(catalogue: Mapping[str, str], urusan: Sequence[str]) -> dict[str, str]:
    """The sub-kegiatan of `catalogue` under the urusan prefixes (all of it: none given)."""
    if not urusan:
        return dict(catalogue)
    return {
        code: name
        for code, name in catalogue.items()
        if any(code == u or code.startswith(f"{u}.") for u in urusan)
    }


@dataclass(frozen=True)
class Profile:
    opds: tuple[OpdProfile, ...]
    stages: tuple[Stage, ...]
    template: str | None  # the template's name, or None: the region's own graph
    pokir_stage: str | None
    pagu: dict[str, int] = field(default_factory=dict)  # stage -> per forum
    pagu_units: dict[str, dict[str, int]] = field(default_factory=dict)  # stage -> unit -> pagu
    reason_codes: tuple[tuple[str, str], ...] = ()
    calendar: dict[str, tuple[int, int]] = field(default_factory=dict)  # stage -> (month, day)
    nomenclature: str = ""  # the catalogue's name
    sub_kegiatan: dict[str, str] = field(default_factory=dict)  # code -> name
    region: str | None = None
    name: str | None = None
    source: str = "default"

    def routes(self) -> dict[str, str]:
        """Bidang to the OPD that handles it."""
        return {b: o.slug for o in self.opds for b in o.bidang}

    def summary(self) -> dict[str, Any]:
        """What a cycle's opening records of the profile it was planned with (the
        nomenclature by name and size: its entries are recorded where they are used)."""
        return {
            "source": self.source,
            "template": self.template,
            "opds": [
                {
                    "slug": o.slug,
                    "name": o.name,
                    "bidang": list(o.bidang),
                    "chair": o.chair,
                    "urusan": list(o.urusan),
                }
                for o in self.opds
            ],
            "pokir_stage": self.pokir_stage,
            "reason_codes": [{"code": c, "name": n} for c, n in self.reason_codes],
            "nomenclature": {"name": self.nomenclature, "entries": len(self.sub_kegiatan)},
        }


def parse_profile(
    data: Mapping[str, Any],
    base: Profile | None = None,
    source: str = "request",
    catalogues: Mapping[str, Mapping[str, str]] | None = None,
) -> Profile:
    """A profile from JSON: every key given replaces the base's (the region's shipped profile
    or the default); `opds` is required without a base. Raises ProfileError."""
    if not isinstance(data, Mapping):
        raise ProfileError("a profile is an object")
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise ProfileError(f"a profile has no {', '.join(unknown)}; its keys: {', '.join(KEYS)}")
    if base is None and "opds" not in data:
        raise ProfileError('a profile needs "opds": [{"slug", "name", "bidang": [...]}]')
    opds = _opds(data["opds"]) if "opds" in data or base is None else base.opds
    if "stages" in data:  # an own graph, or a template's name
        template, stages = _stages(data["stages"])
    elif isinstance(data.get("template"), str):
        template, stages = _stages(data["template"])
    elif base is not None:
        template, stages = base.template, base.stages
    else:
        template, stages = _stages("default")
    slugs = [s.slug for s in stages]
    pokir = data.get("pokir_stage", base.pokir_stage if base else "forum-pd")
    if pokir is not None and not isinstance(pokir, str):
        raise ProfileError("pokir_stage is a stage's slug, or null for no pokir")
    if "pokir_stage" not in data and pokir not in slugs:
        pokir = next((s.slug for s in stages if s.level is Level.OPD), None)
    problem = graph_problem(stages, pokir)
    if problem:
        raise ProfileError(problem)
    pagu, pagu_units = (
        _pagu(data["pagu"], slugs)
        if "pagu" in data
        else _kept(base.pagu if base else {}, base.pagu_units if base else {}, slugs)
    )
    if "pagu" not in data:  # the base's pagu of an OPD this profile no longer has goes
        opd_stages = {s.slug for s in stages if s.level is Level.OPD}
        kept = {o.slug for o in opds}
        pagu_units = {
            st: ({u: a for u, a in units.items() if u in kept} if st in opd_stages else units)
            for st, units in pagu_units.items()
        }
    reasons = _reasons(data["reason_codes"]) if "reason_codes" in data else None
    if reasons is None:
        reasons = base.reason_codes if base else (SYSTEM_REASON,)
    calendar = dict(base.calendar) if base else {}
    if "calendar" in data:  # per stage, over the base's
        calendar.update(_calendar(data["calendar"], slugs))
    nomenclature, entries = _nomenclature(data, base, catalogues or {})
    return Profile(
        opds=opds,
        stages=stages,
        template=template,
        pokir_stage=pokir,
        pagu=pagu,
        pagu_units=pagu_units,
        reason_codes=reasons,
        calendar=calendar,
        nomenclature=nomenclature,
        sub_kegiatan=entries,
        region=_text_or_none(data.get("region", base.region if base else None), "region"),
        name=_text_or_none(data.get("name", base.name if base else None), "name"),
        source=source,
    )


def _text(value: Any, what: str, high: int = 200) -> str:
    if not isinstance(value, str) or not 1 <= len(value.strip()) <= high or len(value) > high:
        raise ProfileError(f"{what} must be a text of 1 to {high} characters")
    return value.strip()


def _text_or_none(value: Any, what: str) -> str | None:
    return None if value is None else _text(value, what)


def _slug(value: Any, what: str) -> str:
    if not isinstance(value, str) or not SLUG.fullmatch(value):
        raise ProfileError(
            f"{what} {value!r} must be a slug: lowercase letters, digits and '-', 2 to 60"
        )
    return value


def _list(value: Any, what: str, high: int) -> list[Any]:
    if not isinstance(value, list) or not 1 <= len(value) <= high:
        raise ProfileError(f"{what} must be a list of 1 to {high}")
    return value


def _object(value: Any, what: str, allowed: tuple[str, ...]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ProfileError(f"{what} must be an object")
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise ProfileError(f"{what} has no {', '.join(unknown)}; its keys: {', '.join(allowed)}")
    return value


def _opds(value: Any) -> tuple[OpdProfile, ...]:
    out: list[OpdProfile] = []
    handled: dict[str, str] = {}
    for n, item in enumerate(_list(value, "opds", MAX_OPDS), start=1):
        row = _object(
            item, f"opds[{n}]", ("slug", "name", "bidang", "chair", "abbreviation", "urusan")
        )
        for key in ("slug", "name", "bidang"):
            if key not in row:
                raise ProfileError(f"opds[{n}] needs {key}")
        slug = _slug(row["slug"], f"opds[{n}].slug")
        if any(o.slug == slug for o in out):
            raise ProfileError(f"opds[{n}]: the slug {slug} is given twice")
        bidang = tuple(_slug(b, f"opds[{n}].bidang") for b in _list(row["bidang"], "bidang", 50))
        for b in bidang:
            if b in handled:
                raise ProfileError(
                    f"bidang {b} is handled by both {handled[b]} and {slug}: an usulan of a"
                    " bidang goes to one OPD"
                )
            handled[b] = slug
        chair = _text_or_none(row.get("chair"), f"opds[{n}].chair")
        urusan = tuple(_urusan(u, f"opds[{n}].urusan") for u in row.get("urusan") or [])
        if len(urusan) > 50:
            raise ProfileError(f"opds[{n}].urusan may name at most 50")
        name = _text(row["name"], f"opds[{n}].name")
        out.append(OpdProfile(slug, name, bidang, chair, urusan))
    return tuple(out)


def _urusan(value: Any, what: str) -> str:
    if not isinstance(value, str) or not URUSAN.fullmatch(value):
        raise ProfileError(f"{what} {value!r} must be a code prefix such as 1.03 (urusan PU)")
    return value


def _stages(value: Any) -> tuple[str | None, tuple[Stage, ...]]:
    if isinstance(value, str):
        if value not in TEMPLATES:
            raise ProfileError(
                f"unknown stage template {value!r}; known: {', '.join(sorted(TEMPLATES))}"
            )
        return value, tuple(STAGES[s] for s in TEMPLATES[value])
    out: list[Stage] = []
    for n, item in enumerate(_list(value, "stages", 12), start=1):
        row = _object(
            item, f"stages[{n}]", ("slug", "name", "level", "chaired_by", "timer_may_close")
        )
        for key in ("slug", "name", "level", "chaired_by"):
            if key not in row:
                raise ProfileError(f"stages[{n}] needs {key}")
        slug = _slug(row["slug"], f"stages[{n}].slug")
        level = row["level"]
        if not isinstance(level, str) or level not in {lv.value for lv in LEVEL_ORDER}:
            raise ProfileError(
                f"stages[{n}].level must be one of {', '.join(lv.value for lv in LEVEL_ORDER)}"
            )
        may_close = row.get("timer_may_close", True)
        if not isinstance(may_close, bool):
            raise ProfileError(f"stages[{n}].timer_may_close must be true or false")
        out.append(
            Stage(
                slug,
                _text(row["name"], f"stages[{n}].name"),
                Level(row["level"]),
                _text(row["chaired_by"], f"stages[{n}].chaired_by"),
                may_close,
            )
        )
    return None, tuple(out)


def _rupiah(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_PAGU:
        raise ProfileError(f"{what} must be a whole number of Rupiah, 0 or more")
    return value


def _pagu(value: Any, slugs: list[str]) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    """`{"kelurahan": 1500000000}` (per forum), or `{"kelurahan": {"per_forum": ...,
    "units": {"36.71.01.1001": ...}}}` (per kelurahan, kecamatan or OPD)."""
    if not isinstance(value, Mapping):
        raise ProfileError("pagu must be an object: stage to Rupiah")
    per_forum: dict[str, int] = {}
    per_unit: dict[str, dict[str, int]] = {}
    for stage, amount in value.items():
        if stage not in slugs:
            raise ProfileError(
                f"pagu names {stage!r}, not a stage of this cycle ({', '.join(slugs)})"
            )
        if isinstance(amount, Mapping):
            row = _object(amount, f"pagu.{stage}", ("per_forum", "units"))
            if "per_forum" in row:
                per_forum[stage] = _rupiah(row["per_forum"], f"pagu.{stage}.per_forum")
            units = row.get("units", {})
            if not isinstance(units, Mapping) or len(units) > 10000:
                raise ProfileError(f"pagu.{stage}.units must be an object: unit to Rupiah")
            per_unit[stage] = {
                _text(u, f"pagu.{stage}.units key", 60): _rupiah(a, f"pagu.{stage}.units.{u}")
                for u, a in units.items()
            }
        else:
            per_forum[stage] = _rupiah(amount, f"pagu.{stage}")
    return per_forum, per_unit


def _kept(
    pagu: dict[str, int], units: dict[str, dict[str, int]], slugs: list[str]
) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    return (
        {s: a for s, a in pagu.items() if s in slugs},
        {s: u for s, u in units.items() if s in slugs},
    )


def _reasons(value: Any) -> tuple[tuple[str, str], ...]:
    out: dict[str, str] = {}
    for n, item in enumerate(_list(value, "reason_codes", 200), start=1):
        row = _object(item, f"reason_codes[{n}]", ("code", "name"))
        code = _slug(row.get("code"), f"reason_codes[{n}].code")
        if code in out:
            raise ProfileError(f"reason_codes[{n}]: the code {code} is given twice")
        out[code] = _text(row.get("name"), f"reason_codes[{n}].name")
    out.setdefault(*SYSTEM_REASON)  # the system's own, when it closes a forum
    return tuple(out.items())


def _calendar(value: Any, slugs: list[str]) -> dict[str, tuple[int, int]]:
    if not isinstance(value, Mapping):
        raise ProfileError('calendar must be an object: stage to "MM-DD"')
    out = {}
    for stage, day in value.items():  # this graph's stages, and any template's
        if stage not in slugs and stage not in STAGES:
            raise ProfileError(f"calendar names {stage!r}, not a stage ({', '.join(slugs)})")
        if not isinstance(day, str) or not CALENDAR_DAY.fullmatch(day):
            raise ProfileError(f'calendar.{stage} must be "MM-DD", e.g. "01-31"')
        month, dom = int(day[:2]), int(day[3:])
        if dom > gregorian.monthrange(2001, month)[1]:  # a day every year has
            raise ProfileError(f"calendar.{stage}: {day} is not a day of every year")
        out[stage] = (month, dom)
    return out


def _nomenclature(
    data: Mapping[str, Any], base: Profile | None, catalogues: Mapping[str, Mapping[str, str]]
) -> tuple[str, dict[str, str]]:
    if "sub_kegiatan" in data:
        entries = parse_catalogue(data["sub_kegiatan"])
        name = data.get("nomenclature", "the region's own")
        return _text(name, "nomenclature"), entries
    if "nomenclature" in data:
        name = data["nomenclature"]
        if not isinstance(name, str) or name not in catalogues:
            known = ", ".join(sorted(catalogues)) or "none"
            raise ProfileError(
                f"nomenclature {name!r} is not a catalogue here (known: {known}); or give"
                ' "sub_kegiatan": [{"code", "name"}]'
            )
        return name, dict(catalogues[name])
    if base is not None:
        return base.nomenclature, dict(base.sub_kegiatan)
    return "", {}


def parse_catalogue(value: Any, what: str = "sub_kegiatan") -> dict[str, str]:
    """Sub-kegiatan entries [{"code", "name"}] as {code: name}; codes as Permendagri 90/2019
    writes them, each once."""
    entries: dict[str, str] = {}
    for n, item in enumerate(_list(value, what, MAX_SUB_KEGIATAN), start=1):
        row = _object(item, f"{what}[{n}]", ("code", "name"))
        code = row.get("code")
        if not isinstance(code, str) or not SUB_KEGIATAN.fullmatch(code):
            raise ProfileError(f"{what}[{n}].code must look like 1.03.10.2.01.0044")
        if code in entries:
            raise ProfileError(f"{what}[{n}]: the code {code} is given twice")
        entries[code] = _text(row.get("name"), f"{what}[{n}].name", 500)
    return entries
