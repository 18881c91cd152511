"""The refusal contract through HTTP: racing commands, closed forums, and bytes the log
cannot hold each get one clear 4xx, write nothing, and leave the forum answering."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from musrenbang.api.app import create_app
from musrenbang.config import Settings
from musrenbang.domain.calendar import fixed_holidays
from musrenbang.events.db import create_engine
from tests.api.test_api import BA, KEL, open_cycle, usulan, wait_forum

# The cycle's other forums open meanwhile; everything else would come from the requests.
EVENTS = text("SELECT count(*) FROM audit.events WHERE type <> 'ForumOpened'")


async def _count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(EVENTS)).scalar_one())


async def _forum_with(
    api: httpx.AsyncClient, token: Any, year: int, costs: list[int]
) -> tuple[str, list[str]]:
    cycle = await open_cycle(api, token, year)  # pagu 500,000,000 per kelurahan
    forum = f"/cycles/{cycle}/forums/kelurahan/{KEL}"
    await wait_forum(api, token, forum)
    res = await api.post(
        f"{forum}/proposals",
        headers=token("coordinator", KEL),
        json={"proposals": [usulan(f"Jalan rusak {n}", "jalan", c) for n, c in enumerate(costs)]},
    )
    assert res.status_code == 200, res.text
    return forum, res.json()["proposal_ids"]


async def test_two_decisions_that_together_exceed_the_pagu(
    api: httpx.AsyncClient, token: Any, engine: AsyncEngine, cycle_year: int
) -> None:
    forum, (a, b) = await _forum_with(api, token, cycle_year, [300_000_000, 300_000_000])
    lurah = token("coordinator", KEL)
    answers = await asyncio.gather(
        *(
            api.post(
                f"{forum}/decisions",
                headers=lurah,
                json={"decisions": [{"proposal_id": pid, "kind": "accept"}]},
            )
            for pid in (a, b)
        )
    )
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [200, 422], [r.text for r in answers]
    refused = next(r for r in answers if r.status_code == 422).json()
    assert refused["error"] == "Refused" and "pagu indikatif" in refused["detail"]
    state = (await api.get(forum, headers=token("auditor"))).json()
    outcomes = sorted(p["status"] for p in state["proposals"])
    assert outcomes == ["accepted", "submitted"], "one recorded, the other untouched"
    undecided = next(p["proposal_id"] for p in state["proposals"] if p["status"] == "submitted")
    res = await api.post(
        f"{forum}/decisions",
        headers=lurah,
        json={"decisions": [{"proposal_id": undecided, "kind": "defer", "reason": "Tahun depan"}]},
    )
    assert res.status_code == 200, res.text
    res = await api.post(f"{forum}/close", json={"berita_acara": BA}, headers=lurah)
    assert res.status_code == 200, res.text


async def test_close_racing_a_decision_and_then_a_closed_forum(
    api: httpx.AsyncClient, token: Any, engine: AsyncEngine, cycle_year: int
) -> None:
    forum, (a,) = await _forum_with(api, token, cycle_year, [100_000_000])
    lurah = token("coordinator", KEL)
    decided, closed = await asyncio.gather(
        api.post(
            f"{forum}/decisions",
            headers=lurah,
            json={"decisions": [{"proposal_id": a, "kind": "accept"}]},
        ),
        api.post(f"{forum}/close", json={"berita_acara": BA}, headers=lurah),
    )
    assert decided.status_code == 200, decided.text
    if closed.status_code != 200:  # the close came first: one usulan was still undecided
        assert closed.status_code == 422 and "undecided" in closed.json()["detail"]
        closed = await api.post(f"{forum}/close", json={"berita_acara": BA}, headers=lurah)
        assert closed.status_code == 200, closed.text
    before = await _count(engine)
    for _ in range(3):  # while the workflow ends, and after it has ended
        late = await api.post(
            f"{forum}/decisions",
            headers=lurah,
            json={
                "decisions": [
                    {"proposal_id": a, "kind": "reject", "reason": "x", "reason_code": "duplikat"}
                ]
            },
        )
        assert late.status_code == 409, late.text
        assert late.json()["error"] == "Conflict" and "closed" in late.json()["detail"]
        await asyncio.sleep(0.3)
    assert await _count(engine) == before


async def test_texts_the_log_cannot_hold_are_refused_by_field(
    api: httpx.AsyncClient, token: Any, engine: AsyncEngine, cycle_year: int
) -> None:
    forum, (a,) = await _forum_with(api, token, cycle_year, [100_000_000])
    lurah = token("coordinator", KEL)
    before = await _count(engine)
    bad = [
        (
            f"{forum}/proposals",
            {
                "proposals": [
                    {**usulan("Jalan", "jalan", 10_000_000), "masalah": "Jalan\u0000rusak"}
                ]
            },
            "masalah",
        ),
        (
            f"{forum}/proposals",
            {"proposals": [{**usulan("Jalan rusak", "jalan", 10_000_000), "alamat": "Jl. \ud800"}]},
            "alamat",
        ),
        (
            f"{forum}/decisions",
            {
                "decisions": [
                    {"proposal_id": a, "kind": "revise", "changes": {"gagasan": "Aspal\u0000"}}
                ]
            },
            "changes.gagasan",
        ),
        (
            f"{forum}/decisions",
            {"decisions": [{"proposal_id": a, "kind": "revise", "changes": {"x\u0000": 1}}]},
            "changes",
        ),
        (
            f"{forum}/close",
            {"berita_acara": {**BA, "tempat": "Aula\u0007"}},
            "berita_acara.tempat",
        ),
        (
            f"{forum}/close",
            {"berita_acara": {**BA, "penandatangan": ["Lurah", "Ketua\udfff"]}},
            "penandatangan[1]",
        ),
        (
            f"{forum}/deadline",
            {"new_deadline": "2099-01-01T00:00:00+07:00", "reason": "Banjir\u0000"},
            "reason",
        ),
    ]
    for path, body, field in bad:
        # json.dumps escapes a lone surrogate as \\udXXX, as a hostile client would send it
        raw = json.dumps(body).encode()
        res = await api.post(
            path, content=raw, headers={**lurah, "Content-Type": "application/json"}
        )
        assert res.status_code == 422, (path, res.text)
        assert res.json()["error"] == "ValidationError" and field in res.json()["detail"], res.text
    pokir = await api.post(
        f"/cycles/{forum.split('/')[2]}/pokir",
        headers=token("dprd"),
        json={"dapil": "Solok\u00001", "proposals": [usulan("Lampu", "pju", 10_000_000)]},
    )
    assert pokir.status_code == 422 and "dapil" in pokir.json()["detail"], pokir.text
    auditor = token("auditor")
    for path in ("/events?cycle=13.72%002028", "/proposals/ab%00cd", f"/proposals/{a}?as%00of=x"):
        res = await api.get(path, headers=auditor)
        assert res.status_code == 422 and res.json()["error"] == "ValidationError", res.text
    assert await _count(engine) == before, "nothing was written"
    res = await api.post(
        f"{forum}/decisions",
        headers=lurah,
        json={"decisions": [{"proposal_id": a, "kind": "accept"}]},
    )
    assert res.status_code == 200, "the forum still answers"


async def test_forums_of_a_cycle_by_status_with_names(
    api: httpx.AsyncClient, token: Any, cycle_year: int
) -> None:
    forum, _ = await _forum_with(api, token, cycle_year, [100_000_000])
    cycle = forum.split("/")[2]
    auditor = token("auditor")
    for _ in range(100):  # the cycle opens its forums one after another
        listed = (await api.get(f"/cycles/{cycle}/forums", headers=auditor)).json()
        if len(listed["forums"]) == 13:  # Kota Solok's kelurahan
            break
        await asyncio.sleep(0.1)
    kel = next(f for f in listed["forums"] if f["unit"] == KEL)
    assert kel["status"] == "open" and kel["unit_name"] and kel["deadline"]
    assert listed["counts"] == {"open": 13}
    only = (
        await api.get(f"/cycles/{cycle}/forums", params={"status": "closed"}, headers=auditor)
    ).json()
    assert only["forums"] == []
    kec = (
        await api.get(
            f"/cycles/{cycle}/forums", params={"unit_prefix": "13.72.01."}, headers=auditor
        )
    ).json()
    assert kec["forums"] and all(f["unit"].startswith("13.72.01.") for f in kec["forums"])
    for params in ({"status": "sideways"}, {"unit_prefix": "x'; --"}):
        res = await api.get(f"/cycles/{cycle}/forums", params=params, headers=auditor)
        assert res.status_code == 422, res.text
    assert (await api.get("/cycles/13.72-1999/forums", headers=auditor)).status_code == 404


async def test_health_names_what_is_down(
    api: httpx.AsyncClient, engine: AsyncEngine, settings: Settings
) -> None:
    res = await api.get("/health")
    assert res.status_code == 200, res.text
    assert res.json()["postgres"]["ok"] and res.json()["temporal"]["ok"]
    nowhere = f"127.0.0.1:{_closed_port()}"
    dead_temporal = await Client.connect(nowhere, lazy=True)
    dead_pg = create_engine(f"postgresql://nobody@{nowhere}/nothing")
    for eng, down in ((engine, ["temporal"]), (dead_pg, ["postgres", "temporal"])):
        app = create_app(settings, engine=eng, temporal=dead_temporal)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t/api/v1") as client:
            res = await client.get("/health")
        body = res.json()
        assert res.status_code == 503, res.text
        assert [name for name in ("postgres", "temporal") if not body[name]["ok"]] == down
        assert all(name in body["detail"] for name in down)
    await dead_pg.dispose()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_cycle_plans_refuse_what_they_cannot_honour(
    api: httpx.AsyncClient, token: Any, engine: AsyncEngine
) -> None:
    admin = token("admin")
    base = {"region": "13.72", "year": 2028}
    cases = [
        ({"deadlines": {"kelurahan": "2027-01-20", "kelurahn": "2027-01-21"}}, "kelurahn"),
        ({"pagu": {"kecamatan": -1}}, "pagu"),
        ({"pagu": {"kecamatan": True}}, "pagu"),
        ({"pagu": {"provinsi": 5}}, "provinsi"),
        ({"reminder_hours": [-48, 0, 100000]}, "reminder_hours"),
        ({"deadlines": {"kelurahan": "2027-01-20T10:00:00"}}, "time zone"),
        ({"deadlines": {"kelurahan": "31 Januari 2027"}}, "kelurahan"),
        ({"year": 2031}, "no holiday data for 2030"),
    ]
    for extra, says in cases:
        res = await api.post("/cycles", json={**base, **extra}, headers=admin)
        assert res.status_code == 422, (extra, res.text)
        assert says in res.json()["detail"], (extra, res.text)
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM audit.events"))).scalar_one() == 0
    day = await api.post(
        "/cycles",
        json={**base, "deadlines": {"kelurahan": "2027-01-20"}},
        headers=admin,
    )
    assert day.status_code == 201, day.text
    assert day.json()["deadlines"]["kelurahan"] == "2027-01-20T16:59:00+00:00"  # 23:59 WIB
    given = await api.post(
        "/cycles",
        json={**base, "year": 2031, "holidays": fixed_holidays(2030)},
        headers=admin,
    )
    assert given.status_code == 201, given.text


async def test_an_idempotency_key_is_bound_to_its_request(
    api: httpx.AsyncClient, token: Any, engine: AsyncEngine, cycle_year: int
) -> None:
    forum, (a, b) = await _forum_with(api, token, cycle_year, [100_000_000, 50_000_000])
    lurah = token("coordinator", KEL)
    accept_a = {"decisions": [{"proposal_id": a, "kind": "accept"}]}
    first = await api.post(
        f"{forum}/decisions", json=accept_a, headers={**lurah, "Idempotency-Key": "rapat-7"}
    )
    assert first.status_code == 200, first.text
    before = await _count(engine)
    reused = [
        (f"{forum}/decisions", {"decisions": [{"proposal_id": b, "kind": "accept"}]}),
        (f"{forum}/proposals", {"proposals": [usulan("Jalan rusak", "jalan", 10_000_000)]}),
    ]
    for path, body in reused:
        res = await api.post(path, json=body, headers={**lurah, "Idempotency-Key": "rapat-7"})
        assert res.status_code == 422, res.text
        assert res.json()["error"] == "IdempotencyKeyReused", res.text
    assert await _count(engine) == before, "a reused key writes nothing"
    other = token("coordinator", "13.72.01.1002")  # keys are the caller's own
    res = await api.post(
        f"/cycles/{forum.split('/')[2]}/forums/kelurahan/13.72.01.1002/proposals",
        json={"proposals": [usulan("Drainase", "drainase", 10_000_000)]},
        headers={**other, "Idempotency-Key": "rapat-7"},
    )
    assert res.status_code == 200, res.text
    await api.post(
        f"{forum}/decisions",
        json={"decisions": [{"proposal_id": b, "kind": "accept"}]},
        headers=lurah,
    )
    close = {"berita_acara": BA}
    closed = await api.post(
        f"{forum}/close", json=close, headers={**lurah, "Idempotency-Key": "tutup"}
    )
    assert closed.status_code == 200, closed.text
    await asyncio.sleep(0.5)  # the forum's workflow has ended
    again = await api.post(
        f"{forum}/close", json=close, headers={**lurah, "Idempotency-Key": "tutup"}
    )
    assert (again.status_code, again.json()) == (200, closed.json()), "the first answer"
    retry = await api.post(
        f"{forum}/decisions", json=accept_a, headers={**lurah, "Idempotency-Key": "rapat-7"}
    )
    assert (retry.status_code, retry.json()) == (200, first.json())


async def test_one_validator_for_an_usulans_fields_also_on_revision(
    api: httpx.AsyncClient, token: Any, engine: AsyncEngine, cycle_year: int
) -> None:
    forum, (a,) = await _forum_with(api, token, cycle_year, [100_000_000])
    lurah = token("coordinator", KEL)
    before = await _count(engine)

    def revise(changes: dict[str, Any], reason: str | None = "Survei") -> dict[str, Any]:
        d: dict[str, Any] = {"proposal_id": a, "kind": "revise", "changes": changes}
        if reason is not None:
            d["reason"] = reason
        return {"decisions": [d]}

    for body, says in (
        (revise({"volume": "banyak"}), "volume"),
        (revise({"volume": -3}), "volume"),
        (revise({"satuan": None}), "satuan"),
        (revise({"masalah": "x" * 50_000}), "masalah"),
        (revise({"opd": "dinas-tidak-ada"}), "dinas-tidak-ada"),
        (revise({"cost": True}), "cost"),
        (revise({"rt": "0"}), "rt"),
        (revise({"cost": 90_000_000}, reason=None), "reason"),
    ):
        res = await api.post(f"{forum}/decisions", json=body, headers=lurah)
        assert res.status_code == 422, (body, res.text)
        assert says in res.json()["detail"], (body, res.text)
    for draft, says in (
        ({"cost": True}, "cost"),
        ({"cost": "5000000"}, "cost"),
        ({"volume": True}, "volume"),
        ({"koordinat": [48.85, 2.35]}, "koordinat"),
        ({"opd": "dinas-tidak-ada"}, "dinas-tidak-ada"),
    ):
        res = await api.post(
            f"{forum}/proposals",
            json={"proposals": [{**usulan("Jalan rusak", "jalan", 10_000_000), **draft}]},
            headers=lurah,
        )
        assert res.status_code == 422, (draft, res.text)
        assert says in res.json()["detail"], (draft, res.text)
    assert await _count(engine) == before
    res = await api.post(
        f"{forum}/decisions", json=revise({"cost": 90_000_000}, "Harga satuan turun"), headers=lurah
    )
    assert res.status_code == 200, res.text
    history = (await api.get(f"/proposals/{a}/history", headers=token("auditor"))).json()
    revised = next(e for e in history["events"] if e["type"] == "ProposalRevised")
    assert revised["payload"]["reason"] == "Harga satuan turun"
    assert revised["payload"]["original"] == {"cost": 100_000_000}
