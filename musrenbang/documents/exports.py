"""The exports of a cycle: a workbook (one sheet for the cycle, one per stage), a CSV that
Excel opens as it is (UTF-8 with a BOM, `;` between fields) and an open-data JSON file
with a documented schema. Pure: the rows are folded here from the usulan's states and
events, read by the caller."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from openpyxl import Workbook
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter

from musrenbang.domain.catalogue import EventType as ET
from musrenbang.domain.decisions import EVENT_OF
from musrenbang.domain.regions import place_names, unit_name

DECISIONS = frozenset(EVENT_OF.values()) | {ET.PROPOSAL_NOT_DELIBERATED}
CSV_SEPARATOR = ";"  # what Excel in an Indonesian locale reads as the field separator
TEXT_COLUMNS = frozenset(  # codes: kept as text, so RT 003 stays 003
    {
        "proposal_id",
        "receipt",
        "kelurahan",
        "kecamatan",
        "rt",
        "rw",
        "opd_awal",
        "opd",
        "sub_kegiatan",
        "unit",
        "reference",
    }
)


@dataclass
class Trail:
    """What an usulan's events say beyond its state: where it came from, its last decision
    per stage (who and when), its rank and scores per stage."""

    submitted: dict[str, Any] = field(default_factory=dict)
    proposer: Any = None
    decisions: dict[str, dict[str, Any]] = field(default_factory=dict)  # stage -> decision
    last: dict[str, Any] | None = None
    priority: dict[str, dict[str, Any]] = field(default_factory=dict)  # stage -> rank, scores


def trails(events: Sequence[Mapping[str, Any]]) -> dict[str, Trail]:
    out: dict[str, Trail] = {}
    for e in events:
        trail = out.setdefault(e["proposal_id"], Trail())
        payload, etype = e["payload"] or {}, e["type"]
        stage = str(payload.get("stage") or "")
        if etype in (ET.PROPOSAL_SUBMITTED, ET.POKIR_SUBMITTED):
            trail.submitted = dict(payload.get("details") or {})
            trail.proposer = payload.get("proposer")
        elif etype == ET.PROPOSAL_PRIORITIZED:
            trail.priority[stage] = {"rank": payload.get("rank"), "scores": payload.get("scores")}
        elif etype in DECISIONS and "absorbed" not in payload:
            actor = e["actor"] or {}
            decided = {
                "type": etype,
                "by": actor.get("subject") or ("sistem" if actor.get("system") else None),
                "role": actor.get("role"),
                "at": e["at"],
                "reason_code": payload.get("reason_code"),
                "reason": payload.get("reason"),
            }
            trail.decisions[stage] = decided
            trail.last = decided
    return out


COLUMNS: tuple[tuple[str, str], ...] = (
    ("proposal_id", "ID usulan"),
    ("receipt", "Nomor usulan"),
    ("kind", "Jenis"),
    ("kelurahan", "Kode kelurahan"),
    ("kelurahan_name", "Kelurahan"),
    ("kecamatan", "Kode kecamatan"),
    ("kecamatan_name", "Kecamatan"),
    ("rt", "RT"),
    ("rw", "RW"),
    ("alamat", "Alamat"),
    ("bidang", "Bidang"),
    ("masalah", "Masalah"),
    ("gagasan", "Gagasan"),
    ("volume_original", "Volume awal"),
    ("volume", "Volume"),
    ("satuan", "Satuan"),
    ("cost_original", "Biaya awal (Rp)"),
    ("cost", "Biaya (Rp)"),
    ("opd_awal", "Kode OPD awal"),
    ("opd_awal_name", "OPD awal"),
    ("opd", "Kode OPD akhir"),
    ("opd_name", "OPD akhir"),
    ("sub_kegiatan", "Kode sub kegiatan"),
    ("sub_kegiatan_name", "Sub kegiatan"),
    ("rank", "Peringkat"),
    ("scores", "Skor"),
    ("final_status", "Status akhir"),
    ("stage_reached", "Tahap"),
    ("unit", "Kode forum"),
    ("unit_name", "Forum"),
    ("decision", "Keputusan"),
    ("reason_code", "Kode alasan"),
    ("reason", "Alasan"),
    ("merged_into", "Digabung ke"),
    ("decided_by", "Diputuskan oleh"),
    ("decided_role", "Peran"),
    ("decided_at", "Diputuskan pada"),
    ("pokir_member", "Anggota DPRD (pokir)"),
    ("fraksi", "Fraksi"),
    ("dapil", "Dapil"),
    ("reference", "Referensi pengusul"),
)
KEYS = tuple(key for key, _ in COLUMNS)


def records(
    states: Mapping[str, Mapping[str, Any]],
    events: Sequence[Mapping[str, Any]],
    names: Mapping[str, str],
    stage: str | None = None,
) -> list[dict[str, Any]]:
    """One row per usulan (of those that reached `stage`, with that stage's decision; else
    every usulan with its last decision), in the order of their ids."""
    folded = trails(events)
    rows = []
    for pid in sorted(states):
        state, trail = states[pid], folded.get(pid, Trail())
        if stage is not None and stage not in trail.decisions and state.get("stage") != stage:
            continue
        d, first = state.get("details") or {}, trail.submitted
        decided = trail.decisions.get(stage) if stage is not None else trail.last
        priority = trail.priority.get(stage) if stage is not None else None
        if priority is None and stage is None and trail.priority:
            priority = list(trail.priority.values())[-1]
        proposer = trail.proposer if isinstance(trail.proposer, dict) else {}
        opd_awal, opd_akhir = first.get("opd"), d.get("opd_akhir") or d.get("opd")
        place = place_names(d, names)
        rows.append(
            {
                "proposal_id": pid,
                "receipt": state.get("receipt"),
                "kind": state.get("kind"),
                "kelurahan": d.get("kelurahan"),
                "kelurahan_name": place["kelurahan_name"],
                "kecamatan": place["kecamatan"],
                "kecamatan_name": place["kecamatan_name"],
                "rt": d.get("rt"),
                "rw": d.get("rw"),
                "alamat": d.get("alamat"),
                "bidang": d.get("bidang"),
                "masalah": d.get("masalah"),
                "gagasan": d.get("gagasan"),
                "volume_original": first.get("volume"),
                "volume": d.get("volume"),
                "satuan": d.get("satuan"),
                "cost_original": first.get("cost"),
                "cost": d.get("cost"),
                "opd_awal": opd_awal,
                "opd_awal_name": unit_name(opd_awal, names),
                "opd": opd_akhir,
                "opd_name": unit_name(opd_akhir, names),
                "sub_kegiatan": d.get("sub_kegiatan"),
                "sub_kegiatan_name": d.get("sub_kegiatan_name"),
                "rank": (priority or {}).get("rank"),
                "scores": json.dumps((priority or {}).get("scores") or {}, sort_keys=True)
                if priority
                else None,
                "final_status": state.get("status"),
                "stage_reached": state.get("stage"),
                "unit": state.get("unit"),
                "unit_name": unit_name(state.get("unit"), names),
                "decision": (decided or {}).get("type"),
                "reason_code": (decided or {}).get("reason_code"),
                "reason": (decided or {}).get("reason"),
                "merged_into": state.get("merged_into"),
                "decided_by": (decided or {}).get("by"),
                "decided_role": (decided or {}).get("role"),
                "decided_at": (decided or {}).get("at"),
                "pokir_member": proposer.get("member"),
                "fraksi": proposer.get("fraksi"),
                "dapil": proposer.get("dapil"),
                "reference": d.get("reference"),
            }
        )
    return rows


def to_csv(rows: Sequence[Mapping[str, Any]]) -> bytes:
    """UTF-8 with a BOM, `;` between fields, a header of the column keys."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=CSV_SEPARATOR, lineterminator="\r\n")
    writer.writerow(KEYS)
    writer.writerows([safe_text(row.get(k)) for k in KEYS] for row in rows)
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def to_xlsx(sheets: Sequence[tuple[str, Sequence[Mapping[str, Any]]]]) -> bytes:
    """A workbook with one sheet per (title, rows); codes are text cells."""
    book = Workbook()
    book.remove(book.active)
    for title, rows in sheets:
        sheet = book.create_sheet(title[:31])
        sheet.append([header for _, header in COLUMNS])
        for cell in sheet[1]:
            cell.font = Font(bold=True)
        for row in rows:
            sheet.append([_cell(k, row.get(k)) for k in KEYS])
        for n, key in enumerate(KEYS, start=1):
            letter = get_column_letter(n)
            if key in TEXT_COLUMNS:
                for cell in sheet[letter][1:]:
                    cell.number_format = "@"
            sheet.column_dimensions[letter].width = 14 if key in TEXT_COLUMNS else 18
        sheet.freeze_panes = "A2"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_text(value: Any) -> Any:
    """A text a spreadsheet would run as a formula, quoted so it stays text."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def _cell(key: str, value: Any) -> Any:
    if value is None:
        return None
    if key in TEXT_COLUMNS:
        return safe_text(str(value))
    return safe_text(value)


# Who decided is named in the workbook an official opens, not in data for everyone; nor
# where a proposer lives (the public page shows the kelurahan only).
PRIVATE = ("decided_by", "decided_role", "reference", "alamat", "rt", "rw")
# The open-data export (GET /cycles/{id}/export.json): JSON Schema 2020-12.
OPEN_DATA_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://musrenbang.example.go.id/schemas/open-data-v1.json",
    "title": "Usulan Musrenbang of one planning cycle, as open data",
    "type": "object",
    "required": ["schema", "cycle_id", "region", "year", "generated_from_seq", "usulan"],
    "properties": {
        "schema": {"const": "musrenbang-open-data/1"},
        "cycle_id": {"type": "string"},
        "region": {"type": "string", "description": "Kemendagri code of the kota/kabupaten"},
        "region_name": {"type": ["string", "null"]},
        "year": {"type": ["integer", "null"], "description": "the RKPD year"},
        "status": {"type": "string"},
        "generated_from_seq": {
            "type": "integer",
            "description": "the cycle's last event in the log when this was made",
        },
        "usulan": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["proposal_id", "final_status"],
                "properties": {
                    key: {"type": ["string", "number", "integer", "null"]}
                    for key in KEYS
                    if key not in PRIVATE
                },
                "additionalProperties": False,
            },
        },
    },
    "additionalProperties": False,
}


def open_data(cycle: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {
        "schema": "musrenbang-open-data/1",
        "cycle_id": cycle["cycle_id"],
        "region": cycle.get("region"),
        "region_name": cycle.get("name"),
        "year": cycle.get("year"),
        "status": cycle.get("status"),
        "generated_from_seq": cycle.get("last_seq"),
        "usulan": [{k: v for k, v in row.items() if k not in PRIVATE} for row in rows],
    }
