"""The scripted cycle of the crash drill, driven as coordinators drive it: each command
carries its own Idempotency-Key and is sent again, with the same key, until the stack
answers it, however often a component dies in between. What the stack acknowledged is
kept, so the drill can check that the log holds each of it exactly once."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import httpx

from musrenbang.api.auth import issue_token
from musrenbang.config import Settings
from musrenbang.domain.decisions import EVENT_OF, Kind
from musrenbang.domain.regions import load_region
from musrenbang.profiles import region_profile

REQUEST_PATIENCE = 300.0  # seconds one command may take through every outage
BA = {"tanggal": "2027-01-20", "tempat": "Aula", "peserta": 30, "penandatangan": ["Ketua"]}
IDEAS = [
    ("Jalan lingkungan rusak", "jalan", 150_000_000),
    ("Drainase tersumbat", "drainase", 90_000_000),
    ("Jalan berlubang (sama)", "jalan", 140_000_000),
    ("Alat posyandu kurang", "posyandu", 25_000_000),
]


class DrillFailed(Exception):
    pass


class Driver:
    def __init__(
        self, api: str, region: str, rng: random.Random, log: Any, pace: float = 0.0
    ) -> None:
        self.api, self.region, self.rng, self.log = api, region, rng, log
        self.pace = pace  # seconds a coordinator takes between forums
        self.settings = Settings()
        self.expected: Counter[tuple[str, str, str]] = Counter()
        self.retries = 0
        self.cycle = ""

    def who(self, role: str, wilayah: str | None = None, opd: str | None = None) -> dict[str, str]:
        subject = f"{role}.{opd or wilayah or 'pusat'}"
        region = None if role == "admin" else self.region
        token = issue_token(self.settings, subject, role, wilayah, opd, region=region)
        return {"Authorization": f"Bearer {token}"}

    async def send(
        self, http: httpx.AsyncClient, method: str, path: str, who: dict[str, str], body: Any = None
    ) -> httpx.Response:
        headers = {**who, "Idempotency-Key": uuid.uuid4().hex} if method == "POST" else who
        deadline = time.monotonic() + REQUEST_PATIENCE
        while True:
            try:
                res = await http.request(method, path, json=body, headers=headers, timeout=45)
                if res.status_code < 500:
                    return res
                problem = f"{res.status_code} {res.text[:200]}"
            except httpx.TransportError as exc:
                problem = type(exc).__name__
            if time.monotonic() > deadline:
                raise DrillFailed(f"{method} {path} never answered: {problem}")
            self.retries += 1
            await asyncio.sleep(0.5)

    async def command(
        self, http: httpx.AsyncClient, path: str, who: dict[str, str], body: Any
    ) -> dict[str, Any]:
        res = await self.send(http, "POST", path, who, body)
        if path.endswith("/close") and res.status_code == 409 and "closed" in res.text:
            return {}  # an earlier try closed it; its answer was lost with a process
        if res.status_code >= 400:
            raise DrillFailed(f"POST {path}: {res.status_code} {res.text[:300]}")
        found: dict[str, Any] = res.json()
        return found

    async def wait_open(self, http: httpx.AsyncClient, stage: str, unit: str) -> dict[str, Any]:
        path = f"/cycles/{self.cycle}/forums/{stage}/{unit}"
        deadline = time.monotonic() + REQUEST_PATIENCE
        while time.monotonic() < deadline:
            res = await self.send(http, "GET", path, self.who("auditor"))
            if res.status_code == 200:
                found: dict[str, Any] = res.json()
                return found
            await asyncio.sleep(0.3)
        raise DrillFailed(f"the forum {stage} {unit} never opened")

    async def decide(
        self, http: httpx.AsyncClient, stage: str, unit: str, who: dict[str, str], ds: list[Any]
    ) -> None:
        path = f"/cycles/{self.cycle}/forums/{stage}/{unit}"
        await self.command(http, f"{path}/decisions", who, {"decisions": ds})
        for d in ds:
            self.expected[(d["proposal_id"], EVENT_OF[Kind(d["kind"])], stage)] += 1
            if d["kind"] == "merge":
                self.expected[(d["into"], "ProposalMerged", stage)] += 1

    async def run(self) -> None:
        async with httpx.AsyncClient(base_url=self.api) as http:
            year = datetime.now(UTC).year + 2
            created = await self.command(
                http, "/cycles", self.who("admin"), {"region": self.region, "year": year}
            )
            self.cycle = created.get("cycle_id") or f"{self.region}-{year}"
            pokir = await self.command(
                http,
                f"/cycles/{self.cycle}/pokir",
                self.who("dprd"),
                {
                    "dapil": "Dapil 1",
                    "proposals": [_usulan("Lampu jalan padam", "pju", 60_000_000)],
                },
            )
            for pid in pokir["proposal_ids"]:
                self.expected[(pid, "PokirSubmitted", "forum-pd")] += 1
            kelurahan = load_region(self.region).kelurahan_codes()
            for n, kel in enumerate(kelurahan):
                await self.kelurahan(http, kel, reject=n % 2 == 0)
            self.log(f"{len(kelurahan)} kelurahan closed; the later stages follow")
            await self.later_stages(http)

    async def kelurahan(self, http: httpx.AsyncClient, kel: str, reject: bool) -> None:
        await asyncio.sleep(self.rng.uniform(0, 2 * self.pace))
        await self.wait_open(http, "kelurahan", kel)
        lurah = self.who("coordinator", kel)
        path = f"/cycles/{self.cycle}/forums/kelurahan/{kel}"
        got = await self.command(
            http,
            f"{path}/proposals",
            lurah,
            {"proposals": [_usulan(m, b, c) for m, b, c in IDEAS]},
        )
        a, b, c, d = got["proposal_ids"]
        for pid in got["proposal_ids"]:
            self.expected[(pid, "ProposalSubmitted", "kelurahan")] += 1
        last = (
            {
                "proposal_id": d,
                "kind": "reject",
                "reason": "Sudah ada",
                "reason_code": "sudah-dianggarkan",
            }
            if reject
            else {"proposal_id": d, "kind": "defer", "reason": "Tahun depan"}
        )
        decisions = [
            {"proposal_id": a, "kind": "prioritize", "rank": 1, "scores": {"rkpd": 5}},
            {"proposal_id": a, "kind": "accept"},
            {
                "proposal_id": b,
                "kind": "revise",
                "reason": "Survei lapangan",
                "changes": {"cost": 80_000_000},
            },
            {"proposal_id": c, "kind": "merge", "into": a},
            last,
        ]
        await self.decide(http, "kelurahan", kel, lurah, decisions)
        await self.command(http, f"{path}/close", lurah, {"berita_acara": BA})

    async def later_stages(self, http: httpx.AsyncClient) -> None:
        done: set[str] = set()
        deadline = time.monotonic() + 20 * REQUEST_PATIENCE
        while time.monotonic() < deadline:
            cycle = await self.send(http, "GET", f"/cycles/{self.cycle}", self.who("auditor"))
            if cycle.status_code == 200 and cycle.json()["status"] == "adopted":
                return
            listed = await self.send(
                http, "GET", f"/cycles/{self.cycle}/forums", self.who("auditor")
            )
            for forum in listed.json().get("forums", []) if listed.status_code == 200 else []:
                if forum["forum_id"] in done or forum["status"] not in ("open", "overdue"):
                    continue
                await self.later_forum(http, forum["stage"], forum["unit"])
                done.add(forum["forum_id"])
            await asyncio.sleep(0.3)
        raise DrillFailed("the RKPD was not adopted in time")

    async def later_forum(self, http: httpx.AsyncClient, stage: str, unit: str) -> None:
        await asyncio.sleep(self.rng.uniform(0, 2 * self.pace))
        state = await self.wait_open(http, stage, unit)
        held = sorted(p["proposal_id"] for p in state["proposals"] if p["status"] != "merged")
        opd = stage == "forum-pd"
        who = self.who("coordinator", None if opd else unit, unit if opd else None)
        ds: list[dict[str, Any]] = []
        if stage == "kecamatan":
            ds += [
                {"proposal_id": p, "kind": "prioritize", "rank": i + 1} for i, p in enumerate(held)
            ]
            ds += [{"proposal_id": p, "kind": "accept"} for p in held[1:]]
            ds += [{"proposal_id": p, "kind": "defer", "reason": "Kajian"} for p in held[:1]]
        elif opd:
            profile = region_profile(self.region)  # a sub-kegiatan of the OPD's own urusan
            owned = [o.assigns(profile.sub_kegiatan) for o in profile.opds if o.slug == unit]
            codes = sorted(owned[0]) if owned else []
            assign = {"sub_kegiatan": codes[0]} if codes else {"opd_akhir": unit}
            ds += [{"proposal_id": p, "kind": "assign", **assign} for p in held]
            ds += [{"proposal_id": p, "kind": "accept"} for p in held]
        else:
            dropped = held[:1] if stage == "kota" else []
            ds += [
                {"proposal_id": p, "kind": "not_accommodated", "reason": "Pagu"} for p in dropped
            ]
            ds += [{"proposal_id": p, "kind": "include"} for p in held if p not in dropped]
        if ds:
            await self.decide(http, stage, unit, who, ds)
        extra = {"perkada": "Perwal Tanjungbalai No. 9 Tahun 2027"} if stage == "rkpd" else {}
        path = f"/cycles/{self.cycle}/forums/{stage}/{unit}/close"
        await self.command(http, path, who, {"berita_acara": {**BA, **extra}})


def _usulan(masalah: str, bidang: str, cost: int) -> dict[str, Any]:
    return {
        "masalah": masalah,
        "gagasan": f"Perbaikan: {masalah.lower()}",
        "cost": cost,
        "bidang": bidang,
        "volume": 100,
        "satuan": "m",
        "rt": "003",
        "rw": "002",
    }
