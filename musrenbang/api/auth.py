"""Bearer JWT: HS256 with a shared secret for local use (`musrenbang token`), or RS256
keys from an organisation's JWKS URL. The claims name the role and the jurisdiction."""

from __future__ import annotations

import asyncio
import time
from functools import lru_cache
from typing import Annotated, Any

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from jwt.types import Options

from musrenbang.api.errors import ApiError
from musrenbang.config import Settings
from musrenbang.domain.access import Role
from musrenbang.workflows.contracts import ActorRef

AUDIENCE = "musrenbang"
bearer = HTTPBearer(auto_error=False)


def issue_token(
    settings: Settings,
    subject: str,
    role: str,
    wilayah: str | None = None,
    opd: str | None = None,
    fraksi: str | None = None,
    hours: int = 12,
) -> str:
    if role not in {r.value for r in Role}:
        raise ValueError(f"unknown role {role!r}; use one of {', '.join(r.value for r in Role)}")
    if not 0 < hours <= settings.token_max_hours:
        raise ValueError(
            f"a token lives between 1 and {settings.token_max_hours} hours"
            " (MUSRENBANG_TOKEN_MAX_HOURS); it cannot be issued already expired"
        )
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": subject,
        "role": role,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + hours * 3600,
    }
    for key, value in (("wilayah", wilayah), ("opd", opd), ("fraksi", fraksi)):
        if value:
            claims[key] = value
    return jwt.encode(claims, settings.jwt_secret, algorithm="HS256")


# Every token must say who it is for and when it ends.
_REQUIRED: Options = {"require": ["exp", "sub", "aud"]}
JWKS_TIMEOUT_SECONDS = 5


@lru_cache(maxsize=4)
def jwks_client(url: str) -> jwt.PyJWKClient:
    """One client per process and URL: it caches the keys and fetches them again only for
    a key id it does not know (the identity provider rotated its keys)."""
    return jwt.PyJWKClient(url, cache_keys=True, lifespan=3600, timeout=JWKS_TIMEOUT_SECONDS)


def _decode(settings: Settings, token: str) -> dict[str, Any]:
    if settings.jwks_url:
        key = jwks_client(settings.jwks_url).get_signing_key_from_jwt(token).key
        claims = jwt.decode(token, key, algorithms=["RS256"], audience=AUDIENCE, options=_REQUIRED)
    else:
        claims = jwt.decode(
            token, settings.jwt_secret, algorithms=["HS256"], audience=AUDIENCE, options=_REQUIRED
        )
    if int(claims["exp"]) - time.time() > settings.token_max_hours * 3600 + 60:
        raise jwt.InvalidTokenError(
            f"it lives longer than the {settings.token_max_hours} hours a token may"
        )
    return claims


async def current_actor(
    request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> ActorRef:
    if creds is None:
        raise ApiError(401, "Unauthorized", "a bearer token is required")
    try:
        # Off the event loop: a JWKS fetch is a network call, bounded by its timeout.
        claims = await asyncio.to_thread(_decode, request.app.state.settings, creds.credentials)
    except jwt.PyJWTError as exc:
        raise ApiError(401, "Unauthorized", f"the token is not valid: {exc}") from exc
    role = claims.get("role")
    if role not in {r.value for r in Role} or not claims.get("sub"):
        raise ApiError(401, "Unauthorized", "the token names no known role or subject")
    return ActorRef(
        subject=str(claims["sub"]),
        role=role,
        jurisdiction=claims.get("opd") or claims.get("wilayah"),
        fraksi=claims.get("fraksi"),
        request_id=getattr(request.state, "request_id", None),
    )


CurrentActor = Annotated[ActorRef, Depends(current_actor)]


def require(actor: ActorRef, *roles: Role) -> None:
    if actor.role not in {r.value for r in roles}:
        raise ApiError(403, "Forbidden", f"the {actor.role} role may not do this")
