"""Coordinators and auditors through HTTP: commands, idempotent retries, traces, exports."""

from __future__ import annotations

import asyncio
import csv
import io
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from musrenbang.domain.calendar import fixed_holidays
from musrenbang.events import tlog
from musrenbang.events.evidence import check_bundle
from tests.api.conftest import LOG_VERIFIER

REGION, KEL, KEC = "13.72", "13.72.01.1001", "13.72.01"
# Other forums open concurrently; the usulan's own events are what a retry could double.
PROPOSAL_EVENTS = text("SELECT count(*) FROM audit.events WHERE stream LIKE 'proposal:%'")
BA = {
    "tanggal": "2027-01-20",
    "tempat": "Aula Kelurahan",
    "peserta": 40,
    "penandatangan": ["Lurah", "Ketua LPM"],
}


def usulan(masalah: str, bidang: str, cost: int) -> dict[str, Any]:
    return {
        "masalah": masalah,
        "gagasan": "Perbaikan menyeluruh",
        "cost": cost,
        "bidang": bidang,
        "volume": 120,
        "satuan": "m",
        "rt": "003",
        "rw": "002",
    }


async def open_cycle(api: httpx.AsyncClient, token: Any, year: int) -> str:
    res = await api.post(
        "/cycles",
        json={
            "region": REGION,
            "year": year,
            "pagu": {"kelurahan": 500_000_000},
            "holidays": fixed_holidays(year - 1, year),
        },
        headers=token("admin"),
    )
    assert res.status_code == 201, res.text
    return str(res.json()["cycle_id"])


async def wait_forum(api: httpx.AsyncClient, token: Any, path: str) -> None:
    for _ in range(200):
        if (await api.get(path, headers=token("auditor"))).status_code == 200:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{path} never opened")


async def test_coordinator_and_auditor_journey(
    api: httpx.AsyncClient, token: Any, engine: AsyncEngine, cycle_year: int
) -> None:
    cycle = await open_cycle(api, token, cycle_year)
    forum = f"/cycles/{cycle}/forums/kelurahan/{KEL}"
    await wait_forum(api, token, forum)
    lurah = token("coordinator", KEL)

    res = await api.post(
        f"{forum}/proposals",
        headers=lurah,
        json={
            "proposals": [
                usulan("Jalan lingkungan rusak", "jalan", 150_000_000),
                usulan("Jalan lingkungan berlubang", "jalan", 140_000_000),
                usulan("Alat posyandu kurang", "posyandu", 25_000_000),
            ]
        },
    )
    assert res.status_code == 200, res.text
    a, b, c = res.json()["proposal_ids"]
    assert len(res.json()["seqs"]) == 3

    body = {
        "decisions": [
            {
                "proposal_id": a,
                "kind": "revise",
                "reason": "Harga satuan disesuaikan",
                "changes": {"cost": 120_000_000},
            },
            {"proposal_id": b, "kind": "merge", "into": a},
            {
                "proposal_id": c,
                "kind": "reject",
                "reason": "Sudah dianggarkan",
                "reason_code": "sudah-dianggarkan",
            },
        ]
    }
    first = await api.post(
        f"{forum}/decisions",
        json=body,
        headers={**lurah, "Idempotency-Key": "rapat-1", "X-Request-ID": "req-rapat-1"},
    )
    assert first.headers["X-Request-ID"] == "req-rapat-1"
    assert first.status_code == 200, first.text
    async with engine.connect() as conn:
        count = (await conn.execute(PROPOSAL_EVENTS)).scalar_one()
    again = await api.post(
        f"{forum}/decisions", json=body, headers={**lurah, "Idempotency-Key": "rapat-1"}
    )
    assert again.json() == first.json()
    async with engine.connect() as conn:
        assert (await conn.execute(PROPOSAL_EVENTS)).scalar_one() == count

    res = await api.post(f"{forum}/close", json={"berita_acara": BA}, headers=lurah)
    assert res.status_code == 200, res.text
    async with engine.connect() as conn:
        correlated = (
            (
                await conn.execute(
                    text(
                        "SELECT DISTINCT type FROM audit.events "
                        "WHERE content::jsonb -> 'metadata' ->> 'correlation_id' = 'req-rapat-1'"
                    )
                )
            )
            .scalars()
            .all()
        )
    assert sorted(correlated) == ["ProposalMerged", "ProposalRejected", "ProposalRevised"]

    auditor = token("auditor")
    history = (await api.get(f"/proposals/{b}/history", headers=auditor)).json()
    assert [e["type"] for e in history["events"]] == ["ProposalSubmitted", "ProposalMerged"]
    assert history["lineage"]["merged_into"] == a and a in history["related"]
    step = history["events"][1]
    assert step["stage"] == "kelurahan" and step["actor"]["subject"] == f"coordinator.{KEL}"
    assert len(step["hash"]) == 64 and step["seq"] > 0
    assert history["events"][0]["payload"]["details"]["cost"] == 140_000_000

    trace_a = (await api.get(f"/proposals/{a}/history", headers=auditor)).json()
    revised = next(e for e in trace_a["events"] if e["type"] == "ProposalRevised")
    assert revised["payload"]["original"] == {"cost": 150_000_000}
    assert trace_a["lineage"]["absorbed"] == [b]
    assert trace_a["events"][-1]["type"] == "ProposalForwarded"
    submitted_at = trace_a["events"][0]["occurred_at"]
    then = (
        await api.get(f"/proposals/{a}", params={"as_of": submitted_at}, headers=auditor)
    ).json()
    now = (await api.get(f"/proposals/{a}", headers=auditor)).json()
    assert then["status"] == "submitted" and then["details"]["cost"] == 150_000_000
    assert now["status"] == "forwarded" and now["details"]["cost"] == 120_000_000

    feed = (await api.get("/events", params={"cycle": cycle, "limit": 3}, headers=auditor)).json()
    assert [e["seq"] for e in feed["events"]] == [1, 2, 3]
    more = (
        await api.get(
            "/events",
            params={"cycle": cycle, "after": feed["next_after"], "type": "ProposalRejected"},
            headers=auditor,
        )
    ).json()
    assert [e["payload"]["reason"] for e in more["events"]] == ["Sudah dianggarkan"]
    assert (await api.get("/audit/verify", headers=auditor)).json()["ok"] is True

    # The Berita Acara carries the signed checkpoint of every event before its closing...
    closed = (
        await api.get("/events", params={"cycle": cycle, "type": "ForumClosed"}, headers=auditor)
    ).json()["events"][0]
    anchor = closed["payload"]["checkpoint"]
    assert (
        tlog.parse_checkpoint(tlog.verify_note(anchor["note"], [LOG_VERIFIER])).size
        == (anchor["size"])
    )
    assert anchor["size"] == closed["seq"] - 2  # then its own CheckpointIssued, then it
    assert anchor["origin"] == "bappeda.test.musrenbang.local/13.72"
    # ...and once the forum has closed, a checkpoint covers the closing record too.
    for _ in range(50):
        note = (await api.get("/logs/13.72/checkpoint", headers=auditor)).text
        if tlog.parse_checkpoint(note).size > closed["seq"]:
            break
        await asyncio.sleep(0.1)
    assert tlog.parse_checkpoint(tlog.verify_note(note, [LOG_VERIFIER])).size > closed["seq"]
    bundle = (await api.get(f"/proposals/{a}/evidence", headers=auditor)).json()
    assert check_bundle(bundle, [LOG_VERIFIER]).ok
    assert {r["stream"] for r in bundle["records"]} == {f"proposal:{a}", f"proposal:{b}"}

    funnel = (await api.get(f"/cycles/{cycle}/funnel", headers=auditor)).json()["stages"]
    kel = funnel[0]
    assert (kel["stage"], kel["entered"], kel["forwarded"]) == ("kelurahan", 3, 1)
    assert kel["left"]["rejected"] == {"count": 1, "reasons": {"sudah-dianggarkan": 1}}
    assert funnel[1]["entered"] == 1
    findings = (await api.get(f"/cycles/{cycle}/findings", headers=auditor)).json()
    assert findings["ok"] is True
    export = await api.get(f"/cycles/{cycle}/export.csv", headers=auditor)
    rows = list(csv.DictReader(io.StringIO(export.content.decode("utf-8-sig")), delimiter=";"))
    assert {r["proposal_id"]: r["final_status"] for r in rows} == {
        a: "forwarded",
        b: "merged",
        c: "rejected",
    }
    assert next(r for r in rows if r["proposal_id"] == c)["reason"] == "Sudah dianggarkan"


async def test_bad_input_gets_a_sentence_never_a_500(api: httpx.AsyncClient, token: Any) -> None:
    admin = token("admin")
    cases = [
        (
            await api.post(
                "/cycles",
                content=b"{not json",
                headers={**admin, "Content-Type": "application/json"},
            ),
            422,
            "ValidationError",
        ),
        (
            await api.post("/cycles", json={"region": "99.99", "year": 2028}, headers=admin),
            422,
            "Refused",
        ),
        (
            await api.post("/cycles", json={"region": REGION, "year": "soon"}, headers=admin),
            422,
            "ValidationError",
        ),
        (await api.get("/cycles/36.71-2030"), 401, "Unauthorized"),
        (
            await api.get("/cycles/36.71-2030", headers={"Authorization": "Bearer nonsense"}),
            401,
            "Unauthorized",
        ),
        (await api.get("/cycles/36.71-2030", headers=admin), 404, "NotFound"),
        (await api.get("/proposals/nope/history", headers=admin), 404, "NotFound"),
        (
            await api.get(
                "/proposals/nope", params={"as_of": "2027-01-01T00:00:00"}, headers=admin
            ),
            422,
            "ValidationError",
        ),
        (
            await api.post(
                "/cycles/x/forums/kelurahan/1/decisions",
                json={"decisions": [{"proposal_id": "a", "kind": "accept"}]},
                headers=admin,
            ),
            404,
            "NotFound",
        ),
        (
            await api.post(
                "/cycles/x/forums/nowhere/1/close", json={"berita_acara": BA}, headers=admin
            ),
            404,
            "NotFound",
        ),
    ]
    for res, status, kind in cases:
        assert (res.status_code, res.json()["error"]) == (status, kind), res.text
        assert len(res.json()["detail"]) > 10
