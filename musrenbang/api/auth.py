"""Bearer JWT: HS256 with a shared secret for local use (`musrenbang token`), or RS256
keys from an organisation's JWKS URL. The claims name the role and the jurisdiction."""

from __future__ import annotations

import asyncio
import re
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
    region: str | None = None,
    regions: list[str] | None = None,
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
    region = region or (region_of(wilayah) if wilayah else None)
    if role == Role.AUDITOR and not regions:
        regions = [region] if region else [ALL_REGIONS]
    for key, value in (
        ("wilayah", wilayah),
        ("opd", opd),
        ("fraksi", fraksi),
        ("region", region),
        ("regions", regions),
    ):
        if value:
            claims[key] = value
    return jwt.encode(claims, settings.jwt_secret, algorithm="HS256")


ALL_REGIONS = "*"
PAGE_COOKIE = "musrenbang_token"  # the pages' sign-in (api/pages.py)
_REGION = re.compile(r"^\d{2}\.\d{2}$")


def region_of(code: str) -> str:
    """The kota/kabupaten of a region code (`36.71.01.1001` -> `36.71`)."""
    return ".".join(code.split(".")[:2])


def _region_claims(role: str, claims: dict[str, Any]) -> tuple[str | None, list[str] | None]:
    """The region a token belongs to and, for an auditor, the regions it reads. Every token
    but a deployment-wide admin's names its region; an OPD's and a DPRD member's say it in
    `region`, a lurah's and a camat's in their `wilayah` too."""
    wilayah, region = claims.get("wilayah"), claims.get("region")
    if wilayah is not None and not isinstance(wilayah, str):
        raise ApiError(401, "Unauthorized", "the token's wilayah must be a region code")
    if region is None and wilayah:
        region = region_of(wilayah)
    if region is not None and not (isinstance(region, str) and _REGION.fullmatch(region)):
        raise ApiError(401, "Unauthorized", "the token's region must be a code like 36.71")
    if wilayah and region_of(wilayah) != region:
        raise ApiError(401, "Unauthorized", f"the token's wilayah {wilayah} is not in {region}")
    if role == Role.AUDITOR:
        regions = claims.get("regions")
        if regions is None and region:
            regions = [region]
        if not (isinstance(regions, list) and regions and all(isinstance(r, str) for r in regions)):
            raise ApiError(
                401, "Unauthorized", 'an auditor\'s token names the regions it reads ("*": all)'
            )
        return region, [str(r) for r in regions]
    if role in (Role.COORDINATOR, Role.DPRD) and region is None:
        raise ApiError(401, "Unauthorized", f"a {role} token must name its region")
    return region, None


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
    if creds is not None:
        return await actor_of(request, creds.credentials)
    # A signed-in person's pages link to reads (a PDF, an export): a GET may carry the
    # pages' cookie instead (SameSite=Strict: never sent from another site).
    cookie = request.cookies.get(PAGE_COOKIE) if request.method == "GET" else None
    if cookie:
        return await actor_of(request, cookie)
    raise ApiError(401, "Unauthorized", "a bearer token is required")


async def actor_of(request: Request, token: str) -> ActorRef:
    """Who a token names, with the same checks for the API's bearer and the pages' cookie."""
    try:
        # Off the event loop: a JWKS fetch is a network call, bounded by its timeout.
        claims = await asyncio.to_thread(_decode, request.app.state.settings, token)
    except jwt.PyJWTError as exc:
        raise ApiError(401, "Unauthorized", f"the token is not valid: {exc}") from exc
    role = claims.get("role")
    if role not in {r.value for r in Role} or not claims.get("sub"):
        raise ApiError(401, "Unauthorized", "the token names no known role or subject")
    region, regions = _region_claims(role, claims)
    return ActorRef(
        subject=str(claims["sub"]),
        role=role,
        jurisdiction=claims.get("opd") or claims.get("wilayah"),
        fraksi=claims.get("fraksi"),
        request_id=getattr(request.state, "request_id", None),
        region=region,
        regions=regions,
    )


CurrentActor = Annotated[ActorRef, Depends(current_actor)]


def allow(*roles: Role) -> Any:
    """A route dependency: a role that may never do the action gets 403 before the body
    is validated (FastAPI runs dependencies first)."""

    async def check(actor: CurrentActor) -> None:
        require(actor, *roles)

    return Depends(check)


def cycle_region(cycle_id: str) -> str:
    """The region of a cycle id (`36.71-2028` -> `36.71`)."""
    return cycle_id.rsplit("-", 1)[0]


def require(actor: ActorRef, *roles: Role) -> None:
    if actor.role not in {r.value for r in roles}:
        raise ApiError(403, "Forbidden", f"the {actor.role} role may not do this")


def may_read(actor: ActorRef, region: str) -> bool:
    """Coordinators and DPRD read their own region; an auditor the regions its token names
    (or all); an admin its region, or all when its token names none."""
    if actor.role == Role.AUDITOR:
        return bool(actor.regions) and (
            ALL_REGIONS in (actor.regions or []) or region in (actor.regions or [])
        )
    return (
        actor.region is None
        if actor.role == Role.ADMIN and actor.region is None
        else (actor.region == region)
    )


def require_read(actor: ActorRef, region: str) -> None:
    if not may_read(actor, region):
        raise ApiError(403, "Forbidden", f"this token does not read region {region}")


def require_write(actor: ActorRef, region: str) -> None:
    """A write in `region`: only by a token of that region (or a deployment-wide admin)."""
    if actor.role == Role.ADMIN and actor.region is None:
        return
    if actor.region != region:
        raise ApiError(
            403, "Forbidden", f"this token belongs to {actor.region}, not to region {region}"
        )
