"""What anyone may read without an account: an usulan's path by its receipt code (nomor
usulan), with the reason of every "no" and nothing personal about its proposer."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from musrenbang.api.deps import ConnDep
from musrenbang.api.errors import ApiError, not_found
from musrenbang.api.responses import error_responses
from musrenbang.domain.trace import normalize_receipt, public_trace
from musrenbang.events import queries

router = APIRouter(responses=error_responses(404, 422, 503))


class PublicStep(BaseModel):
    at: str
    stage: str
    forum: str | None
    what: str
    reason: str | None = None
    reason_code: str | None = None
    merged_into: str | None = None


class PublicTrace(BaseModel):
    receipt: str
    cycle_id: str | None
    status: str
    usulan: dict[str, Any]
    steps: list[PublicStep]


async def trace_of(conn: Any, code: str) -> PublicTrace:
    """The public path of the usulan with receipt `code` (404 when there is none)."""
    receipt = normalize_receipt(code)
    if receipt is None:
        raise ApiError(422, "ValidationError", "a nomor usulan has 12 letters and digits")
    pid = await queries.proposal_by_receipt(conn, receipt)
    if pid is None:
        raise not_found(f"usulan {receipt}")
    events = await queries.proposal_events(conn, pid)
    cycle_id = str((events[0]["payload"] or {}).get("cycle_id")) if events else None
    state = await queries.cycle_state(conn, cycle_id) if cycle_id else None
    names = (state or {}).get("names") or {}
    stage_names = {d["slug"]: d["name"] for d in (state or {}).get("stage_defs") or []}
    found = public_trace(events, names, stage_names)
    return PublicTrace.model_validate({"receipt": receipt, "cycle_id": cycle_id, **found})


@router.get("/lacak/{code}")
async def track(code: str, conn: ConnDep) -> PublicTrace:
    """An usulan's path by its nomor usulan, for anyone: no token."""
    return await trace_of(conn, code)
