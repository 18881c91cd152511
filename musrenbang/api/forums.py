"""The forums of a cycle as an operator or coordinator needs them: open, overdue, closed,
and stuck (a forum whose workflow is not running as it should), with unit names,
deadlines and who a missed deadline was escalated to."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from temporalio.client import Client, WorkflowExecutionStatus

from musrenbang.api.auth import CurrentActor, cycle_region, require_read
from musrenbang.api.deps import ConnDep, TemporalDep
from musrenbang.api.errors import not_found
from musrenbang.api.responses import ForumList, ForumListing, error_responses
from musrenbang.domain.regions import unit_name
from musrenbang.events import queries
from musrenbang.events.queries import ForumRow

router = APIRouter(responses=error_responses(401, 422, 503))
CYCLE_ID = r"^\d{2}\.\d{2}-\d{4}$"
LOOKUP_SECONDS = 3.0
_FORUM_ID = re.compile(r"^forum-")


async def stuck_workflows(client: Client, cycle_id: str) -> dict[str, str] | None:
    """Forum ids of the cycle whose workflow ended other than by completing (failed,
    terminated, timed out), with that status; None when Temporal could not say."""
    query = (
        f"MusrenbangCycle = '{cycle_id}' AND WorkflowType = 'ForumWorkflow'"
        " AND ExecutionStatus != 'Running' AND ExecutionStatus != 'Completed'"
    )

    async def collect() -> dict[str, str]:
        found: dict[str, str] = {}
        async for wf in client.list_workflows(query, limit=1000):
            status = wf.status or WorkflowExecutionStatus.FAILED
            found[_FORUM_ID.sub("", wf.id)] = status.name.lower()
        return found

    try:
        return await asyncio.wait_for(collect(), LOOKUP_SECONDS)
    except Exception:
        return None  # the time-skipping test server and a down Temporal have no visibility


def _status(row: ForumRow, stuck: dict[str, str], now: datetime) -> str:
    if row.forum_id in stuck and row.status != "closed":
        return "stuck"
    deadline = row.state.get("deadline")
    if row.status == "open" and deadline and datetime.fromisoformat(deadline) < now:
        return "overdue"  # past its deadline, and not escalated yet
    return str(row.status)


@router.get("/cycles/{cycle_id}/forums", responses=error_responses(403, 404))
async def list_forums(
    cycle_id: Annotated[str, Path(pattern=CYCLE_ID)],
    conn: ConnDep,
    client: TemporalDep,
    actor: CurrentActor,
    status: Annotated[Literal["open", "overdue", "closed", "stuck"] | None, Query()] = None,
    stage: Annotated[str | None, Query(max_length=40)] = None,
    unit_prefix: Annotated[str | None, Query(max_length=40, pattern=r"^[a-z0-9.-]+$")] = None,
) -> ForumList:
    """Every forum the cycle has opened, newest state first by stage and unit."""
    require_read(actor, cycle_region(cycle_id))
    names = await queries.cycle_names(conn, cycle_id)
    if names is None:
        raise not_found(f"cycle {cycle_id}")
    rows = await queries.cycle_forums(conn, cycle_id, stage, unit_prefix)
    stuck = await stuck_workflows(client, cycle_id)
    now = datetime.now(UTC)
    forums: list[ForumListing] = []
    for row in rows:
        shown = _status(row, stuck or {}, now)
        if status is not None and shown != status:
            continue
        escalated_to = row.state.get("escalated_to")
        forums.append(
            ForumListing(
                forum_id=row.forum_id,
                stage=row.stage,
                unit=row.unit,
                unit_name=unit_name(row.unit, names),
                status=shown,
                deadline=row.state.get("deadline"),
                escalated_to=escalated_to,
                escalated_to_name=unit_name(escalated_to, names) if escalated_to else None,
                closed_by=row.state.get("closed_by"),
                workflow_status=(stuck or {}).get(row.forum_id),
                last_seq=row.last_seq,
            )
        )
    counts: dict[str, int] = {}
    for forum in forums:
        counts[forum.status] = counts.get(forum.status, 0) + 1
    return ForumList(
        cycle_id=cycle_id, forums=forums, counts=counts, workflows_checked=stuck is not None
    )
