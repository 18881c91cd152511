"""A hostile-input battery: malformed, oversized, mistyped, forged, replayed and
cross-region requests. Each gets a 4xx `{"error", "detail"}`, the log is unchanged, and the
forum still answers afterwards."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import jwt
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from musrenbang.api.auth import AUDIENCE
from musrenbang.config import Settings
from musrenbang.domain.calendar import fixed_holidays
from tests.api.test_api import BA, KEL, usulan, wait_forum

OTHER_KEL = "13.72.01.1002"
WRITES = text("SELECT count(*) FROM audit.events WHERE type <> 'ForumOpened'")


def _raw(claims: dict[str, Any], key: str, alg: str = "HS256") -> dict[str, str]:
    return {"Authorization": f"Bearer {jwt.encode(claims, key, algorithm=alg)}"}


async def _setup(api: httpx.AsyncClient, token: Any, year: int) -> dict[str, Any]:
    res = await api.post(
        "/cycles",
        json={"region": "13.72", "year": year, "holidays": fixed_holidays(year - 1)},
        headers=token("admin"),
    )
    assert res.status_code == 201, res.text
    cycle = res.json()["cycle_id"]
    forum = f"/cycles/{cycle}/forums/kelurahan/{KEL}"
    closed = f"/cycles/{cycle}/forums/kelurahan/{OTHER_KEL}"
    for path in (forum, closed):
        await wait_forum(api, token, path)
    lurah, other = token("coordinator", KEL), token("coordinator", OTHER_KEL)
    got = await api.post(
        f"{forum}/proposals",
        json={"proposals": [usulan("Jalan rusak", "jalan", 10_000_000)]},
        headers=lurah,
    )
    done = await api.post(
        f"{closed}/proposals",
        json={"proposals": [usulan("Drainase", "drainase", 10_000_000)]},
        headers=other,
    )
    gone = done.json()["proposal_ids"][0]
    await api.post(
        f"{closed}/decisions",
        json={"decisions": [{"proposal_id": gone, "kind": "accept"}]},
        headers=other,
    )
    assert (await api.post(f"{closed}/close", json={"berita_acara": BA}, headers=other)).is_success
    return {
        "cycle": cycle,
        "forum": forum,
        "closed": closed,
        "pid": got.json()["proposal_ids"][0],
        "gone": gone,
    }


def _cases(s: dict[str, Any], token: Any, settings: Settings) -> list[tuple[str, str, Any, Any]]:
    """(method, path, headers, body): body is JSON, or bytes sent as they are."""
    forum, cycle, pid = s["forum"], s["cycle"], s["pid"]
    lurah, admin = token("coordinator", KEL), token("admin")
    now = int(time.time())
    base = {"sub": "x", "aud": AUDIENCE, "exp": now + 600}
    dec, sub, close = f"{forum}/decisions", f"{forum}/proposals", f"{forum}/close"

    def d(**kw: Any) -> dict[str, Any]:
        return {"decisions": [{"proposal_id": pid, **kw}]}

    def u(**kw: Any) -> dict[str, Any]:
        return {"proposals": [{**usulan("Jalan rusak parah", "jalan", 10_000_000), **kw}]}

    def ba(**kw: Any) -> dict[str, Any]:
        return {"berita_acara": {**BA, **kw}}

    return [
        # who: tokens missing, forged, expired, without a region, of another role or region
        ("POST", dec, {}, d(kind="accept")),
        ("POST", dec, {"Authorization": "Bearer nonsense"}, d(kind="accept")),
        ("POST", dec, {"Authorization": "Basic YWRtaW46YWRtaW4="}, d(kind="accept")),
        ("POST", dec, _raw({**base, "role": "admin"}, "a guessed secret"), d(kind="accept")),
        (
            "POST",
            dec,
            _raw({**base, "role": "admin", "exp": now - 60}, settings.jwt_secret),
            d(kind="accept"),
        ),
        (
            "POST",
            dec,
            _raw({"sub": "x", "aud": AUDIENCE, "role": "admin"}, settings.jwt_secret),
            d(kind="accept"),
        ),
        ("POST", dec, _raw({**base, "role": "root"}, settings.jwt_secret), d(kind="accept")),
        (
            "POST",
            dec,
            _raw({**base, "role": "admin", "aud": "other"}, settings.jwt_secret),
            d(kind="accept"),
        ),
        (
            "POST",
            dec,
            _raw({**base, "role": "coordinator", "opd": "dinas-pupr"}, settings.jwt_secret),
            d(kind="accept"),
        ),
        (
            "POST",
            dec,
            _raw({**base, "role": "admin", "exp": now + 90 * 86400}, settings.jwt_secret),
            d(kind="accept"),
        ),
        (
            "POST",
            dec,
            {
                "Authorization": "Bearer "
                + jwt.encode({**base, "role": "admin"}, None, algorithm="none")
            },
            d(kind="accept"),
        ),
        ("POST", dec, token("auditor"), d(kind="accept")),
        ("POST", dec, token("dprd"), d(kind="accept")),
        ("POST", dec, token("coordinator", OTHER_KEL), d(kind="accept")),
        ("POST", sub, token("coordinator", "13.74.01.1001"), u()),
        ("POST", "/cycles", lurah, {"region": "13.72", "year": 2030}),
        # bodies that are not what the endpoint takes
        ("POST", dec, lurah, b"{not json"),
        ("POST", dec, lurah, b"[1, 2, 3]"),
        ("POST", dec, lurah, b""),
        ("POST", dec, lurah, b"null"),
        ("POST", dec, lurah, b"[" * 50_000 + b"]" * 50_000),
        ("POST", dec, lurah, {"decisions": [{"proposal_id": pid, "kind": "accept", "x": 1}]}),
        ("POST", dec, lurah, {"decisions": []}),
        ("POST", dec, lurah, {"decisions": "accept everything"}),
        ("POST", sub, lurah, {"proposals": []}),
        ("POST", sub, lurah, {"proposals": [usulan("a", "jalan", 1)] * 5001}),
        ("POST", sub, lurah, {"proposals": [{"masalah": "x" * 5_000_000}]}),
        # types and bounds
        ("POST", dec, lurah, d(kind="approve")),
        ("POST", sub, lurah, u(cost=-5)),
        ("POST", sub, lurah, u(cost=True)),
        ("POST", sub, lurah, u(cost="10000000")),
        ("POST", sub, lurah, u(cost=1.5)),
        ("POST", sub, lurah, u(cost=10**20)),
        ("POST", sub, lurah, u(volume=0)),
        (
            "POST",
            sub,
            lurah,
            b'{"proposals": [{"masalah": "Jalan", "gagasan": "Aspal",'
            b' "cost": 5, "bidang": "jalan", "volume": NaN, "satuan": "m"}]}',
        ),
        ("POST", sub, lurah, json.dumps(u(volume=float("inf"))).encode()),
        ("POST", sub, lurah, u(masalah="x" * 2001)),
        ("POST", sub, lurah, u(masalah="ab")),
        ("POST", sub, lurah, u(rt="abc")),
        ("POST", sub, lurah, u(rw="1234")),
        ("POST", sub, lurah, u(koordinat=[48.85, 2.35])),
        ("POST", sub, lurah, u(koordinat=[1.0])),
        ("POST", sub, lurah, u(opd="dinas-tidak-ada")),
        ("POST", sub, lurah, u(bidang="astronomi")),
        ("POST", sub, lurah, u(reference="no spaces allowed")),
        ("POST", sub, lurah, {"proposals": [u(reference="R")["proposals"][0]] * 2}),
        ("POST", sub, lurah, u(fisik="yes")),
        # NUL, surrogates and control characters, anywhere
        ("POST", sub, lurah, json.dumps(u(masalah="Jalan\u0000rusak")).encode()),
        ("POST", sub, lurah, json.dumps(u(alamat="Jl. \ud800")).encode()),
        ("POST", sub, lurah, json.dumps(u(gagasan="Aspal \u001b[31m")).encode()),
        (
            "POST",
            dec,
            lurah,
            json.dumps(d(kind="revise", reason="x", changes={"gagasan": "\u0000"})).encode(),
        ),
        ("POST", close, lurah, json.dumps(ba(tempat="Aula\u0000")).encode()),
        # decisions the rules refuse
        ("POST", dec, lurah, d(kind="revise", changes={"cost": 5})),
        ("POST", dec, lurah, d(kind="revise", reason="x", changes={"pagu": 5})),
        ("POST", dec, lurah, d(kind="revise", reason="x", changes={"volume": "banyak"})),
        ("POST", dec, lurah, d(kind="revise", reason="x", changes={"satuan": None})),
        ("POST", dec, lurah, d(kind="reject", reason="Tidak perlu")),
        ("POST", dec, lurah, d(kind="defer")),
        ("POST", dec, lurah, d(kind="merge", into=pid)),
        ("POST", dec, lurah, d(kind="merge", into="nobody")),
        ("POST", dec, lurah, {"decisions": [{"proposal_id": s["gone"], "kind": "accept"}]}),
        (
            "POST",
            dec,
            lurah,
            {"decisions": [{"proposal_id": "'; DROP TABLE x;--", "kind": "accept"}]},
        ),
        ("POST", dec, lurah, d(kind="prioritize", rank=0)),
        ("POST", dec, lurah, d(kind="prioritize", rank=1, scores={"rkpd": 99})),
        ("POST", dec, lurah, d(kind="prioritize", rank=1, scores={"rkpd": 2**60})),
        ("POST", dec, lurah, d(kind="assign", opd_akhir="dinas-pupr")),
        ("POST", dec, lurah, d(kind="include")),
        ("POST", dec, lurah, d(kind="accept", rank="first")),
        # closing and deadlines
        ("POST", close, lurah, ba(peserta=0)),
        ("POST", close, lurah, ba(tanggal="kemarin")),
        ("POST", close, lurah, ba(penandatangan=[])),
        ("POST", close, lurah, ba()),  # an usulan is still undecided
        (
            "POST",
            f"{s['closed']}/decisions",
            token("coordinator", OTHER_KEL),
            {
                "decisions": [
                    {
                        "proposal_id": s["gone"],
                        "kind": "reject",
                        "reason": "x",
                        "reason_code": "duplikat",
                    }
                ]
            },
        ),
        (
            "POST",
            f"{forum}/deadline",
            lurah,
            {"new_deadline": "2099-01-01T00:00:00+07:00", "reason": "Banjir besar"},
        ),
        (
            "POST",
            f"{forum}/deadline",
            token("coordinator", "13.72.01"),
            {"new_deadline": "2099-01-01T00:00:00", "reason": "Banjir besar"},
        ),
        (
            "POST",
            f"{forum}/deadline",
            token("coordinator", "13.72.01"),
            {"new_deadline": "2001-01-01T00:00:00+07:00", "reason": "Banjir besar"},
        ),
        # addresses: unknown stages, cycles and regions; NUL in the path and the query
        ("POST", f"/cycles/{cycle}/forums/provinsi/{KEL}/decisions", lurah, d(kind="accept")),
        ("POST", f"/cycles/13.72-1999/forums/kelurahan/{KEL}/decisions", lurah, d(kind="accept")),
        ("GET", "/proposals/ab%00cd", token("auditor"), None),
        ("GET", "/events?cycle=13.72%002028", token("auditor"), None),
        ("GET", "/events?limit=0", token("auditor"), None),
        ("GET", "/events?limit=100000", token("auditor"), None),
        ("GET", "/events?after=-1", token("auditor"), None),
        ("GET", f"/proposals/{pid}?as_of=2027-01-01T00:00:00", token("auditor"), None),
        ("GET", f"/proposals/{pid}?as_of=soon", token("auditor"), None),
        ("GET", "/cycles/13.72-1999/forums", token("auditor"), None),
        ("GET", f"/cycles/{cycle}/forums?status=sideways", token("auditor"), None),
        ("GET", f"/cycles/{cycle}/export.csv", token("coordinator", "13.74.01.1001"), None),
        ("DELETE", f"/cycles/{cycle}", admin, None),
        # plans that cannot be honoured
        ("POST", "/cycles", admin, {"region": "99.99", "year": 2030}),
        ("POST", "/cycles", admin, {"region": "13.72", "year": "soon"}),
        ("POST", "/cycles", admin, {"region": "13.72", "year": 2030, "pagu": {"x": 1}}),
        ("POST", "/cycles", admin, {"region": "13.72", "year": 2030, "reminder_hours": [0]}),
        ("POST", "/cycles", admin, {"region": "13.72", "year": 2040}),
        (
            "POST",
            "/cycles",
            admin,
            {"region": "13.72", "year": int(cycle[-4:]), "holidays": fixed_holidays(2027)},
        ),
    ]


async def test_hostile_requests_get_a_4xx_and_write_nothing(
    api: httpx.AsyncClient, token: Any, engine: AsyncEngine, settings: Settings, cycle_year: int
) -> None:
    s = await _setup(api, token, cycle_year)
    async with engine.connect() as conn:
        before = (await conn.execute(WRITES)).scalar_one()
    cases = _cases(s, token, settings)
    assert len(cases) >= 60
    wrong = []
    statuses: dict[int, int] = {}
    for n, (method, path, headers, body) in enumerate(cases, start=1):
        kw: dict[str, Any] = {"headers": dict(headers)}
        if isinstance(body, bytes):
            kw["content"] = body
            kw["headers"]["Content-Type"] = "application/json"
        elif body is not None:
            kw["json"] = body
        res = await api.request(method, path, **kw)
        try:
            answer = res.json()
            shaped = isinstance(answer.get("error"), str) and isinstance(answer.get("detail"), str)
        except ValueError:
            shaped = False
        statuses[res.status_code] = statuses.get(res.status_code, 0) + 1
        if not (400 <= res.status_code < 500 and shaped):
            wrong.append((n, method, path[:60], res.status_code, res.text[:160]))
    print(f"hostile requests: {len(cases)}, answered {sorted(statuses.items())}")
    assert wrong == [], wrong
    # Most are refused on their merits, not by the door: the battery reaches the rules.
    assert statuses.get(422, 0) > 40 and statuses.get(401, 0) < 15, statuses
    async with engine.connect() as conn:
        assert (await conn.execute(WRITES)).scalar_one() == before, "nothing was written"
    ok = await api.post(
        f"{s['forum']}/decisions",
        json={"decisions": [{"proposal_id": s["pid"], "kind": "accept"}]},
        headers=token("coordinator", KEL),
    )
    assert ok.status_code == 200, "the forum still answers"
    assert (
        await api.post(
            f"{s['forum']}/close", json={"berita_acara": BA}, headers=token("coordinator", KEL)
        )
    ).status_code == 200
