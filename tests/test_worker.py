"""The worker's start-up against a Temporal server that is not there yet."""

from __future__ import annotations

from pathlib import Path

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


def test_production_refuses_a_worker_without_a_signing_key(tmp_path: Path) -> None:
    from musrenbang.config import Settings
    from musrenbang.events.tlog import generate_key
    from musrenbang.worker import configured_worker, load_signer

    production = {
        "environment": "production",
        "jwt_secret": "a-production-secret-of-enough-length",
        "app_db_password": "not-the-default",
    }
    with pytest.raises(RuntimeError, match="MUSRENBANG_LOG_SIGNING_KEY"):
        configured_worker(Settings(**production), None, None)  # type: ignore[arg-type]
    skey, vkey = generate_key("bappeda.example")
    key_file = tmp_path / "signer.key"
    key_file.write_text(skey + "\n")
    signer = load_signer(Settings(**production, log_signing_key_file=key_file))
    assert signer is not None and signer.verifier().text() == vkey
    assert load_signer(Settings(log_signing_key=skey)) == signer
