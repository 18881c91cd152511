"""Custom search attributes on every cycle and forum workflow, so an operator finds "every
overdue forum of kecamatan 36.71.13" with one query in the Temporal UI or CLI:

    MusrenbangStatus = 'overdue' AND MusrenbangUnit STARTS_WITH '36.71.13'

They are registered by `musrenbang up` (dev server flags), by the worker at start-up and
by the compose set-up (docker-compose.yml)."""

from __future__ import annotations

from datetime import datetime

from temporalio import workflow
from temporalio.common import SearchAttributeKey, SearchAttributeUpdate

REGION = SearchAttributeKey.for_keyword("MusrenbangRegion")
CYCLE = SearchAttributeKey.for_keyword("MusrenbangCycle")
STAGE = SearchAttributeKey.for_keyword("MusrenbangStage")
UNIT = SearchAttributeKey.for_keyword("MusrenbangUnit")
STATUS = SearchAttributeKey.for_keyword("MusrenbangStatus")
DEADLINE = SearchAttributeKey.for_datetime("MusrenbangDeadline")
KEYS = (REGION, CYCLE, STAGE, UNIT, STATUS, DEADLINE)
# Histories recorded before the attributes existed replay without them.
PATCH = "search-attributes"


def publish(
    *,
    region: str,
    cycle: str,
    status: str,
    stage: str | None = None,
    unit: str | None = None,
    deadline: datetime | None = None,
) -> None:
    """Sets the workflow's attributes to what it is now."""
    if not workflow.patched(PATCH):
        return
    updates: list[SearchAttributeUpdate[str] | SearchAttributeUpdate[datetime]] = [
        REGION.value_set(region),
        CYCLE.value_set(cycle),
        STATUS.value_set(status),
    ]
    if stage is not None:
        updates.append(STAGE.value_set(stage))
    if unit is not None:
        updates.append(UNIT.value_set(unit))
    if deadline is not None:
        updates.append(DEADLINE.value_set(deadline))
    workflow.upsert_search_attributes(updates)
