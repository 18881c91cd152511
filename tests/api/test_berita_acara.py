"""The Berita Acara of a closed forum as a PDF: rendered from the log, the same bytes every
time, whose SHA-256 its closing record holds; its text, read back, is the forum's events."""

from __future__ import annotations

import hashlib
import io
import re
from typing import Any

import httpx
from pypdf import PdfReader
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.api.test_api import BA, KEL, open_cycle, usulan, wait_forum

MARKUP = "Pengadaan timbangan #set text(40pt)"


def _idea(masalah: str, bidang: str, cost: int, gagasan: str) -> dict[str, Any]:
    return {**usulan(masalah, bidang, cost), "gagasan": gagasan}


def _text(pdf: bytes) -> str:
    pages = PdfReader(io.BytesIO(pdf)).pages
    return re.sub(r"\s+", " ", " ".join(page.extract_text() for page in pages))


async def test_a_closed_forum_has_its_berita_acara_as_a_pdf(
    api: httpx.AsyncClient, token: Any, engine: AsyncEngine, cycle_year: int
) -> None:
    cycle = await open_cycle(api, token, cycle_year)
    forum = f"/cycles/{cycle}/forums/kelurahan/{KEL}"
    await wait_forum(api, token, forum)
    lurah, auditor = token("coordinator", KEL), token("auditor")
    ids = (
        await api.post(
            f"{forum}/proposals",
            json={
                "proposals": [
                    {
                        **usulan("Drainase tersumbat", "drainase", 90_000_000),
                        "gagasan": "Normalisasi saluran",
                    },
                    {
                        **usulan("Jalan rusak", "jalan", 150_000_000),
                        "gagasan": "Pengaspalan jalan lingkungan",
                    },
                    {
                        **usulan("Posyandu kurang alat", "posyandu", 25_000_000),
                        "gagasan": "Pengadaan timbangan #set text(40pt)",
                    },
                ]
            },
            headers=lurah,
        )
    ).json()["proposal_ids"]
    drain, road, health = ids
    decisions = [
        {"proposal_id": road, "kind": "prioritize", "rank": 1},
        {"proposal_id": drain, "kind": "prioritize", "rank": 2},
        {"proposal_id": road, "kind": "accept"},
        {"proposal_id": drain, "kind": "accept"},
        {
            "proposal_id": health,
            "kind": "reject",
            "reason": "Sudah dianggarkan Dinas Kesehatan",
            "reason_code": "sudah-dianggarkan",
        },
    ]
    assert (
        await api.post(f"{forum}/decisions", json={"decisions": decisions}, headers=lurah)
    ).status_code == 200
    pdf_path = f"{forum}/berita-acara.pdf"
    still_open = await api.get(pdf_path, headers=auditor)
    assert still_open.status_code == 409 and still_open.json()["error"] == "Conflict"
    closed = await api.post(f"{forum}/close", json={"berita_acara": BA}, headers=lurah)
    assert closed.status_code == 200, closed.text

    first = await api.get(pdf_path, headers=auditor)
    again = await api.get(pdf_path, headers=auditor)
    assert first.status_code == 200 and first.headers["content-type"] == "application/pdf"
    assert first.content == again.content  # deterministic
    digest = hashlib.sha256(first.content).hexdigest()
    assert first.headers["x-content-sha256"] == digest == first.headers["x-recorded-sha256"]
    async with engine.connect() as conn:
        recorded = (
            await conn.execute(
                text(
                    "SELECT payload FROM audit.events WHERE type = 'ForumClosed'"
                    " AND payload->'berita_acara'->>'tempat' = :t"
                ),
                {"t": BA["tempat"]},
            )
        ).scalar_one()
    assert recorded["berita_acara_pdf"]["a4"]["sha256"] == digest  # in the log, at the close
    f4 = await api.get(f"{pdf_path}?kertas=f4", headers=auditor)
    assert hashlib.sha256(f4.content).hexdigest() == recorded["berita_acara_pdf"]["f4"]["sha256"]

    words = _text(first.content)
    assert "BERITA ACARA" in words and "Nomor: BA/KELURAHAN/" in words
    assert (
        "Pada hari ini Rabu tanggal dua puluh bulan Januari tahun dua ribu dua puluh tujuh" in words
    )
    assert "Jumlah peserta : 40 orang" in words or "40 orang" in words
    # agreed, in priority order, with pagu in Rupiah; not agreed with its reason
    assert words.index("Pengaspalan jalan lingkungan") < words.index("Normalisasi saluran")
    assert "150.000.000" in words and "240.000.000" in words
    assert MARKUP in words  # markup in an usulan is only text
    assert "Ditolak" in words and "Sudah dianggarkan Dinas Kesehatan" in words
    for signer in BA["penandatangan"]:
        assert signer in words
    assert f"berukuran {recorded['checkpoint']['size']} peristiwa" in words
    assert recorded["checkpoint"]["origin"] in words

    other = await api.get(
        f"/cycles/{cycle}/forums/kelurahan/13.72.99.9999/berita-acara.pdf", headers=auditor
    )
    assert other.status_code == 404
