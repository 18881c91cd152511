"""A proposer who left a contact is told the outcome of the usulan and its reason, through
the notification path (its own workflow, retried, recorded); the contact itself is kept
apart and never reaches the log, a workflow's history or a page."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import WorkflowEnvironment

from musrenbang.api.app import create_app
from musrenbang.config import Settings
from musrenbang.events.tlog import Signer
from musrenbang.worker import build_worker
from tests.api.conftest import LOG_SIGNER
from tests.api.test_api import KEL, open_cycle, usulan, wait_forum

CONTACT = "0812-3456-7890"


class _Hook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []  # noqa: RUF012 - shared with the test
    fail_first = True

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        status = 503 if _Hook.fail_first else 204  # down once: the delivery retries
        _Hook.fail_first = False
        if status == 204:
            _Hook.received.append(body)
        self.send_response(status)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def hook() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    _Hook.received, _Hook.fail_first = [], True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook"
    server.shutdown()


@pytest.fixture
async def api_with_hook(
    time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, settings: Settings, hook: str
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, engine=engine, temporal=time_skipping_env.client)
    async with build_worker(
        time_skipping_env.client,
        settings.temporal_task_queue,
        engine,
        webhook_url=hook,
        signer=Signer.parse(LOG_SIGNER),
    ):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test/api/v1") as client:
            yield client


async def test_the_proposer_is_told_the_outcome_and_its_reason(
    api_with_hook: httpx.AsyncClient,
    token: Any,
    engine: AsyncEngine,
    time_skipping_env: WorkflowEnvironment,
    cycle_year: int,
) -> None:
    api = api_with_hook
    cycle = await open_cycle(api, token, cycle_year)
    forum = f"/cycles/{cycle}/forums/kelurahan/{KEL}"
    await wait_forum(api, token, forum)
    lurah = token("coordinator", KEL)
    bad = await api.post(
        f"{forum}/proposals",
        json={"proposals": [{**usulan("Jalan", "jalan", 5_000_000), "kontak": "bukan kontak"}]},
        headers=lurah,
    )
    assert bad.status_code == 422 and "kontak" in bad.json()["detail"]
    submitted = (
        await api.post(
            f"{forum}/proposals",
            json={
                "proposals": [
                    {**usulan("Jalan rusak", "jalan", 150_000_000), "kontak": CONTACT},
                    usulan("Drainase", "drainase", 90_000_000),
                ]
            },
            headers=lurah,
        )
    ).json()
    told, silent = submitted["proposal_ids"]
    receipt = submitted["receipt_codes"][0]
    decisions = [
        {
            "proposal_id": told,
            "kind": "reject",
            "reason": "Jalan provinsi, bukan kewenangan kota",
            "reason_code": "bukan-kewenangan",
        },
        {"proposal_id": silent, "kind": "accept"},
    ]
    res = await api.post(f"{forum}/decisions", json={"decisions": decisions}, headers=lurah)
    assert res.status_code == 200, res.text
    for _ in range(100):
        if _Hook.received:
            break
        await time_skipping_env.sleep(timedelta(seconds=10))  # past the first retry
    [message] = [m for m in _Hook.received if m["kind"] == "proposer"]
    assert message["details"]["to"] == CONTACT and message["details"]["receipt"] == receipt
    assert "ditolak" in message["message"] and "bukan kewenangan kota" in message["message"]
    async with engine.connect() as conn:
        delivered = (
            (
                await conn.execute(
                    text(
                        "SELECT payload FROM audit.events WHERE type = 'NotificationDelivered'"
                        " AND payload->>'kind' = 'proposer'"
                    )
                )
            )
            .scalars()
            .all()
        )
        leaked = (
            await conn.execute(
                text("SELECT count(*) FROM audit.events WHERE content LIKE :c"),
                {"c": f"%{CONTACT}%"},
            )
        ).scalar_one()
    assert [(d["proposal_id"], d["outcome"]) for d in delivered] == [(told, "ProposalRejected")]
    assert leaked == 0  # the log never holds the contact
    handle = time_skipping_env.client.get_workflow_handle(f"forum-{cycle}-kelurahan-{KEL}")
    history = (await handle.fetch_history()).to_json()
    assert CONTACT not in history  # nor the forum's history
    page = await api.get(f"/lacak/{receipt}")
    assert CONTACT not in page.text and page.json()["steps"][-1]["reason"].startswith("Jalan")

    admin = token("admin")
    assert (await api.delete(f"/proposals/{told}/kontak", headers=lurah)).status_code == 403
    assert (await api.delete(f"/proposals/{told}/kontak", headers=admin)).status_code == 204
    again = await api.delete(f"/proposals/{told}/kontak", headers=admin)
    assert again.status_code == 404 and again.json()["error"] == "NotFound"
    async with engine.connect() as conn:
        kept = (await conn.execute(text("SELECT count(*) FROM private.contacts"))).scalar_one()
        still = (await conn.execute(text("SELECT count(*) FROM audit.events"))).scalar_one()
    assert kept == 0 and still > 0  # the contact goes; what happened stays
