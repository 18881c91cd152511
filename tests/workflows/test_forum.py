"""One forum on the time-skipping server: refusals, escalation, extension, webhook delivery."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from musrenbang.worker import build_worker
from musrenbang.workflows.contracts import (
    DecideRequest,
    DecisionRequest,
    ExtendRequest,
    ForumConfig,
    ForumInput,
    SubmitRequest,
)
from musrenbang.workflows.forum import ForumWorkflow
from tests.workflows.helpers import coordinator, draft
from tests.workflows.histories import save_history

KEL = "13.72.01.1001"


async def _start(
    env: WorkflowEnvironment,
    queue: str,
    stage: tuple[str, str, str] = ("kelurahan", "kelurahan", KEL),
    incoming: list[list[Any]] | None = None,
    **config: Any,
) -> Any:
    now = await env.get_current_time()
    slug, level, unit = stage
    inp = ForumInput(
        cycle_id="13.72-2028",
        city="13.72",
        stage=slug,
        level=level,
        unit=unit,
        next_stage="kecamatan",
        next_level="kecamatan",
        config=ForumConfig(deadline=(now + timedelta(days=10)).isoformat(), **config),
        pagu=500_000_000,
        intake=incoming is None,
        incoming=incoming or [],
        opds=["dinas-pupr", "dinas-kesehatan"],
    )
    return await env.client.start_workflow(
        ForumWorkflow.run, inp, id=f"forum-{unit}-{slug}-{queue}", task_queue=queue
    )


async def _events(engine: AsyncEngine) -> list[Any]:
    async with engine.connect() as conn:
        return (
            await conn.execute(text("SELECT type, actor, payload FROM audit.events ORDER BY seq"))
        ).all()


async def test_refused_requests_write_nothing_and_leave_no_trace(
    time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, task_queue: str
) -> None:
    env = time_skipping_env
    async with build_worker(env.client, task_queue, engine):
        forum = await _start(env, task_queue)
        lurah = coordinator(KEL)
        res = await forum.execute_update(
            ForumWorkflow.submit,
            SubmitRequest(
                lurah,
                [
                    draft("Jalan rusak", "jalan", 400_000_000),
                    draft("Drainase", "drainase", 200_000_000),
                ],
            ),
        )
        a, b = res.proposal_ids
        before = len(await _events(engine))
        refusals = [
            (coordinator("13.72.01.1002"), [DecisionRequest(a, "accept")], "may not act"),
            (lurah, [DecisionRequest(a, "reject", reason_code="x")], "reason is required"),
            (lurah, [DecisionRequest(a, "accept"), DecisionRequest(b, "accept")], "pagu indikatif"),
            (lurah, [DecisionRequest("nope", "accept")], "not held by this forum"),
        ]
        for actor, decisions, message in refusals:
            with pytest.raises(WorkflowUpdateFailedError) as err:
                await forum.execute_update(ForumWorkflow.decide, DecideRequest(actor, decisions))
            assert message in str(err.value.cause)
            kind = "Forbidden" if message == "may not act" else "Refused"
            assert getattr(err.value.cause, "type", None) == kind
        with pytest.raises(WorkflowUpdateFailedError) as err:
            await forum.execute_update(
                ForumWorkflow.submit, SubmitRequest(lurah, [draft("Jalan rusak", "jalan", -5)])
            )
        assert "positive whole number" in str(err.value.cause)
        assert getattr(err.value.cause, "type", None) == "Refused"
        # A client that reaches Temporal without the API meets the same refusals.
        for bad in (
            SubmitRequest(lurah, [draft("Jalan\x00rusak", "jalan", 5_000_000)]),
            DecideRequest(lurah, [DecisionRequest(a, "reject", reason="x\ud800", reason_code="y")]),
        ):
            update = (
                ForumWorkflow.submit if isinstance(bad, SubmitRequest) else ForumWorkflow.decide
            )
            with pytest.raises(WorkflowUpdateFailedError) as err:
                await forum.execute_update(update, bad)
            assert getattr(err.value.cause, "type", None) == "Refused", err.value.cause
        assert len(await _events(engine)) == before
        history = await forum.fetch_history()
        accepted = [
            e
            for e in history.events
            if e.HasField("workflow_execution_update_accepted_event_attributes")
        ]
        assert len(accepted) == 1, "rejected updates never reach history"
        await forum.terminate()


async def test_escalation_lets_the_level_above_act_and_extend(
    time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, task_queue: str
) -> None:
    env = time_skipping_env
    async with build_worker(env.client, task_queue, engine):
        forum = await _start(env, task_queue)
        lurah, camat = coordinator(KEL), coordinator("13.72.01")
        res = await forum.execute_update(
            ForumWorkflow.submit, SubmitRequest(lurah, [draft("Jalan rusak", "jalan", 100_000_000)])
        )
        with pytest.raises(WorkflowUpdateFailedError):
            await forum.execute_update(
                ForumWorkflow.decide,
                DecideRequest(camat, [DecisionRequest(res.proposal_ids[0], "accept")]),
            )
        await env.sleep(timedelta(days=10, hours=1))  # past the deadline, inside the grace period
        view = await forum.query(ForumWorkflow.view)
        assert (view.status, view.escalated_to) == ("overdue", "13.72.01")
        await forum.execute_update(
            ForumWorkflow.decide,
            DecideRequest(camat, [DecisionRequest(res.proposal_ids[0], "accept")]),
        )
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await forum.execute_update(
                ForumWorkflow.extend,
                ExtendRequest(
                    lurah, (await env.get_current_time() + timedelta(days=5)).isoformat(), "Banjir"
                ),
            )
        assert getattr(refused.value.cause, "type", None) == "Forbidden"  # only the level above
        await forum.execute_update(
            ForumWorkflow.extend,
            ExtendRequest(
                camat,
                (await env.get_current_time() + timedelta(days=5)).isoformat(),
                "Banjir di RW 02",
            ),
        )
        assert (await forum.query(ForumWorkflow.view)).status == "open"
        result = await forum.result()  # nobody closes: reminders, escalation, auto-close again
        await save_history(forum, "forum-escalated")
    assert result.closed_by == "system" and [row[0] for row in result.forwarded] == res.proposal_ids
    types = [(r.type, r.actor.get("subject", r.actor.get("role"))) for r in await _events(engine)]
    assert ("ProposalAccepted", "koordinator.13.72.01") in types
    assert ("DeadlineExtended", "koordinator.13.72.01") in types
    assert [t for t, _ in types].count("EscalationRaised") == 2
    # the automatic close carries the checkpoint before it; another follows it
    assert types[-3:] == [
        ("ForumAutoClosed", "system"),
        ("ProposalForwarded", "system"),
        ("CheckpointIssued", "system"),
    ]
    rows = await _events(engine)
    closing = next(r for r in rows if r.type == "ForumAutoClosed")
    assert closing.payload["checkpoint"]["size"] == len(rows) - 4  # all before its own record
    assert rows[len(rows) - 4].type == "CheckpointIssued"


async def test_the_sipd_validation_is_bappedas_and_a_kecamatan_intake_names_the_kelurahan(
    time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, task_queue: str
) -> None:
    env = time_skipping_env
    kec, bappeda = "13.72.01", coordinator("13.72")
    async with build_worker(env.client, task_queue, engine):
        validation = await _start(
            env,
            task_queue,
            ("validasi-bappeda", "kecamatan", kec),
            incoming=[["p-1", 50_000_000, "dinas-pupr", "musrenbang", KEL]],
        )
        accept = DecideRequest(coordinator(kec), [DecisionRequest("p-1", "accept")])
        with pytest.raises(WorkflowUpdateFailedError) as err:
            await validation.execute_update(ForumWorkflow.decide, accept)
        assert getattr(err.value.cause, "type", None) == "Forbidden", "the camat does not"
        accept.actor = bappeda
        await validation.execute_update(ForumWorkflow.decide, accept)
        await validation.terminate()

        intake = await _start(env, task_queue, ("kecamatan", "kecamatan", kec))
        camat = coordinator(kec)
        for origin in ({}, {"kelurahan": "13.72.02.1001"}, {"kelurahan": "13.72.01"}):
            with pytest.raises(WorkflowUpdateFailedError) as err:
                await intake.execute_update(
                    ForumWorkflow.submit,
                    SubmitRequest(camat, [draft("Jalan rusak", "jalan", 10_000_000, **origin)]),
                )
            assert "kelurahan" in str(err.value.cause), origin
        await intake.execute_update(
            ForumWorkflow.submit,
            SubmitRequest(camat, [draft("Jalan rusak", "jalan", 10_000_000, kelurahan=KEL)]),
        )
        await intake.terminate()
    submitted = [r.payload for r in await _events(engine) if r.type == "ProposalSubmitted"]
    assert [p["details"]["kelurahan"] for p in submitted] == [KEL]


class _Hook(BaseHTTPRequestHandler):
    """A receiver that can be down: while `down`, every POST gets 503."""

    received: list[tuple[dict[str, Any], int]] = []  # noqa: RUF012 - shared with the test
    down = False
    fail_first = True

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        first_try = not any(r["key"] == body["key"] for r, _ in _Hook.received)
        status = 503 if _Hook.down or (first_try and _Hook.fail_first) else 204
        _Hook.received.append((body, status))
        self.send_response(status)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    _Hook.received, _Hook.down, _Hook.fail_first = [], False, True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook"
    server.shutdown()


async def _recorded(engine: AsyncEngine, type_: str) -> list[dict[str, Any]]:
    return [r.payload for r in await _events(engine) if r.type == type_]


async def _until_recorded(
    env: WorkflowEnvironment, engine: AsyncEngine, type_: str, count: int
) -> list[dict[str, Any]]:
    """Lets server time pass (in minutes) until `count` events of `type_` are in the log."""
    for _ in range(200):
        found = await _recorded(engine, type_)
        if len(found) >= count:
            return found
        await env.sleep(timedelta(minutes=5))
    raise AssertionError(f"{type_} never reached {count}: {await _recorded(engine, type_)}")


async def test_reminders_and_escalations_reach_the_webhook_with_retries(
    time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, task_queue: str, webhook: str
) -> None:
    env = time_skipping_env
    async with build_worker(env.client, task_queue, engine, webhook):
        forum = await _start(env, task_queue, reminder_hours=[24])
        await forum.result()
        delivered = await _until_recorded(env, engine, "NotificationDelivered", 2)
        await save_history(forum, "forum-reminded")
    answered = [(r["kind"], status) for r, status in _Hook.received]
    assert sorted(answered) == [
        ("escalation", 204),
        ("escalation", 503),
        ("reminder", 204),
        ("reminder", 503),
    ], "each notice's first try fails, the second arrives"
    assert sorted((d["kind"], d["attempt"], d["status"]) for d in delivered) == [
        ("escalation", 2, 204),
        ("reminder", 2, 204),
    ]


async def test_a_receiver_down_for_days_blocks_nothing_and_gets_each_notice_once(
    time_skipping_env: WorkflowEnvironment, engine: AsyncEngine, task_queue: str, webhook: str
) -> None:
    env = time_skipping_env
    _Hook.down, _Hook.fail_first = True, False
    async with build_worker(env.client, task_queue, engine, webhook):
        forum = await _start(env, task_queue, reminder_hours=[], grace_working_days=10)
        lurah, camat = coordinator(KEL), coordinator("13.72.01")
        res = await forum.execute_update(
            ForumWorkflow.submit,
            SubmitRequest(
                lurah, [draft(f"Jalan rusak {n}", "jalan", 10_000_000) for n in range(4)]
            ),
        )
        await env.sleep(timedelta(days=10, minutes=5))  # past the deadline: escalated
        assert (await forum.query(ForumWorkflow.view)).status == "overdue"
        for day, pid in enumerate(res.proposal_ids[:3]):  # three days, the receiver down
            started = asyncio.get_running_loop().time()
            await forum.execute_update(
                ForumWorkflow.decide, DecideRequest(camat, [DecisionRequest(pid, "accept")])
            )
            assert asyncio.get_running_loop().time() - started < 5, f"day {day}: a decision waited"
            await env.sleep(timedelta(days=1))
        assert await _recorded(engine, "NotificationDelivered") == []
        delayed = await _recorded(engine, "NotificationDelayed")
        assert [d["kind"] for d in delayed] == ["escalation"], "the outage is recorded, once"
        failures = sum(status == 503 for _, status in _Hook.received)
        assert failures > 50, "delivery was retried throughout the outage"
        _Hook.down = False
        delivered = await _until_recorded(env, engine, "NotificationDelivered", 1)
        await forum.execute_update(
            ForumWorkflow.decide,
            DecideRequest(camat, [DecisionRequest(res.proposal_ids[3], "accept")]),
        )
        description = await forum.describe()
        assert description.status is not None and description.status.name == "RUNNING"
        await forum.terminate()
    assert [(d["kind"], d["status"]) for d in delivered] == [("escalation", 204)]
    arrived = [r["kind"] for r, status in _Hook.received if status == 204]
    assert arrived == ["escalation"], "delivered once"
