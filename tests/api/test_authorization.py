"""Every role against every action, on its own jurisdiction and on another's."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx

from musrenbang.domain.calendar import fixed_holidays
from tests.api.test_api import BA, KEC, KEL, open_cycle, usulan, wait_forum

OTHER_KEL, THIRD_KEL = "13.72.01.1002", "13.72.01.1003"
ACTORS = {
    "admin": ("admin", None, None),
    "lurah": ("coordinator", KEL, None),
    "lurah-lain": ("coordinator", OTHER_KEL, None),
    "camat": ("coordinator", KEC, None),
    "opd": ("coordinator", None, "dinas-pupr"),
    "auditor": ("auditor", None, None),
    "dprd": ("dprd", None, None),
}
# action -> who may (everyone else: 403)
MAY = {
    "submit": {"admin", "lurah"},
    "decide": {"admin", "lurah"},
    "extend": {"admin", "camat"},
    "pokir": {"admin", "dprd"},
    "history": set(ACTORS),
    "verify": set(ACTORS),
    "create": {"admin"},
    "close": {"admin", "lurah-lain"},  # lurah-lain closes its own forum; admin another
}


async def test_authorization_matrix(api: httpx.AsyncClient, token: Any, cycle_year: int) -> None:
    cycle = await open_cycle(api, token, cycle_year)
    forums = {kel: f"/cycles/{cycle}/forums/kelurahan/{kel}" for kel in (KEL, OTHER_KEL, THIRD_KEL)}
    for path in forums.values():
        await wait_forum(api, token, path)
    seed = await api.post(
        f"{forums[KEL]}/proposals",
        headers=token("coordinator", KEL),
        json={"proposals": [usulan("Jalan rusak", "jalan", 10_000_000)]},
    )
    pid = seed.json()["proposal_ids"][0]
    deadline = (await api.get(forums[KEL], headers=token("auditor"))).json()["deadline"]
    extensions = (datetime.fromisoformat(deadline) + timedelta(days=n) for n in range(1, 100))
    years = iter(range(cycle_year + 1, 2100))

    def request(action: str, name: str) -> tuple[str, str, dict[str, Any]]:
        if action == "submit":
            return (
                "POST",
                f"{forums[KEL]}/proposals",
                {"proposals": [usulan("Drainase", "drainase", 5_000_000)]},
            )
        if action == "decide":
            return (
                "POST",
                f"{forums[KEL]}/decisions",
                {"decisions": [{"proposal_id": pid, "kind": "accept"}]},
            )
        if action == "extend":
            return (
                "POST",
                f"{forums[KEL]}/deadline",
                {"new_deadline": next(extensions).isoformat(), "reason": "Banjir"},
            )
        if action == "pokir":
            return (
                "POST",
                f"/cycles/{cycle}/pokir",
                {"dapil": "Solok 1", "proposals": [usulan("PJU", "pju", 9_000_000)]},
            )
        if action == "history":
            return "GET", f"/proposals/{pid}/history", {}
        if action == "verify":
            return "GET", "/audit/verify", {}
        if action == "create":
            year = next(years)
            return (
                "POST",
                "/cycles",
                {"region": "13.72", "year": year, "holidays": fixed_holidays(year - 1)},
            )
        target = THIRD_KEL if name == "admin" else OTHER_KEL
        return "POST", f"{forums[target]}/close", {"berita_acara": BA}

    table = {}
    for action, allowed in MAY.items():
        # `close` ends the forum: the refusals first, then the ones who may.
        for name in sorted(ACTORS, key=lambda n: n in allowed):
            role, wilayah, opd = ACTORS[name]
            method, path, body = request(action, name)
            res = await api.request(
                method, path, json=body or None, headers=token(role, wilayah, opd)
            )
            table[(action, name)] = res.status_code
            got = "ok" if res.status_code in (200, 201) else res.status_code
            assert got == ("ok" if name in allowed else 403), f"{action} by {name}: {res.text}"
            if res.status_code == 403:
                assert res.json()["error"] == "Forbidden"
    assert len(table) == len(MAY) * len(ACTORS)
