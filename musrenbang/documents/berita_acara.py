"""The Berita Acara of a closed forum as a PDF: the document a lurah prints, signs and files.

Built from the log alone (the forum's opening and closing records and its usulan's events
before the closing), typeset by typst with the fonts of its wheel and no system font, so
the same forum always renders the same bytes; the SHA-256 of those bytes is recorded in
the closing record itself. The data reaches typst as JSON (`sys.inputs`), never as
markup, so no text of an usulan can change the document's layout."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping, Sequence
from datetime import date
from importlib.metadata import version
from typing import Any

import segno
import typst
from lokal import format_rupiah, terbilang

from musrenbang.domain.catalogue import EventType as ET
from musrenbang.domain.decisions import AUTO_CLOSE_REASON
from musrenbang.domain.records import evolve_proposal
from musrenbang.domain.regions import unit_name
from musrenbang.events import queries

PAPERS = {"a4": ("210mm", "297mm"), "f4": ("215mm", "330mm")}
DAYS = ("Senin", "Selasa", "Rabu", "Kamis", "Jumat", "Sabtu", "Minggu")
MONTHS = (
    "Januari", "Februari", "Maret", "April", "Mei", "Juni",
    "Juli", "Agustus", "September", "Oktober", "November", "Desember",
)  # fmt: skip
STAGE_TITLES = {
    "kelurahan": "MUSYAWARAH PERENCANAAN PEMBANGUNAN KELURAHAN",
    "kecamatan": "MUSYAWARAH PERENCANAAN PEMBANGUNAN KECAMATAN",
    "validasi-bappeda": "VALIDASI MITRA BAPPEDA",
    "forum-pd": "FORUM PERANGKAT DAERAH",
    "kota": "MUSYAWARAH PERENCANAAN PEMBANGUNAN RKPD",
    "rkpd": "PENETAPAN RKPD",
}
NOT_AGREED: dict[str, str] = {
    ET.PROPOSAL_REJECTED: "Ditolak",
    ET.PROPOSAL_DEFERRED: "Ditunda",
    ET.PROPOSAL_NOT_ACCOMMODATED: "Tidak diakomodasi",
    ET.PROPOSAL_NOT_DELIBERATED: "Tidak dibahas",
    ET.PROPOSAL_MERGED: "Digabung",
}
AGREED = (ET.PROPOSAL_ACCEPTED, ET.PROPOSAL_REVISED, ET.PROPOSAL_INCLUDED)
RENDERER = f"typst {version('typst')}"
AUTO_CLOSED = " Forum ditutup otomatis oleh sistem setelah tenggat dan masa tenggang."

TEMPLATE = r"""
#let d = json(bytes(sys.inputs.data))
#set document(title: d.title, author: d.region_name, date: none)
#set page(width: eval(d.width), height: eval(d.height), margin: (x: 2cm, y: 1.8cm),
  footer: context [#set text(8pt); #d.forum_id #h(1fr) Halaman #counter(page).display()])
#set text(font: "Libertinus Serif", size: 10.5pt, lang: "id")
#set par(justify: true)
#align(center)[
  #text(12pt, weight: "bold")[#upper(d.kop.at(0))] \
  #for line in d.kop.slice(1) [#text(11pt, weight: "bold")[#upper(line)] \ ]
]
#line(length: 100%, stroke: 1.5pt)
#v(-6pt)
#line(length: 100%, stroke: 0.5pt)
#align(center)[
  #text(12pt, weight: "bold")[BERITA ACARA] \
  #text(11pt, weight: "bold")[#d.title_line] \
  Nomor: #d.nomor
]
#v(6pt)
#d.opening

#table(columns: (auto, 1fr), stroke: none, inset: 2pt,
  [Pimpinan forum], [: #d.chair],
  [Tempat], [: #d.tempat],
  [Jumlah peserta], [: #d.peserta orang],
)

#if d.catatan != none [Catatan: #d.catatan]

*A. Usulan yang disepakati (urutan prioritas)*
#table(columns: (auto, 2fr, 1.2fr, auto, auto, 1.1fr, 1.2fr), inset: 4pt,
  table.header([*No*], [*Usulan*], [*Lokasi*], [*Volume*], [*Satuan*], [*Pagu (Rp)*], [*OPD*]),
  ..d.agreed.enumerate().map(((i, u)) => (
    [#(i + 1)], [#u.usulan], [#u.lokasi], [#u.volume], [#u.satuan], [#u.pagu], [#u.opd]
  )).flatten()
)
Jumlah pagu yang disepakati: Rp#d.total

*B. Usulan yang tidak disepakati, dengan alasannya*
#if d.not_agreed.len() == 0 [Tidak ada.] else [
#table(columns: (auto, 2fr, 1.2fr, auto, 2fr), inset: 4pt,
  table.header([*No*], [*Usulan*], [*Lokasi*], [*Keputusan*], [*Alasan*]),
  ..d.not_agreed.enumerate().map(((i, u)) => (
    [#(i + 1)], [#u.usulan], [#u.lokasi], [#u.keputusan], [#u.alasan]
  )).flatten()
)]

Demikian Berita Acara ini dibuat untuk dipergunakan sebagaimana mestinya.

#v(10pt)
#grid(columns: (1fr,) * calc.min(d.signers.len(), 3), row-gutter: 18pt,
  ..d.signers.map(s => align(center)[#s.role \ #v(36pt) #underline[#s.name]])
)

#v(14pt)
#block(stroke: 0.5pt, inset: 6pt, width: 100%)[
  #grid(columns: (1fr, auto), column-gutter: 8pt,
    [#set text(8pt)
     *Jangkar log transparansi.* Berita Acara ini mencatat checkpoint log #d.checkpoint.origin
     berukuran #d.checkpoint.size peristiwa, akar #raw(d.checkpoint.root). Setiap orang dapat
     memeriksa bahwa keputusan di atas tercatat di log itu dan tidak berubah sesudahnya
     (musrenbang audit verify-evidence).],
    if d.qr != none { image(bytes(sys.inputs.qr), format: "svg", width: 2.6cm) },
  )
]
"""


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _rupiah(amount: Any) -> str:
    return str(format_rupiah(amount)).removeprefix("Rp") if isinstance(amount, int) else ""


def opening(day: date, stage: str, unit: str) -> str:
    """ "Pada hari ini ..." with the date in words."""
    return (
        f"Pada hari ini {DAYS[day.weekday()]} tanggal {terbilang(day.day)} bulan"
        f" {MONTHS[day.month - 1]} tahun {terbilang(day.year)} ({day.strftime('%d-%m-%Y')}),"
        f" telah dilaksanakan {STAGE_TITLES.get(stage, stage).title()} {unit} dengan hasil"
        " sebagai berikut."
    )


def document(
    opened: Mapping[str, Any],
    closing: Mapping[str, Any],
    events: Sequence[Mapping[str, Any]],
    names: Mapping[str, str],
    region_name: str,
) -> dict[str, Any]:
    """The Berita Acara's content from the log: the forum's opening and closing payloads,
    the events of its usulan before the closing (oldest first), and the cycle's names."""
    stage, unit, cycle = opened["stage"], opened["unit"], opened.get("cycle_id", "")
    place = opened.get("unit_name") or unit_name(unit, names) or unit
    states: dict[str, dict[str, Any]] = {}
    outcome: dict[str, tuple[str, dict[str, Any]]] = {}
    for e in events:
        pid = e["proposal_id"]
        states[pid] = evolve_proposal(states.get(pid), e["type"], e["payload"] or {})
        p = e["payload"] or {}
        here = p.get("stage") == stage and p.get("unit") == unit
        merged_away = e["type"] != ET.PROPOSAL_MERGED or p.get("into")
        if here and e["type"] in NOT_AGREED and merged_away:
            outcome[pid] = (e["type"], p)
        elif here and e["type"] in (
            ET.PROPOSAL_ACCEPTED,
            ET.PROPOSAL_REVISED,
            ET.PROPOSAL_INCLUDED,
        ):
            outcome.pop(pid, None)  # decided again: the last decision stands

    def described(pid: str) -> dict[str, str]:
        d = states.get(pid, {}).get("details", {})
        kel = d.get("kelurahan")
        where = unit_name(kel, names) or _text(kel)
        if d.get("rt"):
            where += f" RT {d['rt']}" + (f"/RW {d['rw']}" if d.get("rw") else "")
        return {"usulan": _text(d.get("gagasan") or d.get("masalah")), "lokasi": where}

    agreed = []
    for pid in closing.get("forwarded", []):
        d = states.get(pid, {}).get("details", {})
        opd = d.get("opd_akhir") or d.get("opd")
        agreed.append(
            {
                **described(pid),
                "volume": _text(d.get("volume")),
                "satuan": _text(d.get("satuan")),
                "pagu": _rupiah(d.get("cost")),
                "opd": unit_name(opd, names) or _text(opd),
            }
        )
    not_agreed = []
    for pid in sorted(outcome):
        etype, p = outcome[pid]
        reason = _text(p.get("reason"))
        if etype == ET.PROPOSAL_MERGED:
            reason = "digabung dengan usulan lain yang serupa"
        not_agreed.append({**described(pid), "keputusan": NOT_AGREED[etype], "alasan": reason})
    ba = closing.get("berita_acara") or {}
    auto = not ba
    if auto:  # closed by the system: what was left undecided was not deliberated
        forwarded = set(closing.get("forwarded", []))
        for pid in sorted(set(states) - forwarded - set(outcome)):
            not_agreed.append(
                {**described(pid), "keputusan": "Tidak dibahas", "alasan": AUTO_CLOSE_REASON}
            )
    day = (
        date.fromisoformat(ba["tanggal"])
        if ba.get("tanggal")
        else date.fromisoformat(str(closing.get("deadline", "1970-01-01"))[:10])
    )
    signers = [{"role": "Penandatangan", "name": s} for s in ba.get("penandatangan", [])]
    if signers:
        signers[0]["role"] = "Pimpinan forum"
    checkpoint = closing.get("checkpoint") or {}
    kop = [f"Pemerintah {region_name}"]
    if unit.count(".") >= 2:
        kop.append(f"Kecamatan {unit_name('.'.join(unit.split('.')[:3]), names) or ''}")
    if unit.count(".") == 3:
        kop.append(f"Kelurahan {place}")
    return {
        "title": f"Berita Acara {STAGE_TITLES.get(stage, stage).title()} {place}",
        "title_line": f"{STAGE_TITLES.get(stage, stage.upper())} {place.upper()}",
        "region_name": region_name,
        "kop": kop,
        "forum_id": opened["forum_id"],
        "nomor": f"BA/{stage.upper()}/{unit}/{cycle}",
        "opening": opening(day, stage, place) + (AUTO_CLOSED if auto else ""),
        "chair": _text(opened.get("chaired_by") or (ba.get("penandatangan") or ["sistem"])[0]),
        "tempat": _text(ba.get("tempat")) or "-",
        "peserta": _text(ba.get("peserta") or "-"),
        "catatan": ba.get("catatan"),
        "agreed": agreed,
        "total": _rupiah(closing.get("accepted_total")),
        "not_agreed": not_agreed,
        "signers": signers or [{"role": "Sistem", "name": "ditutup otomatis"}],
        "checkpoint": {
            "origin": _text(checkpoint.get("origin")) or "-",
            "size": _text(checkpoint.get("size")) or "-",
            "root": _text(checkpoint.get("root")) or "-",
        },
        "note": checkpoint.get("note"),
        "qr": bool(checkpoint.get("note")),
    }


def render(doc: Mapping[str, Any], paper: str = "a4") -> bytes:
    """The PDF's bytes: the same document and paper always give the same bytes."""
    width, height = PAPERS[paper]
    data = {k: v for k, v in doc.items() if k not in ("note", "qr")}
    data.update(width=width, height=height, qr=None)
    inputs = {"data": ""}
    if doc.get("qr") and doc.get("note"):
        qr = io.BytesIO()
        segno.make(str(doc["note"]), error="m").save(
            qr, kind="svg", scale=3, border=2, xmldecl=False
        )
        inputs["qr"] = qr.getvalue().decode()
        data["qr"] = True
    inputs["data"] = json.dumps(data, ensure_ascii=False, sort_keys=True)
    pdf: bytes = typst.compile(
        TEMPLATE.encode(), format="pdf", sys_inputs=inputs, ignore_system_fonts=True
    )
    return pdf


def digest(doc: Mapping[str, Any]) -> dict[str, Any]:
    """What the closing record says of its Berita Acara: each paper's SHA-256 and size."""
    out: dict[str, Any] = {"renderer": RENDERER}
    for paper in PAPERS:
        pdf = render(doc, paper)
        out[paper] = {"sha256": hashlib.sha256(pdf).hexdigest(), "bytes": len(pdf)}
    return out


async def from_log(
    conn: Any,
    forum_id: str,
    closing: Mapping[str, Any] | None = None,
    through_seq: int | None = None,
) -> tuple[dict[str, Any], int] | None:
    """The Berita Acara's content as the log holds it: with `closing`, the forum about to
    close (its usulan's events through `through_seq`); without, the forum as it closed
    (through the seq its closing record names). With it, the last seq it read (0: none).
    None: no such forum, or not closed."""
    opened, closed = await queries.forum_records(conn, forum_id)
    if opened is None:
        return None
    if closing is None:
        if closed is None:
            return None
        closing = closed["payload"]
        recorded = (closing.get("berita_acara_pdf") or {}).get("through_seq")
        through_seq = int(recorded) if recorded else int(closed["seq"]) - 1
    cycle = str(opened.get("cycle_id"))
    state = await queries.cycle_state(conn, cycle) or {}
    events = await queries.forum_proposal_events(
        conn, cycle, opened["stage"], opened["unit"], list(opened.get("incoming", [])), through_seq
    )
    names = state.get("names") or {}
    region = state.get("name") or unit_name(str(state.get("region") or ""), names) or ""
    doc = document(
        opened,
        closing,
        events,
        names,
        f"Kota {region}"
        if region and not region.lower().startswith(("kota", "kabupaten"))
        else region,
    )
    return doc, max((int(e["seq"]) for e in events), default=0)
