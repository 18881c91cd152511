"""`musrenbang audit verify` exits 0 on an intact log and names the first bad seq otherwise."""

from __future__ import annotations

import os
import subprocess
import sys

from sqlalchemy import URL, text
from sqlalchemy.ext.asyncio import AsyncEngine

from musrenbang.events.append import append_events
from tests.events.helpers import submitted


def _verify(owner_db: URL) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "MUSRENBANG_DATABASE_URL": owner_db.render_as_string(hide_password=False),
        "MUSRENBANG_LOG_LEVEL": "WARNING",
    }
    return subprocess.run(
        [sys.executable, "-m", "musrenbang.cli", "audit", "verify"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_audit_verify_exit_codes(
    engine: AsyncEngine, owner_engine: AsyncEngine, owner_db: URL
) -> None:
    async with engine.begin() as conn:
        await append_events(conn, "36.71", [submitted(f"p{i}") for i in range(5)])
    intact = _verify(owner_db)
    assert intact.returncode == 0, intact.stderr
    assert "5 events verified" in intact.stdout

    async with owner_engine.begin() as conn:
        await conn.execute(text("ALTER TABLE audit.events DISABLE TRIGGER USER"))
        await conn.execute(
            text(
                "UPDATE audit.events SET recorded_at = recorded_at + interval '1 day' WHERE seq = 4"
            )
        )
    broken = _verify(owner_db)
    assert broken.returncode == 1
    assert "at seq 4" in broken.stderr
