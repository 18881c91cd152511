"""Replays recorded histories against today's workflow code: a change that would break
workflows already running in production fails here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from musrenbang.worker import WORKFLOWS

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def test_histories_are_recorded() -> None:
    names = {p.stem for p in HISTORIES}
    assert {
        "cycle",
        "forum-kelurahan",
        "forum-kecamatan",
        "forum-forum-pd",
        "forum-kota",
        "forum-rkpd",
    } <= names


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
async def test_recorded_history_replays(path: Path) -> None:
    saved = json.loads(path.read_text())
    # Newer recordings carry the workflow's id, which the ids of its children derive from.
    history = WorkflowHistory.from_json(saved.pop("workflow_id", path.stem), saved)
    # Replayed inside the sandbox, which also refuses non-deterministic calls.
    await Replayer(workflows=WORKFLOWS).replay_workflow(history)
