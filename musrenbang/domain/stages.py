"""Stages of the planning cycle and the region templates that order them (data, not code)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


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


def template(name: str) -> tuple[Stage, ...]:
    try:
        return tuple(STAGES[slug] for slug in TEMPLATES[name])
    except KeyError:
        raise ValueError(
            f"unknown stage template {name!r}; known: {', '.join(sorted(TEMPLATES))}"
        ) from None
