"""Property-based requests generated from the app's own OpenAPI schema (schemathesis),
bounded in number, against the API served for real (uvicorn, a Temporal dev server,
PostgreSQL): whatever arrives, the answer is never a server error, and every error has
the contract's shape."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from sqlalchemy import URL

from musrenbang.api.app import create_app
from musrenbang.api.auth import issue_token
from musrenbang.config import Settings
from musrenbang.embedded import binary

EXAMPLES = 25


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(owner_db: URL) -> Iterator[tuple[str, Settings]]:
    temporal_port = _port()
    temporal = subprocess.Popen(  # noqa: S603
        [
            binary("temporal"),
            "server",
            "start-dev",
            "--headless",
            "--ip",
            "127.0.0.1",
            "--port",
            str(temporal_port),
            "--log-level",
            "error",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    cfg = Settings(
        database_url=owner_db.render_as_string(hide_password=False),
        temporal_address=f"127.0.0.1:{temporal_port}",
        jwt_secret="schemathesis-secret",
        temporal_task_queue="schemathesis",
        api_port=_port(),
    )
    server = uvicorn.Server(
        uvicorn.Config(create_app(cfg), host="127.0.0.1", port=cfg.api_port, log_config=None)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    base = f"http://127.0.0.1:{cfg.api_port}"
    try:
        for _ in range(100):  # the dev server takes a moment; the app connects at start-up
            try:
                with socket.create_connection(("127.0.0.1", temporal_port), timeout=1):
                    break
            except OSError:
                time.sleep(0.2)
        thread.start()
        for _ in range(200):
            try:
                if httpx.get(f"{base}/api/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield base, cfg
    finally:
        server.should_exit = True
        thread.join(10)
        temporal.terminate()
        temporal.wait(10)


def test_no_generated_request_makes_the_server_fail(served: tuple[str, Settings]) -> None:
    base, cfg = served
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    auth = {"Authorization": f"Bearer {issue_token(cfg, 'admin.fuzz', 'admin', '36.71')}"}
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any) -> None:
            response = case.call(base_url=base, headers=auth, timeout=30)
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path}: {response.status_code} {response.text}"
                )
            elif response.status_code >= 400:
                body = response.json()
                if not isinstance(body, dict) or set(body) != {"error", "detail"}:
                    failures.append(f"{case.method} {case.formatted_path}: error shape {body}")

        check()
    assert operations >= 15
    assert failures == []
