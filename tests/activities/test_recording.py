"""The record activity tells failures no retry can mend (refused at once, non-retryable)
from those a retry may (retried), against the real database."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
from sqlalchemy import make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from musrenbang.activities.recording import RecordingActivities
from musrenbang.events.append import EventWriter
from musrenbang.logging import OneLinePerAttempt
from musrenbang.workflows.contracts import EventSpec, RecordInput


def _spec(key: str, masalah: str) -> EventSpec:
    return EventSpec(
        stream="proposal:p-1",
        type="ProposalSubmitted",
        payload={"proposal_id": "p-1", "details": {"masalah": masalah}},
        actor={"subject": "lurah", "role": "coordinator"},
        occurred_at=datetime(2027, 1, 5, tzinfo=UTC).isoformat(),
        idempotency_key=key,
    )


async def test_deterministic_failures_are_refused_and_transient_ones_retried(
    engine: AsyncEngine,
) -> None:
    writer = EventWriter(engine.url)
    acts = RecordingActivities(writer, None)
    env = ActivityEnvironment()
    try:
        cases = [
            (_spec("k-nul", "Jalan\u0000rusak"), "Refused"),
            (_spec("k-surrogate", "Jalan \ud800"), "Refused"),
        ]
        assert await env.run(acts.record_events, RecordInput("13.72", [_spec("k-1", "a")])) == [1]
        cases.append((_spec("k-1", "other content"), "Conflict"))
        for spec, kind in cases:
            with pytest.raises(ApplicationError) as err:
                await env.run(acts.record_events, RecordInput("13.72", [spec]))
            assert (err.value.type, err.value.non_retryable) == (kind, True), err.value
    finally:
        await writer.aclose()
    down = EventWriter(make_url(str(engine.url)).set(host="127.0.0.1", port=1))
    try:
        with pytest.raises(Exception) as err:
            await env.run(
                RecordingActivities(down, None).record_events,
                RecordInput("13.72", [_spec("k-2", "b")]),
            )
        assert not isinstance(err.value, ApplicationError), "a database that is down is retried"
    finally:
        await down.aclose()


def test_a_failed_attempt_is_one_line() -> None:
    try:
        raise RuntimeError("webhook answered 503")
    except RuntimeError:
        import sys

        record = logging.LogRecord(
            "temporalio.activity",
            logging.WARNING,
            "x",
            1,
            "Completing activity as failed",
            (),
            sys.exc_info(),
        )
    assert OneLinePerAttempt().filter(record)
    assert record.exc_info is None
    assert record.getMessage() == (
        "Completing activity as failed: RuntimeError: webhook answered 503"
    )
