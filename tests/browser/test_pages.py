"""The pages in a real browser: Debian's Chromium driven by Playwright's async API, against
the app served on localhost with a worker, real PostgreSQL and the time-skipping Temporal
server. A lurah submits and decides; a camat acts on a forum escalated to it; an auditor
traces an usulan; a citizen looks one up. Screenshots go to the test's temp folder."""

from __future__ import annotations

import asyncio
import shutil
import socket
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from playwright.async_api import Browser, Page, async_playwright, expect
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import WorkflowEnvironment

from musrenbang.api.app import create_app
from musrenbang.api.auth import issue_token
from musrenbang.config import Settings
from musrenbang.domain.calendar import fixed_holidays
from musrenbang.events.tlog import Signer
from musrenbang.worker import build_worker
from tests.api.conftest import LOG_SIGNER

REGION, KEL, LATE_KEL, KEC = "13.72", "13.72.01.1001", "13.72.01.1002", "13.72.01"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def site(
    time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, task_queue: str
) -> AsyncIterator[tuple[str, Settings]]:
    settings = Settings(temporal_task_queue=task_queue, jwt_secret="test-secret-for-the-suite-only")
    app = create_app(settings, engine=engine, temporal=time_skipping_env.client)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    async with build_worker(
        time_skipping_env.client, task_queue, engine, signer=Signer.parse(LOG_SIGNER)
    ):
        serving = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.05)
        try:
            yield f"http://127.0.0.1:{port}", settings
        finally:
            server.should_exit = True
            await serving


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    assert Path(CHROMIUM).exists(), "Debian's chromium is missing: `make test` installs it"
    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield launched
        await launched.close()


def _token(settings: Settings, role: str, wilayah: str | None = None, **kw: Any) -> str:
    subject = f"{role}.{wilayah or 'pusat'}"
    return issue_token(
        settings,
        subject,
        role,
        wilayah,
        None,
        region=kw.get("region"),
        **{k: v for k, v in kw.items() if k != "region"},
    )


async def _sign_in(page: Page, base: str, token: str) -> None:
    await page.goto(f"{base}/masuk")
    await page.fill("#token", token)
    await page.click("button[type=submit]")


async def _wait_forum(http: httpx.AsyncClient, path: str, auditor: str) -> None:
    for _ in range(200):
        if (
            await http.get(path, headers={"Authorization": f"Bearer {auditor}"})
        ).status_code == 200:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{path} never opened")


async def test_people_use_the_pages(
    site: tuple[str, Settings],
    browser: Browser,
    time_skipping_env: WorkflowEnvironment,
    cycle_year: int,
    tmp_path: Path,
) -> None:
    base, settings = site
    admin, auditor = _token(settings, "admin"), _token(settings, "auditor", regions=["*"])
    now = await time_skipping_env.get_current_time()
    deadline = (now + timedelta(days=2)).isoformat()
    async with httpx.AsyncClient(base_url=f"{base}/api/v1", timeout=30) as http:
        created = await http.post(
            "/cycles",
            json={
                "region": REGION,
                "year": cycle_year,
                "deadlines": {"kelurahan": deadline},
                "holidays": fixed_holidays(cycle_year - 1, cycle_year),
            },
            headers={"Authorization": f"Bearer {admin}"},
        )
        assert created.status_code == 201, created.text
        cycle = created.json()["cycle_id"]
        await _wait_forum(http, f"/cycles/{cycle}/forums/kelurahan/{KEL}", auditor)

        # A lurah signs in, submits an usulan and decides it.
        page = await (await browser.new_context(viewport={"width": 390, "height": 844})).new_page()
        await _sign_in(page, base, _token(settings, "coordinator", KEL))
        await expect(page.locator("h1")).to_have_text("Forum saya")
        await page.click(f"a[href='/konsol/{cycle}/kelurahan/{KEL}']")
        await page.fill("#masalah", "Jalan lingkungan RT 003 rusak")
        await page.fill("#gagasan", "Pengaspalan jalan lingkungan")
        await page.select_option("#bidang", "jalan")
        await page.fill("#volume", "120")
        await page.fill("#satuan", "m")
        await page.fill("#cost", "150.000.000")
        await page.fill("#rt", "003")
        await page.click("#submit button[type=submit]")
        await expect(page.locator(".message")).to_have_text("Tersimpan.")
        row = page.locator("#usulan tr[data-id]")
        await expect(row).to_have_count(1)
        receipt = (await row.locator("td").first.inner_text()).strip()
        await page.select_option("#usulan select[name^='kind:']", "reject")
        await page.click("#decide button[type=submit]")  # a reject needs its reason
        await expect(page.locator(".message.error")).to_contain_text("reason")
        await page.go_back()
        await page.select_option("#usulan select[name^='kind:']", "accept")
        await page.click("#decide button[type=submit]")
        await expect(page.locator("#usulan .status")).to_have_text("accepted")
        await page.screenshot(path=tmp_path / "lurah-forum.png", full_page=True)

        # A citizen, with no account, looks the usulan up by its receipt code.
        citizen = await (await browser.new_context()).new_page()
        await citizen.goto(f"{base}/")
        await citizen.fill("#kode", receipt.lower().replace("-", ""))
        await citizen.click("button[type=submit]")
        await expect(citizen.locator("h1")).to_have_text(f"Usulan {receipt}")
        await expect(citizen.locator("#steps")).to_contain_text("Diterima")
        assert "coordinator." not in await citizen.content()  # nothing of who, only what
        await citizen.screenshot(path=tmp_path / "warga-lacak.png", full_page=True)
        await citizen.goto(f"{base}/lacak/ZZZZ-ZZZZ-ZZZZ")
        await expect(citizen.locator("h1")).to_have_text("Tidak ditemukan")

        # The deadline passes at another kelurahan: its camat acts on it.
        await time_skipping_env.sleep(timedelta(days=2, hours=1))
        camat = await (await browser.new_context()).new_page()
        await _sign_in(camat, base, _token(settings, "coordinator", KEC))
        late = camat.locator(f"a[href='/konsol/{cycle}/kelurahan/{LATE_KEL}']")
        await expect(late).to_have_count(1)
        await late.click()
        await expect(camat.locator("#forum-status")).to_have_text("overdue")
        await camat.fill("#tanggal", f"{cycle_year - 1}-01-20")
        await camat.fill("#tempat", "Kantor Kecamatan")
        await camat.fill("#peserta", "12")
        await camat.fill("#penandatangan", "Camat\nSekcam")
        await camat.click("#close button[type=submit]")
        await expect(camat.locator("#forum-status")).to_have_text("closed")
        await camat.screenshot(path=tmp_path / "camat-eskalasi.png", full_page=True)
        link = camat.locator("a[href$='berita-acara.pdf']")  # opened with the page's cookie
        pdf = await camat.request.get(f"{base}{await link.get_attribute('href')}")
        assert pdf.ok and (await pdf.body()).startswith(b"%PDF")

        # An auditor traces the usulan from its kelurahan.
        audit = await (await browser.new_context()).new_page()
        await _sign_in(audit, base, auditor)
        await expect(audit.locator("#verify")).to_contain_text("Log utuh")
        await audit.click(f"a[href='/audit/{cycle}']")
        await expect(audit.locator("#funnel rect")).to_have_count(5)
        await audit.fill("#aq", "jalan lingkungan")
        await audit.click("form.inline button[type=submit]")
        await audit.click("#found a")
        await expect(audit.locator("#trail")).to_contain_text("ProposalAccepted")
        await expect(audit.locator("#trail")).to_contain_text(f"coordinator.{KEL}")
        await audit.screenshot(path=tmp_path / "auditor-jejak.png", full_page=True)

    for name in ("lurah-forum", "warga-lacak", "camat-eskalasi", "auditor-jejak"):
        assert (tmp_path / f"{name}.png").stat().st_size > 5000
