"""Perangkat daerah (OPD): a city's agencies and which bidang each one handles."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Opd:
    slug: str
    name: str
    bidang: tuple[str, ...]


# A realistic default for Kota Tangerang (names as its SOTK has them).
KOTA_TANGERANG: tuple[Opd, ...] = (
    Opd("dinas-pupr", "Dinas Pekerjaan Umum dan Penataan Ruang", ("jalan", "drainase", "jembatan")),
    Opd(
        "dinas-perkimtan",
        "Dinas Perumahan, Permukiman dan Pertanahan",
        ("permukiman", "pju", "rtlh"),
    ),
    Opd("dinas-kesehatan", "Dinas Kesehatan", ("kesehatan", "posyandu")),
    Opd("dinas-pendidikan", "Dinas Pendidikan", ("pendidikan", "paud")),
    Opd("dinas-sosial", "Dinas Sosial", ("sosial",)),
    Opd("dinas-lh", "Dinas Lingkungan Hidup", ("lingkungan", "persampahan")),
    Opd("dishub", "Dinas Perhubungan", ("perhubungan",)),
    Opd("dinas-kumkm", "Dinas Koperasi dan UKM", ("ekonomi", "umkm")),
    Opd("dp3ap2kb", "Dinas Pemberdayaan Perempuan dan Perlindungan Anak", ("perempuan-anak",)),
    Opd("bpbd", "Badan Penanggulangan Bencana Daerah", ("kebencanaan",)),
)


def opd_for(bidang: str, opds: tuple[Opd, ...]) -> str | None:
    """The OPD that handles `bidang`, if exactly one is configured for it."""
    for opd in opds:
        if bidang in opd.bidang:
            return opd.slug
    return None
