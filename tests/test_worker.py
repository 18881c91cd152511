"""The worker's start-up against a Temporal server that is not there yet."""

from __future__ import annotations

import pytest


async def test_a_worker_waits_for_a_temporal_that_is_not_up_yet() -> None:
    """Started while Temporal restarts, a worker waits for it instead of exiting; a
    refusal that waiting cannot mend still stops it."""
    from temporalio.service import RPCError, RPCStatusCode

    from musrenbang.worker import until_answered

    answers: list[object] = [
        RPCError("tcp connect error", RPCStatusCode.UNAVAILABLE, b""),
        RPCError("tcp connect error", RPCStatusCode.UNAVAILABLE, b""),
        "registered",
    ]

    async def call() -> object:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert await until_answered(call, "register") == "registered"
    assert not answers

    async def refused() -> object:
        raise RPCError("no", RPCStatusCode.PERMISSION_DENIED, b"")

    with pytest.raises(RPCError):
        await until_answered(refused, "register")
