"""Recorded workflow histories, replayed by the suite so that a change that would break
running workflows fails a test. Refresh them with MUSRENBANG_RECORD_HISTORIES=1 (only
when a change to the workflows is meant to be incompatible, with a new workflow name)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowHandle

from musrenbang.domain.stages import forum_id
from musrenbang.workflows.contracts import CycleInput

HERE = Path(__file__).parent


async def save_histories(client: Client, cycle: WorkflowHandle[Any, Any], inp: CycleInput) -> None:
    if os.environ.get("MUSRENBANG_RECORD_HISTORIES") != "1":
        return
    (HERE / "cycle.json").write_text((await cycle.fetch_history()).to_json())
    for stage in inp.stages:
        unit = {
            "kelurahan": inp.units["kelurahan"][0],
            "kecamatan": inp.units["kecamatan"][0],
            "forum-pd": "dinas-pupr",
        }.get(stage, inp.region)
        handle = client.get_workflow_handle(f"forum-{forum_id(inp.cycle_id, stage, unit)}")
        (HERE / f"forum-{stage}.json").write_text((await handle.fetch_history()).to_json())
