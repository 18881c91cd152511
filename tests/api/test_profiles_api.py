"""Region profiles through the API: `POST /cycles` takes one (a shipped region's code or an
object), refuses one that cannot plan and writes nothing, and the names it gives appear
beside the codes in the answers and the export."""

from __future__ import annotations

import csv
import io
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from musrenbang.domain.calendar import fixed_holidays
from tests.api.test_api import KEL, REGION, usulan, wait_forum

OWN = {
    "opds": [
        {
            "slug": "dinas-pu-solok",
            "name": "Dinas Pekerjaan Umum dan Penataan Ruang Kota Solok",
            "bidang": ["jalan", "drainase"],
            "chair": "Kepala Dinas PUPR",
        },
        {"slug": "dinkes-solok", "name": "Dinas Kesehatan Kota Solok", "bidang": ["kesehatan"]},
    ],
    "pagu": {"kelurahan": {"per_forum": 400_000_000, "units": {KEL: 900_000_000}}},
    "reason_codes": [{"code": "tak-layak", "name": "Tidak layak dibiayai"}],
}


def _cycle(year: int, **body: Any) -> dict[str, Any]:
    return {"region": REGION, "year": year, "holidays": fixed_holidays(year - 1, year), **body}


async def test_a_cycle_runs_on_the_profile_it_is_given(
    api: httpx.AsyncClient, token: Any, engine: AsyncEngine, cycle_year: int
) -> None:
    admin, auditor = token("admin"), token("auditor")
    async with engine.connect() as conn:
        before = (await conn.execute(text("SELECT count(*) FROM audit.events"))).scalar_one()
    for profile, says in (
        ({"pagu": {"kelurahan": 5}}, '"opds"'),
        ({**OWN, "stages": [{"slug": "a", "name": "A", "level": "city", "chaired_by": "x"}]}, ""),
        ({**OWN, "opds": [{**OWN["opds"][0], "bidang": ["jalan"]}] * 2}, "given twice"),
        ("99.99", "no profile for region"),
        ({**OWN, "pagu": {"kelurahan": {"units": {"36.71.01.1001": 1}}}}, "not a kelurahan"),
    ):
        res = await api.post("/cycles", json=_cycle(cycle_year, profile=profile), headers=admin)
        assert res.status_code == 422, res.text
        body = res.json()
        assert body["error"] in ("Refused", "ValidationError") and says in body["detail"]
    async with engine.connect() as conn:
        after = (await conn.execute(text("SELECT count(*) FROM audit.events"))).scalar_one()
    assert after == before  # a refused plan writes nothing

    res = await api.post("/cycles", json=_cycle(cycle_year, profile=OWN), headers=admin)
    assert res.status_code == 201, res.text
    created = res.json()
    assert created["profile"] == "request" and created["opds"] == ["dinas-pu-solok", "dinkes-solok"]
    cycle = created["cycle_id"]
    forum = f"/cycles/{cycle}/forums/kelurahan/{KEL}"
    await wait_forum(api, token, forum)
    state = (await api.get(forum, headers=auditor)).json()
    assert state["pagu"] == 900_000_000 and state["unit_name"]  # its own pagu, its name
    lurah = token("coordinator", KEL)
    ids = (
        await api.post(
            f"{forum}/proposals",
            json={"proposals": [usulan("Jalan rusak", "jalan", 300_000_000)]},
            headers=lurah,
        )
    ).json()["proposal_ids"]
    refused = await api.post(
        f"{forum}/decisions",
        json={
            "decisions": [
                {
                    "proposal_id": ids[0],
                    "kind": "reject",
                    "reason": "Tidak",
                    "reason_code": "sudah-dianggarkan",
                }
            ]
        },
        headers=lurah,
    )
    assert refused.status_code == 422 and "tak-layak" in refused.json()["detail"]
    decided = await api.post(
        f"{forum}/decisions",
        json={
            "decisions": [
                {
                    "proposal_id": ids[0],
                    "kind": "reject",
                    "reason": "Tidak",
                    "reason_code": "tak-layak",
                }
            ]
        },
        headers=lurah,
    )
    assert decided.status_code == 200, decided.text

    held = (await api.get(forum, headers=auditor)).json()["proposals"]
    assert held[0]["opd"] == "dinas-pu-solok"
    assert held[0]["opd_name"] == "Dinas Pekerjaan Umum dan Penataan Ruang Kota Solok"
    assert held[0]["kelurahan_name"] == state["unit_name"]
    one = (await api.get(f"/proposals/{ids[0]}", headers=auditor)).json()
    assert one["names"]["opd_name"] == held[0]["opd_name"]
    assert one["names"]["kecamatan"] == "13.72.01" and one["names"]["kecamatan_name"]
    export = await api.get(f"/cycles/{cycle}/export.csv", headers=auditor)
    [row] = list(csv.DictReader(io.StringIO(export.content.decode("utf-8-sig")), delimiter=";"))
    assert row["kelurahan_name"] == state["unit_name"] and row["opd_name"] == held[0]["opd_name"]
    assert row["reason_code"] == "tak-layak"
    overview = (await api.get(f"/cycles/{cycle}", headers=auditor)).json()
    assert overview["names"]["dinkes-solok"] == "Dinas Kesehatan Kota Solok"
    assert overview["profile"]["source"] == "request"


async def test_the_profile_a_region_plans_with_can_be_read(
    api: httpx.AsyncClient, token: Any, cycle_year: int
) -> None:
    auditor = token("auditor")
    tangsel = (await api.get("/profiles/36.74", headers=auditor)).json()
    assert tangsel["name"] == "KOTA TANGERANG SELATAN" or "Tangerang Selatan" in tangsel["name"]
    assert tangsel["source"] == "shipped:36.74"
    assert {o["slug"] for o in tangsel["opds"]} >= {"dsdabmbk", "dcktr", "disperkimta"}
    assert any(s["code"] == "1.03.10.2.01.0055" for s in tangsel["sub_kegiatan"])
    solok = (await api.get("/profiles/13.72", headers=auditor)).json()
    assert solok["source"] == "default" and solok["stages"][0]["slug"] == "kelurahan"
    missing = await api.get("/profiles/99.99", headers=auditor)
    assert missing.status_code == 404 and missing.json()["error"] == "NotFound"
    assert (await api.get("/profiles/36.74")).status_code == 401
    books = (await api.get("/nomenclature", headers=auditor)).json()["catalogues"]
    assert {b["name"] for b in books} == {"kepmendagri-900-2023", "sipd-2027"}
    # the profile as read is one POST /cycles takes back, for another region too
    back = await api.post(
        "/cycles", json=_cycle(cycle_year, profile=tangsel), headers=token("admin")
    )
    assert back.status_code == 201, back.text
    assert back.json()["opds"] == [o["slug"] for o in tangsel["opds"]]
