"""Coordinator commands: each becomes a Temporal update (or a workflow start) and answers
once its events are durable, with their seqs. An `Idempotency-Key` header is bound to its
request (api/idempotency.py) and becomes the update id, so a retried request returns the
first answer and writes nothing new."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import RPCTimeoutOrCancelledError, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from musrenbang.api.auth import CurrentActor, allow, cycle_region, may_read, require_write
from musrenbang.api.deps import SettingsDep, TemporalDep
from musrenbang.api.errors import ApiError, not_found
from musrenbang.api.idempotency import claim
from musrenbang.api.responses import CommandAnswer, CycleCreated, error_responses
from musrenbang.api.schemas import (
    CloseBody,
    CycleCreate,
    DeadlineBody,
    DecideBody,
    PokirBody,
    SubmitBody,
)
from musrenbang.domain.access import Role
from musrenbang.domain.catalogue import cycle_workflow_id, forum_id, forum_workflow_id
from musrenbang.domain.profiles import SLUG
from musrenbang.domain.regions import UnknownRegion
from musrenbang.events import contacts, queries
from musrenbang.logging import get_logger
from musrenbang.planning import CyclePlan, cycle_input
from musrenbang.workflows.contracts import (
    CloseRequest,
    CommandResult,
    DecideRequest,
    ExtendRequest,
    PokirRequest,
    SubmitRequest,
)
from musrenbang.workflows.cycle import CycleWorkflow
from musrenbang.workflows.forum import ForumWorkflow

router = APIRouter(responses=error_responses(400, 401, 403, 409, 422, 503))
log = get_logger(__name__)
# How long a person's request waits for its update before it is told to send it again.
UPDATE_WAIT = 30.0
IdempotencyKey = Annotated[
    str | None, Header(alias="Idempotency-Key", min_length=1, max_length=200)
]


Command = Callable[[str], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Once:
    """Runs a command once per Idempotency-Key: the key, scoped to the caller, is the
    update id; a request already answered gets that answer without running again."""

    engine: AsyncEngine
    endpoint: str
    subject: str
    key: str | None

    async def run(self, body: BaseModel, command: Command) -> dict[str, Any]:
        if self.key is None:
            return await command(str(uuid.uuid4()))
        held = await claim(self.engine, self.subject, self.key, self.endpoint, body)
        if held.answer is not None:
            return held.answer
        answer = await command(f"{self.subject}:{self.key}")
        await held.remember(self.engine, answer)
        return answer


def _once(request: Request, actor: CurrentActor, key: IdempotencyKey = None) -> Once:
    endpoint = f"{request.method} {request.url.path}"
    return Once(request.app.state.engine, endpoint, actor.subject, key)


OnceDep = Annotated[Once, Depends(_once)]


def _result(res: CommandResult) -> dict[str, Any]:
    return {"seqs": res.seqs, "proposal_ids": res.proposal_ids, "receipt_codes": res.receipt_codes}


async def run_update(
    handle: WorkflowHandle[Any, Any],
    update: Any,
    req: Any,
    update_id: str,
    missing: Callable[[], Awaitable[ApiError]],
) -> dict[str, Any]:
    """Runs an update and waits for it, but never longer than UPDATE_WAIT: a person is
    waiting. The update carries on; the same Idempotency-Key later returns its answer.
    A workflow that is not running is answered by `missing`."""
    try:
        res = await asyncio.wait_for(handle.execute_update(update, req, id=update_id), UPDATE_WAIT)
    except (TimeoutError, RPCTimeoutOrCancelledError):  # the client raises the latter when cut
        raise ApiError(
            503,
            "Unavailable",
            f"the request was not answered within {UPDATE_WAIT:.0f} s; send it again with the"
            " same Idempotency-Key to get its answer",
        ) from None
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
        raise await missing() from None
    return _result(res)


async def _forum_command(
    client: Any,
    path: tuple[str, str, str],
    update: Any,
    req: Any,
    once: Once,
    body: BaseModel,
) -> dict[str, Any]:
    """Runs `update` on the forum, once; answers when its events are durable."""
    cycle_id, stage, unit = path
    handle = _forum(client, cycle_id, stage, unit)

    async def missing() -> ApiError:
        return await _not_running(once.engine, forum_id(cycle_id, stage, unit))

    async def command(update_id: str) -> dict[str, Any]:
        return await run_update(handle, update, req, update_id, missing)

    return await once.run(body, command)


async def _not_running(engine: Any, fid: str) -> ApiError:
    """Why a forum's workflow did not take a command: closed (409), never opened (404),
    or stopped while the log says it is open (503, for an operator)."""
    async with engine.connect() as conn:
        status = await queries.forum_status(conn, fid)
    if status is None:
        return ApiError(404, "NotFound", f"the forum {fid} is not open (it never opened)")
    if status == "closed":
        return ApiError(409, "Conflict", f"the forum {fid} is closed")
    return ApiError(
        503, "Unavailable", f"the forum {fid} is {status} but its workflow is not running"
    )


def _forum(client: Any, cycle_id: str, stage: str, unit: str) -> WorkflowHandle[Any, Any]:
    if not SLUG.fullmatch(stage):  # a stage of the cycle's own graph, or of a template
        raise ApiError(
            404, "NotFound", f"unknown stage {stage!r}: a stage is a slug, e.g. kelurahan"
        )
    handle: WorkflowHandle[Any, Any] = client.get_workflow_handle(
        forum_workflow_id(cycle_id, stage, unit)
    )
    return handle


@router.post(
    "/cycles", status_code=201, dependencies=[allow(Role.ADMIN)], response_model=CycleCreated
)
async def create_cycle(
    body: CycleCreate,
    actor: CurrentActor,
    client: TemporalDep,
    settings: SettingsDep,
    once: OnceDep,
) -> dict[str, Any]:
    """Opens a planning cycle for a kota/kabupaten and year (admin)."""
    require_write(actor, body.region)
    plan = CyclePlan(
        region=body.region,
        year=body.year,
        template=body.template,
        deadlines=dict(body.deadlines),
        pokir_deadline=body.pokir_deadline.isoformat() if body.pokir_deadline else None,
        pagu=body.pagu,
        reminder_hours=body.reminder_hours,
        grace_working_days=body.grace_working_days,
        auto_close_policy=body.auto_close_policy,
        holidays=[d.isoformat() for d in body.holidays],
        profile=body.profile,
        profiles_dir=settings.profiles_dir,
    )
    try:
        inp = cycle_input(plan, actor)
    except (UnknownRegion, ValueError) as exc:
        raise ApiError(422, "Refused", str(exc)) from exc

    async def command(_: str) -> dict[str, Any]:
        return await _start_cycle(client, settings, inp)

    return await once.run(body, command)


async def _start_cycle(client: Any, settings: Any, inp: Any) -> dict[str, Any]:
    try:
        await client.start_workflow(
            CycleWorkflow.run,
            inp,
            id=cycle_workflow_id(inp.cycle_id),
            task_queue=settings.temporal_task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        )
    except WorkflowAlreadyStartedError as exc:
        raise ApiError(409, "Conflict", f"the cycle {inp.cycle_id} already exists") from exc
    return {
        "cycle_id": inp.cycle_id,
        "region": inp.region,
        "name": inp.region_name,
        "stages": inp.stages,
        "deadlines": inp.deadlines,
        "pokir_deadline": inp.pokir_deadline,
        "kelurahan": len(inp.units["kelurahan"]),
        "kecamatan": len(inp.units["kecamatan"]),
        "opds": inp.opds,
        "profile": inp.profile.get("source", "default"),
    }


@router.post(
    "/cycles/{cycle_id}/pokir",
    dependencies=[allow(Role.DPRD, Role.ADMIN)],
    response_model=CommandAnswer,
    responses=error_responses(404),
)
async def submit_pokir(
    cycle_id: str,
    body: PokirBody,
    actor: CurrentActor,
    client: TemporalDep,
    once: OnceDep,
) -> dict[str, Any]:
    """Pokir DPRD (dprd role), until the pokir deadline."""
    require_write(actor, cycle_region(cycle_id))
    if any(d.kontak for d in body.proposals):
        raise ApiError(422, "Refused", "a pokir's proposer is its DPRD member: no kontak")
    drafts = [d.model_dump(exclude={"kontak"}) for d in body.proposals]
    req = PokirRequest(actor, body.dapil, drafts)
    handle = client.get_workflow_handle(cycle_workflow_id(cycle_id))

    async def missing() -> ApiError:
        return ApiError(409, "Conflict", f"the cycle {cycle_id} is not running")

    async def command(update_id: str) -> dict[str, Any]:
        return await run_update(handle, CycleWorkflow.submit_pokir, req, update_id, missing)

    return await once.run(body, command)


@router.post(
    "/cycles/{cycle_id}/forums/{stage}/{unit}/proposals",
    dependencies=[allow(Role.COORDINATOR, Role.ADMIN)],
    response_model=CommandAnswer,
    responses=error_responses(404),
)
async def submit(
    cycle_id: str,
    stage: str,
    unit: str,
    body: SubmitBody,
    actor: CurrentActor,
    client: TemporalDep,
    once: OnceDep,
) -> dict[str, Any]:
    """Submits usulan to the forum that takes them (the first stage of the template)."""
    require_write(actor, cycle_region(cycle_id))
    # A proposer's contact never reaches the workflow or the log: it is kept apart.
    req = SubmitRequest(actor, [d.model_dump(exclude={"kontak"}) for d in body.proposals])
    answer = await _forum_command(
        client, (cycle_id, stage, unit), ForumWorkflow.submit, req, once, body
    )
    await remember_contacts(
        once.engine, answer.get("proposal_ids", []), [d.kontak for d in body.proposals]
    )
    return answer


async def remember_contacts(
    engine: AsyncEngine, proposal_ids: list[str], given: list[str | None]
) -> None:
    pairs = [(pid, kontak) for pid, kontak in zip(proposal_ids, given, strict=False) if kontak]
    if not pairs:
        return
    try:  # the usulan stand; only the notice to their proposers would be lost
        async with engine.begin() as conn:
            await contacts.remember(conn, pairs)
    except SQLAlchemyError as exc:
        log.error("contacts.not_kept", count=len(pairs), error=str(exc)[:200])


@router.post(
    "/cycles/{cycle_id}/forums/{stage}/{unit}/decisions",
    dependencies=[allow(Role.COORDINATOR, Role.ADMIN)],
    response_model=CommandAnswer,
    responses=error_responses(404),
)
async def decide(
    cycle_id: str,
    stage: str,
    unit: str,
    body: DecideBody,
    actor: CurrentActor,
    client: TemporalDep,
    once: OnceDep,
) -> dict[str, Any]:
    """A batch of decisions, recorded all together or not at all."""
    require_write(actor, cycle_region(cycle_id))
    req = DecideRequest(actor, [d.model_dump() for d in body.decisions])
    return await _forum_command(
        client, (cycle_id, stage, unit), ForumWorkflow.decide, req, once, body
    )


@router.post(
    "/cycles/{cycle_id}/forums/{stage}/{unit}/close",
    dependencies=[allow(Role.COORDINATOR, Role.ADMIN)],
    response_model=CommandAnswer,
    responses=error_responses(404),
)
async def close(
    cycle_id: str,
    stage: str,
    unit: str,
    body: CloseBody,
    actor: CurrentActor,
    client: TemporalDep,
    once: OnceDep,
) -> dict[str, Any]:
    """Closes the forum with its Berita Acara; accepted usulan go on to the next stage."""
    require_write(actor, cycle_region(cycle_id))
    req = CloseRequest(actor, body.berita_acara.request())
    return await _forum_command(
        client, (cycle_id, stage, unit), ForumWorkflow.close, req, once, body
    )


@router.post(
    "/cycles/{cycle_id}/forums/{stage}/{unit}/deadline",
    dependencies=[allow(Role.COORDINATOR, Role.ADMIN)],
    response_model=CommandAnswer,
    responses=error_responses(404),
)
async def extend(
    cycle_id: str,
    stage: str,
    unit: str,
    body: DeadlineBody,
    actor: CurrentActor,
    client: TemporalDep,
    once: OnceDep,
) -> dict[str, Any]:
    """Moves the forum's deadline (the level above)."""
    require_write(actor, cycle_region(cycle_id))
    if body.new_deadline.tzinfo is None:
        raise ApiError(422, "ValidationError", "new_deadline needs a time zone, e.g. +07:00")
    req = ExtendRequest(actor, body.new_deadline.isoformat(), body.reason)
    return await _forum_command(
        client, (cycle_id, stage, unit), ForumWorkflow.extend, req, once, body
    )


@router.delete(
    "/proposals/{proposal_id}/kontak",
    status_code=204,
    dependencies=[allow(Role.ADMIN)],
    responses=error_responses(404),
)
async def forget_contact(proposal_id: str, request: Request, actor: CurrentActor) -> Response:
    """Erases a proposer's contact on their request (UU PDP): the usulan and everything
    decided on it stay in the log; only the way to reach its proposer goes (admin)."""
    engine: AsyncEngine = request.app.state.engine
    async with engine.begin() as conn:
        state = await queries.proposal_state(conn, proposal_id)
        if state is None or not may_read(actor, str(state.get("cycle_id", "")).split("-")[0]):
            raise not_found(f"usulan {proposal_id}")
        if not await contacts.forget(conn, proposal_id):
            raise not_found(f"a contact of usulan {proposal_id}")
    log.info("contacts.forgotten", proposal_id=proposal_id, by=actor.subject)
    return Response(status_code=204)
