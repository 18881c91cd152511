"""The bidang-to-OPD table that cycles planned before region profiles were routed by
(Kota Tangerang's, for every region). Frozen: the recorded histories of those cycles
replay by it. Every cycle planned since routes by its profile (musrenbang/profiles/)."""

from __future__ import annotations

from collections.abc import Iterable

_BEFORE_PROFILES = {
    "dinas-pupr": ("jalan", "drainase", "jembatan"),
    "dinas-perkimtan": ("permukiman", "pju", "rtlh"),
    "dinas-kesehatan": ("kesehatan", "posyandu"),
    "dinas-pendidikan": ("pendidikan", "paud"),
    "dinas-sosial": ("sosial",),
    "dinas-lh": ("lingkungan", "persampahan"),
    "dishub": ("perhubungan",),
    "dinas-kumkm": ("ekonomi", "umkm"),
    "dp3ap2kb": ("perempuan-anak",),
    "bpbd": ("kebencanaan",),
}


def routes_before_profiles(opds: Iterable[str]) -> dict[str, str]:
    """Bidang to OPD as cycles planned before profiles routed them, among `opds`."""
    known = set(opds)
    return {b: slug for slug, bidang in _BEFORE_PROFILES.items() if slug in known for b in bidang}


# The names those cycles showed for their OPDs (they recorded none of their own).
NAMES_BEFORE_PROFILES = {
    "dinas-pupr": "Dinas Pekerjaan Umum dan Penataan Ruang",
    "dinas-perkimtan": "Dinas Perumahan, Permukiman dan Pertanahan",
    "dinas-kesehatan": "Dinas Kesehatan",
    "dinas-pendidikan": "Dinas Pendidikan",
    "dinas-sosial": "Dinas Sosial",
    "dinas-lh": "Dinas Lingkungan Hidup",
    "dishub": "Dinas Perhubungan",
    "dinas-kumkm": "Dinas Koperasi dan UKM",
    "dp3ap2kb": "Dinas Pemberdayaan Perempuan dan Perlindungan Anak",
    "bpbd": "Badan Penanggulangan Bencana Daerah",
}
