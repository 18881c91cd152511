"""Records that cannot collide: two regions on one deployment use the same client
reference, and each usulan keeps its own id, history, state and export row."""

from __future__ import annotations

import csv
import io
import time
from typing import Any

import httpx
import jwt
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from musrenbang.domain.calendar import fixed_holidays
from musrenbang.domain.receipts import ALPHABET
from musrenbang.events.verify import verify_read_models
from tests.api.test_api import usulan, wait_forum

REGIONS = {"13.72": "13.72.01.1001", "13.74": "13.74.01.1001"}  # Solok, Padang Panjang
REFERENCE = "TS-CIATER-004"


async def _snapshot(engine: AsyncEngine) -> list[Any]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT proposal_id, status, state, version FROM read.proposals ORDER BY 1")
        )
        return [tuple(r) for r in rows]


async def _open_cycles(api: httpx.AsyncClient, token: Any, year: int) -> None:
    for region in REGIONS:
        res = await api.post(
            "/cycles",
            json={"region": region, "year": year, "holidays": fixed_holidays(year - 1)},
            headers=token("admin"),
        )
        assert res.status_code == 201, res.text


async def test_one_client_reference_in_two_regions_stays_two_usulan(
    api: httpx.AsyncClient, token: Any, engine: AsyncEngine, cycle_year: int
) -> None:
    auditor = token("auditor")
    submitted: dict[str, dict[str, Any]] = {}
    await _open_cycles(api, token, cycle_year)
    for region, kel in REGIONS.items():
        forum = f"/cycles/{region}-{cycle_year}/forums/kelurahan/{kel}"
        await wait_forum(api, token, forum)
        lurah = token("coordinator", kel)
        twice = await api.post(
            f"{forum}/proposals",
            json={
                "proposals": [
                    {**usulan("Jalan rusak", "jalan", 10_000_000), "reference": "R-1"},
                    {**usulan("Jalan retak", "jalan", 20_000_000), "reference": "R-1"},
                ]
            },
            headers=lurah,
        )
        assert twice.status_code == 422 and "twice" in twice.json()["detail"], twice.text
        res = await api.post(
            f"{forum}/proposals",
            json={
                "proposals": [
                    {**usulan(f"Jalan {region}", "jalan", 50_000_000), "reference": REFERENCE}
                ]
            },
            headers=lurah,
        )
        assert res.status_code == 200, res.text
        body = res.json()
        assert len(body["proposal_ids"]) == len(body["receipt_codes"]) == 1
        submitted[region] = {"id": body["proposal_ids"][0], "receipt": body["receipt_codes"][0]}
        again = await api.post(
            f"{forum}/proposals",
            json={"proposals": [{**usulan("Lagi", "jalan", 5_000_000), "reference": REFERENCE}]},
            headers=lurah,
        )
        assert again.status_code == 409, again.text
    ids = {s["id"] for s in submitted.values()}
    assert len(ids) == 2 and REFERENCE not in ids, "the server assigns the ids"
    for s in submitted.values():
        code = s["receipt"].replace("-", "")
        assert len(code) == 12 and set(code) <= set(ALPHABET)
    for region, s in submitted.items():
        state = (await api.get(f"/proposals/{s['id']}", headers=auditor)).json()
        assert state["details"]["masalah"] == f"Jalan {region}"
        assert state["details"]["reference"] == REFERENCE and state["receipt"] == s["receipt"]
        history = (await api.get(f"/proposals/{s['id']}/history", headers=auditor)).json()
        assert [e["payload"]["cycle_id"] for e in history["events"]] == [f"{region}-{cycle_year}"]
        export = await api.get(f"/cycles/{region}-{cycle_year}/export.csv", headers=auditor)
        rows = list(csv.DictReader(io.StringIO(export.content.decode("utf-8-sig")), delimiter=";"))
        assert [(r["proposal_id"], r["reference"]) for r in rows] == [(s["id"], REFERENCE)]
    live = await _snapshot(engine)
    async with engine.connect() as conn:  # the read models are a fold of the log
        check = await verify_read_models(conn)
    assert check.ok and check.checked > 0, (check.record, check.problem)
    assert await _snapshot(engine) == live


async def test_every_token_is_held_to_its_region(
    api: httpx.AsyncClient, token: Any, settings: Any, cycle_year: int
) -> None:
    from musrenbang.api.auth import issue_token

    await _open_cycles(api, token, cycle_year)
    solok = f"/cycles/13.72-{cycle_year}"
    forum = f"{solok}/forums/kelurahan/{REGIONS['13.72']}"
    await wait_forum(api, token, forum)
    res = await api.post(
        f"{forum}/proposals",
        json={"proposals": [usulan("Jalan rusak", "jalan", 10_000_000)]},
        headers=token("coordinator", REGIONS["13.72"]),
    )
    pid = res.json()["proposal_ids"][0]

    def bearer(*args: Any, **kw: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {issue_token(settings, 'x', *args, **kw)}"}

    other_opd = bearer("coordinator", opd="dinas-pupr", region="13.74")
    other_lurah = token("coordinator", REGIONS["13.74"])
    other_dprd = bearer("dprd", region="13.74")
    only_other = bearer("auditor", regions=["13.74"])
    writes = [
        (
            f"{solok}/forums/forum-pd/dinas-pupr/decisions",
            other_opd,
            {"decisions": [{"proposal_id": pid, "kind": "accept"}]},
        ),
        (f"{forum}/proposals", other_lurah, {"proposals": [usulan("Jalan", "jalan", 10_000_000)]}),
        (
            f"{solok}/pokir",
            other_dprd,
            {"dapil": "Dapil 1", "proposals": [usulan("PJU", "pju", 9_000_000)]},
        ),
        ("/cycles", bearer("admin", region="13.74"), {"region": "13.72", "year": 2099}),
        ("/cycles", token("auditor"), {"region": "not a region"}),  # 403 before the body
    ]
    for path, who, body in writes:
        res = await api.post(path, json=body, headers=who)
        assert res.status_code == 403, (path, res.text)
    for path in (solok, f"{solok}/export.csv", f"{solok}/forums", f"{solok}/funnel", forum):
        for who in (other_lurah, other_dprd, only_other):
            res = await api.get(path, headers=who)
            assert res.status_code == 403, (path, res.text)
    for path in (f"/proposals/{pid}", f"/proposals/{pid}/history"):
        assert (await api.get(path, headers=only_other)).status_code == 404
        assert (await api.get(path, headers=token("auditor"))).status_code == 200
    mine = await api.get(f"/cycles/13.74-{cycle_year}", headers=only_other)
    assert mine.status_code == 200, mine.text
    events = await api.get("/events", params={"cycle": f"13.72-{cycle_year}"}, headers=only_other)
    assert events.status_code == 403
    scoped = (await api.get("/audit/verify", headers=only_other)).json()
    everything = (await api.get("/audit/verify", headers=token("auditor"))).json()
    assert scoped["ok"] and 0 < scoped["checked"] < everything["checked"]
    for claims in ({"opd": "dinas-pupr"}, {}):  # an OPD, a DPRD member: no region named
        role = "coordinator" if claims else "dprd"
        raw = {"sub": "x", "role": role, "aud": "musrenbang", "exp": int(time.time()) + 3600}
        unplaced = jwt.encode({**raw, **claims}, settings.jwt_secret)
        res = await api.get(solok, headers={"Authorization": f"Bearer {unplaced}"})
        assert res.status_code == 401 and "region" in res.json()["detail"], res.text
