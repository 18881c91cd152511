"""An usulan's path as a citizen reads it (the public page /lacak/{nomor usulan}): every
step from the forum where it was proposed to the RKPD, and the reason of every "no". Pure,
and nothing personal: no proposer, no address, no contact, no official's name."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from musrenbang.domain.catalogue import EventType as ET
from musrenbang.domain.receipts import ALPHABET, receipt_code
from musrenbang.domain.regions import unit_name

STAGE_NAMES = {
    "kelurahan": "Musrenbang Kelurahan",
    "validasi-bappeda": "Validasi Mitra Bappeda",
    "kecamatan": "Musrenbang Kecamatan",
    "forum-pd": "Forum Perangkat Daerah",
    "kota": "Musrenbang RKPD Kota",
    "rkpd": "Penetapan RKPD",
}
# What the public sees of an usulan's fields.
PUBLIC_FIELDS = ("masalah", "gagasan", "bidang", "volume", "satuan", "cost", "kelurahan")
NO = {
    ET.PROPOSAL_REJECTED: "Ditolak",
    ET.PROPOSAL_DEFERRED: "Ditunda",
    ET.PROPOSAL_NOT_ACCOMMODATED: "Tidak diakomodasi",
    ET.PROPOSAL_NOT_DELIBERATED: "Tidak dibahas",
}
_CROCKFORD = str.maketrans({"O": "0", "I": "1", "L": "1"})


def normalize_receipt(text: str) -> str | None:
    """A receipt code as people type it (lowercase, without dashes, O for 0) as the system
    writes it, or None when it cannot be one."""
    if len(text) > 40:
        return None
    plain = re.sub(r"[\s-]", "", text.upper()).translate(_CROCKFORD)
    if len(plain) != 12 or any(c not in ALPHABET for c in plain):
        return None
    return f"{plain[:4]}-{plain[4:8]}-{plain[8:]}"


def _stage(slug: str | None, stage_names: Mapping[str, str]) -> str:
    if not slug:
        return ""
    return stage_names.get(slug) or STAGE_NAMES.get(slug) or slug


def public_trace(
    events: Sequence[Mapping[str, Any]],
    names: Mapping[str, str],
    stage_names: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The steps of an usulan (its own events, oldest first) for the public."""
    stages = stage_names or {}
    steps: list[dict[str, Any]] = []
    details: dict[str, Any] = {}
    status = "diusulkan"
    for e in events:
        etype, p = e["type"], e["payload"] or {}
        where = {
            "stage": _stage(p.get("stage"), stages),
            "forum": unit_name(p.get("unit"), names) or p.get("unit"),
        }
        step: dict[str, Any] = {"at": str(e["at"])[:10], **where}
        if etype in (ET.PROPOSAL_SUBMITTED, ET.POKIR_SUBMITTED):
            details = {k: (p.get("details") or {}).get(k) for k in PUBLIC_FIELDS}
            label = (
                "Diusulkan" if etype == ET.PROPOSAL_SUBMITTED else "Diusulkan sebagai pokir DPRD"
            )
            step.update(what=label)
        elif etype == ET.PROPOSAL_ACCEPTED:
            step.update(what="Diterima")
            status = "diterima"
        elif etype == ET.PROPOSAL_REVISED:
            step.update(what="Diterima dengan perubahan", reason=p.get("reason"))
            status = "diterima"
        elif etype in NO:
            step.update(what=NO[etype], reason=p.get("reason"), reason_code=p.get("reason_code"))
            status = NO[etype].lower()
        elif etype == ET.PROPOSAL_MERGED and p.get("into"):
            into = receipt_code(str(p["into"]))
            step.update(what=f"Digabung dengan usulan {into}", merged_into=into)
            status = "digabung"
        elif etype == ET.PROPOSAL_MERGED:
            step.update(
                what=f"Usulan {receipt_code(str(p.get('absorbed')))} digabung ke usulan ini"
            )
        elif etype == ET.PROPOSAL_PRIORITIZED:
            step.update(what=f"Diberi peringkat {p.get('rank')}")
        elif etype == ET.PROPOSAL_ASSIGNED:
            opd = unit_name(p.get("opd_akhir"), names) or p.get("opd_akhir")
            what = f"Ditangani {opd}"
            if p.get("sub_kegiatan_name"):
                what += f": {p['sub_kegiatan_name']}"
            step.update(what=what)
        elif etype == ET.PROPOSAL_INCLUDED:
            step.update(what="Masuk RKPD")
            status = "masuk rkpd"
        elif etype == ET.PROPOSAL_FORWARDED:
            step.update(
                what="Diteruskan ke "
                + _stage(p.get("to_stage"), stages)
                + (
                    f" ({unit_name(p.get('to_unit'), names) or p.get('to_unit')})"
                    if p.get("to_unit")
                    else ""
                ),
            )
            status = "diteruskan"
        else:
            continue
        steps.append(step)
    kelurahan = details.get("kelurahan")
    return {
        "status": status,
        "usulan": {**details, "kelurahan_name": unit_name(kelurahan, names)},
        "steps": steps,
    }
