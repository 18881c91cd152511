"""Stages of the planning cycle and the region templates that order them (data, not code)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Level(StrEnum):
    """Which units hold one forum each at a stage."""

    KELURAHAN = "kelurahan"
    KECAMATAN = "kecamatan"
    OPD = "opd"
    CITY = "city"


@dataclass(frozen=True)
class Stage:
    slug: str
    name: str
    level: Level
    chaired_by: str
    # Whether the system may close its forums once the deadline and grace period have
    # passed. The final stage never may, whatever this says: only a person adopts the
    # RKPD, with the number of its Perkada (see `timer_may_close`).
    timer_may_close: bool = True


STAGES: dict[str, Stage] = {
    s.slug: s
    for s in (
        Stage("kelurahan", "Musrenbang Kelurahan/Desa", Level.KELURAHAN, "Lurah"),
        Stage("validasi-bappeda", "Validasi Mitra Bappeda", Level.KECAMATAN, "Bappeda"),
        Stage("kecamatan", "Musrenbang Kecamatan", Level.KECAMATAN, "Camat"),
        Stage("forum-pd", "Forum Perangkat Daerah", Level.OPD, "Kepala OPD dan Bappeda"),
        Stage("kota", "Musrenbang RKPD Kota", Level.CITY, "Wali Kota / Kepala Bappeda"),
        Stage("rkpd", "Penetapan RKPD (Perkada)", Level.CITY, "Bappeda, TAPD, Wali Kota", False),
    )
}

TEMPLATES: dict[str, tuple[str, ...]] = {
    # Permendagri 86/2017 as most kota run it.
    "default": ("kelurahan", "kecamatan", "forum-pd", "kota", "rkpd"),
    # Surabaya: usulan enter at the kecamatan.
    "tanpa-kelurahan": ("kecamatan", "forum-pd", "kota", "rkpd"),
    # SIPD: Bappeda validates kelurahan results before the kecamatan forum.
    "sipd": ("kelurahan", "validasi-bappeda", "kecamatan", "forum-pd", "kota", "rkpd"),
}


def defined(slugs: Sequence[str], defs: Sequence[Mapping[str, Any]]) -> list[Stage]:
    """A cycle's stages as its plan defined them (`stage_defs`, from its profile), else
    the built-in ones (cycles planned before profiles)."""
    if defs:
        return [
            Stage(d["slug"], d["name"], Level(d["level"]), d["chaired_by"], d["timer_may_close"])
            for d in defs
        ]
    return [STAGES[s] for s in slugs]


def template(name: str) -> tuple[Stage, ...]:
    try:
        return tuple(STAGES[slug] for slug in TEMPLATES[name])
    except KeyError:
        raise ValueError(
            f"unknown stage template {name!r}; known: {', '.join(sorted(TEMPLATES))}"
        ) from None
