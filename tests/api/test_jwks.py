"""RS256 tokens from an organisation's identity provider, checked against its JWKS URL."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import WorkflowEnvironment

from musrenbang.api.app import create_app
from musrenbang.api.auth import AUDIENCE
from musrenbang.config import Settings

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
fetches: list[str] = []  # the JWKS requests the server saw


@pytest.fixture
def jwks_url() -> Iterator[str]:
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(KEY.public_key()))
    body = json.dumps({"keys": [{**public, "kid": "idp-1", "use": "sig", "alg": "RS256"}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            fetches.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    fetches.clear()
    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/jwks.json"
    server.shutdown()


def _token(key: Any, **claims: Any) -> str:
    now = int(time.time())
    payload = {
        "sub": "auditor@bpk.go.id",
        "role": "auditor",
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 600,
        "regions": ["*"],
    }
    return jwt.encode({**payload, **claims}, key, algorithm="RS256", headers={"kid": "idp-1"})


async def test_rs256_tokens_from_the_jwks_are_accepted_and_forgeries_refused(
    jwks_url: str, time_skipping_env: WorkflowEnvironment, engine: AsyncEngine
) -> None:
    app = create_app(Settings(jwks_url=jwks_url), engine=engine, temporal=time_skipping_env.client)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t/api/v1"
    ) as api:
        ok = await api.get("/audit/verify", headers={"Authorization": f"Bearer {_token(KEY)}"})
        assert ok.status_code == 200 and ok.json()["ok"] is True
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        forged = await api.get(
            "/audit/verify", headers={"Authorization": f"Bearer {_token(other)}"}
        )
        assert forged.status_code == 401 and forged.json()["error"] == "Unauthorized"
        hs = jwt.encode({"sub": "x", "role": "admin", "aud": AUDIENCE}, "guess", algorithm="HS256")
        assert (
            await api.get("/audit/verify", headers={"Authorization": f"Bearer {hs}"})
        ).status_code == 401


async def test_tokens_without_exp_or_living_too_long_are_refused_and_keys_are_cached(
    jwks_url: str, time_skipping_env: WorkflowEnvironment, engine: AsyncEngine
) -> None:
    from musrenbang.api.auth import issue_token, jwks_client

    settings = Settings(jwks_url=jwks_url, token_max_hours=8)
    app = create_app(settings, engine=engine, temporal=time_skipping_env.client)
    now = int(time.time())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t/api/v1"
    ) as api:
        for token in (
            jwt.encode(
                {"sub": "a", "role": "auditor", "aud": AUDIENCE},
                KEY,
                algorithm="RS256",
                headers={"kid": "idp-1"},
            ),
            _token(KEY, exp=now + 30 * 24 * 3600),
            _token(KEY, exp=now - 10),
        ):
            res = await api.get("/audit/verify", headers={"Authorization": f"Bearer {token}"})
            assert res.status_code == 401, res.text
        for _ in range(3):
            res = await api.get("/audit/verify", headers={"Authorization": f"Bearer {_token(KEY)}"})
            assert res.status_code == 200, res.text
    assert jwks_client(jwks_url) is jwks_client(jwks_url), "one client per process"
    assert len(fetches) == 1, "the keys were fetched once, not per request"
    with pytest.raises(ValueError, match="between 1 and 8 hours"):
        issue_token(settings, "x", "auditor", hours=-5)
    with pytest.raises(ValueError, match="between 1 and 8 hours"):
        issue_token(settings, "x", "auditor", hours=9)
