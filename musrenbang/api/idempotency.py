"""Idempotency-Key as the HTTP draft specifies (draft-ietf-httpapi-idempotency-key-header;
Stripe's keys behave the same): a key is bound to the caller, the endpoint and a
fingerprint of the body (SHA-256 of its RFC 8785 canonical JSON). The same key with the
same request gets the first answer, also after its forum has closed; the same key with
another body or endpoint is refused with 422 and writes nothing. Keys and answers are
kept in `api.idempotency_*` (events/idempotency.py), insert-only, for as long as the
database."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import rfc8785
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncEngine

from musrenbang.api.errors import ApiError
from musrenbang.events.idempotency import bind_key, record_answer


def fingerprint(body: BaseModel | None) -> str:
    data = body.model_dump(mode="json") if body is not None else None
    try:
        return hashlib.sha256(rfc8785.dumps(data)).hexdigest()
    except rfc8785.CanonicalizationError as exc:  # e.g. an integer beyond 2^53
        raise ApiError(
            422, "ValidationError", f"the body holds a value JSON cannot carry: {exc}"
        ) from None


@dataclass(frozen=True)
class Claim:
    """A request's hold on its key, once bound."""

    subject: str
    key: str
    answer: dict[str, Any] | None  # the first answer, when the same request had one

    async def remember(self, engine: AsyncEngine, answer: dict[str, Any]) -> None:
        async with engine.begin() as conn:
            await record_answer(conn, self.subject, self.key, answer)


async def claim(
    engine: AsyncEngine, subject: str, key: str, endpoint: str, body: BaseModel | None
) -> Claim:
    """Binds `key` to this request, or finds it bound: to this same request (its first
    answer, if it has one, comes back) or to another (refused)."""
    print_ = fingerprint(body)
    async with engine.begin() as conn:
        row = await bind_key(conn, subject, key, endpoint, print_)
    if row.endpoint != endpoint:
        raise ApiError(
            422,
            "IdempotencyKeyReused",
            f"the Idempotency-Key {key!r} was used for another request ({row.endpoint});"
            " use a new key for a new request",
        )
    if row.fingerprint != print_:
        raise ApiError(
            422,
            "IdempotencyKeyReused",
            f"the Idempotency-Key {key!r} was used with another body at this endpoint;"
            " use a new key for a new request",
        )
    return Claim(subject, key, row.answer)
