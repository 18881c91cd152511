"""Canonical encoding (RFC 8785 JSON) and the hash chain.

The hashed record of an event is ``{"event": content, "recorded_at": ..., "version": n}``,
canonical because ``content`` is canonical and its keys are in sorted order, and the leaf
hash is ``SHA-256(0x00 || prev_hash || be64(seq) || record)``. The database computes it on
append; :func:`leaf_hash` recomputes it independently for verification.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import rfc8785

from musrenbang.events.errors import InvalidEvent

GENESIS_HASH = bytes(32)
LEAF_PREFIX = b"\x00"


def canonical(value: Any) -> bytes:
    """RFC 8785 bytes of a JSON value."""
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise InvalidEvent(f"not canonicalizable as JSON: {exc}") from exc


def format_timestamp(moment: datetime) -> str:
    """The one textual form of a timestamp in the log: UTC, microseconds, 'Z'."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidEvent("timestamps in the audit record must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_timestamp(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def record_bytes(content: str, recorded_at: datetime, version: int) -> bytes:
    """The exact bytes hashed for an event (see the module docstring)."""
    return (
        '{"event":'
        + content
        + ',"recorded_at":"'
        + format_timestamp(recorded_at)
        + '","version":'
        + str(version)
        + "}"
    ).encode()


def leaf_hash(prev_hash: bytes, seq: int, record: bytes) -> bytes:
    return hashlib.sha256(LEAF_PREFIX + prev_hash + seq.to_bytes(8, "big") + record).digest()
