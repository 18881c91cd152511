"""Recorded workflow histories, replayed by the suite so that a change that would break
running workflows fails a test.

Record a new generation with MUSRENBANG_RECORD_HISTORIES=<prefix> (for example `v2`): the
histories are written beside the older ones as `<prefix>-<name>.json`, and the older ones
stay, so the code must replay both (a change guards its new commands with
`workflow.patched`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowHandle

from musrenbang.domain.catalogue import forum_id
from musrenbang.workflows.contracts import CycleInput

HERE = Path(__file__).parent


def _prefix() -> str | None:
    value = os.environ.get("MUSRENBANG_RECORD_HISTORIES")
    return value if value and value != "1" else None


async def save_history(handle: WorkflowHandle[Any, Any], name: str) -> None:
    """Writes the history with the workflow's id (ids of children derive from it)."""
    prefix = _prefix()
    if prefix is not None:
        history = json.loads((await handle.fetch_history()).to_json())
        saved = {"workflow_id": handle.id, **history}
        (HERE / f"{prefix}-{name}.json").write_text(json.dumps(saved, indent=2))


async def save_histories(client: Client, cycle: WorkflowHandle[Any, Any], inp: CycleInput) -> None:
    if _prefix() is None:
        return
    await save_history(cycle, "cycle")
    for stage in inp.stages:
        unit = {
            "kelurahan": inp.units["kelurahan"][0],
            "kecamatan": inp.units["kecamatan"][0],
            "forum-pd": "dinas-pupr",
        }.get(stage, inp.region)
        handle = client.get_workflow_handle(f"forum-{forum_id(inp.cycle_id, stage, unit)}")
        await save_history(handle, f"forum-{stage}")
