"""What a Bappeda opens in Excel and what it publishes: the workbook keeps codes as text and
says who decided what and when; the CSV has a BOM and `;`; the open data validates against
its schema and names no official; lists and search find the usulan."""

from __future__ import annotations

import csv
import io
from typing import Any

import httpx
from jsonschema import Draft202012Validator
from openpyxl import load_workbook

from musrenbang.api.auth import issue_token
from musrenbang.config import Settings
from tests.api.test_api import KEL, open_cycle, usulan, wait_forum


async def _decided_forum(api: httpx.AsyncClient, token: Any, year: int) -> tuple[str, list[str]]:
    cycle = await open_cycle(api, token, year)
    forum = f"/cycles/{cycle}/forums/kelurahan/{KEL}"
    await wait_forum(api, token, forum)
    lurah = token("coordinator", KEL)
    ids = (
        await api.post(
            f"{forum}/proposals",
            json={
                "proposals": [
                    usulan("Jalan lingkungan rusak", "jalan", 150_000_000),
                    usulan("Drainase tersumbat sampah", "drainase", 90_000_000),
                ]
            },
            headers=lurah,
        )
    ).json()["proposal_ids"]
    road, drain = ids
    decisions = [
        {"proposal_id": road, "kind": "prioritize", "rank": 1, "scores": {"rkpd": 5}},
        {
            "proposal_id": road,
            "kind": "revise",
            "reason": "Volume disesuaikan",
            "changes": {"cost": 120_000_000, "volume": 100},
        },
        {
            "proposal_id": drain,
            "kind": "reject",
            "reason": "Sudah dianggarkan Dinas PUPR",
            "reason_code": "sudah-dianggarkan",
        },
    ]
    res = await api.post(f"{forum}/decisions", json={"decisions": decisions}, headers=lurah)
    assert res.status_code == 200, res.text
    return cycle, ids


async def test_exports_keep_codes_names_and_who_decided(
    api: httpx.AsyncClient, token: Any, cycle_year: int
) -> None:
    cycle, (road, drain) = await _decided_forum(api, token, cycle_year)
    auditor = token("auditor")

    book = await api.get(f"/cycles/{cycle}/export.xlsx", headers=auditor)
    assert book.status_code == 200 and book.headers["content-type"].startswith(
        "application/vnd.openxmlformats"
    )
    workbook = load_workbook(io.BytesIO(book.content))
    assert workbook.sheetnames[0] == "Usulan" and "kelurahan" in workbook.sheetnames
    sheet = workbook["Usulan"]
    header = [c.value for c in sheet[1]]
    rows = [dict(zip(header, (c.value for c in row), strict=True)) for row in sheet.iter_rows(2)]
    by_id = {r["ID usulan"]: r for r in rows}
    revised, rejected = by_id[road], by_id[drain]
    assert revised["RT"] == "003" and sheet.cell(2, header.index("RT") + 1).number_format == "@"
    assert revised["Kode kelurahan"] == KEL and revised["Kelurahan"]
    assert (revised["Biaya awal (Rp)"], revised["Biaya (Rp)"]) == (150_000_000, 120_000_000)
    assert (revised["Volume awal"], revised["Volume"]) == (120, 100)
    assert revised["Peringkat"] == 1 and '"rkpd": 5' in revised["Skor"]
    assert revised["Kode OPD awal"] == "dinas-pupr" and revised["OPD akhir"]
    assert rejected["Kode alasan"] == "sudah-dianggarkan"
    assert rejected["Diputuskan oleh"] == f"coordinator.{KEL}" and rejected["Diputuskan pada"]
    stage_only = await api.get(f"/cycles/{cycle}/export.xlsx?stage=kelurahan", headers=auditor)
    assert load_workbook(io.BytesIO(stage_only.content)).sheetnames == ["kelurahan"]
    missing = await api.get(f"/cycles/{cycle}/export.xlsx?stage=provinsi", headers=auditor)
    assert missing.status_code == 404

    text = await api.get(f"/cycles/{cycle}/export.csv", headers=auditor)
    assert text.content.startswith(b"\xef\xbb\xbf")  # the BOM: Excel reads UTF-8
    parsed = list(csv.DictReader(io.StringIO(text.content.decode("utf-8-sig")), delimiter=";"))
    assert {r["proposal_id"]: r["rt"] for r in parsed} == {road: "003", drain: "003"}
    assert {r["final_status"] for r in parsed} == {"accepted", "rejected"}

    data = (await api.get(f"/cycles/{cycle}/export.json", headers=auditor)).json()
    schema = (await api.get("/schemas/open-data.json")).json()
    Draft202012Validator(schema).validate(data)
    assert {u["proposal_id"] for u in data["usulan"]} == {road, drain}
    assert all("decided_by" not in u for u in data["usulan"])


async def test_lists_and_search_find_the_usulan(
    api: httpx.AsyncClient, token: Any, cycle_year: int, settings: Settings
) -> None:
    cycle, (road, drain) = await _decided_forum(api, token, cycle_year)
    auditor = token("auditor")
    listed = (await api.get("/cycles", headers=auditor)).json()["cycles"]
    assert [c["cycle_id"] for c in listed] == [cycle]
    assert listed[0]["region"] == "13.72" and listed[0]["name"] == "Kota Solok"

    async def found(query: str) -> list[str]:
        res = await api.get(f"/cycles/{cycle}/proposals?{query}", headers=auditor)
        assert res.status_code == 200, res.text
        return [p["proposal_id"] for p in res.json()["proposals"]]

    assert sorted(await found("")) == sorted([road, drain])
    assert await found("q=drainase") == [drain]
    assert await found("q=DRAINASE%20TERSUMBAT") == [drain]
    assert await found("q=50%25") == []  # a % is a character, not a wildcard
    assert await found("status=rejected") == [drain]
    assert await found("bidang=jalan") == [road]
    assert sorted(await found(f"kelurahan={KEL[:8]}")) == sorted([road, drain])  # kecamatan
    assert await found("kelurahan=13.72.02.1001") == []
    page = (await api.get(f"/cycles/{cycle}/proposals?limit=1", headers=auditor)).json()
    nxt = page["next_after"]
    rest = await found(f"limit=1&after={nxt}")
    assert len(page["proposals"]) == 1 and rest and rest[0] != nxt
    bad = await api.get(f"/cycles/{cycle}/proposals?kelurahan=xx", headers=auditor)
    assert bad.status_code == 422 and bad.json()["error"] == "ValidationError"
    elsewhere = {
        "Authorization": f"Bearer {issue_token(settings, 'bpk.x', 'auditor', regions=['13.74'])}"
    }
    assert (await api.get("/cycles", headers=elsewhere)).json()["cycles"] == []
    refused = await api.get(f"/cycles/{cycle}/proposals", headers=elsewhere)
    assert refused.status_code == 403 and refused.json()["error"] == "Forbidden"
