"""Canonical encoding (RFC 8785 JSON) and the hash chain.

The hashed record of an event is ``{"event": content, "recorded_at": ..., "version": n}``,
canonical because ``content`` is canonical and its keys are in sorted order, and the leaf
hash is ``SHA-256(0x00 || prev_hash || be64(seq) || record)``. :func:`record_bytes` and
:func:`leaf_hash` are that rule in Python. The database applies it when it appends
(``audit.append``, migration 0002, under the log's head lock), and verification recomputes
every hash in Python from the stored columns, so the two are held to each other on every
walk of the log.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import rfc8785

from musrenbang.events.errors import InvalidEvent

GENESIS_HASH = bytes(32)
LEAF_PREFIX = b"\x00"


MAX_SAFE_INTEGER = 2**53 - 1


def canonical(value: Any) -> bytes:
    """RFC 8785 bytes of a JSON value.

    Events hold strings, integers, booleans, nulls, lists and objects with plain keys; for
    those, RFC 8785 is exactly `json.dumps` with sorted keys, no whitespace and UTF-8 output,
    which is several times faster than the general `rfc8785` encoder. Anything else (a
    float, a key outside the Basic Multilingual Plane, whose UTF-16 order differs from code
    point order) goes to `rfc8785`. A test holds the two equal on generated values.
    """
    try:
        if _plain(value):
            return json.dumps(
                value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
            ).encode()
        return bytes(rfc8785.dumps(value))
    except (rfc8785.CanonicalizationError, TypeError, ValueError, UnicodeEncodeError) as exc:
        raise InvalidEvent(f"not canonicalizable as JSON: {exc}") from exc


def _plain(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str) or item is None or isinstance(item, bool):
            continue
        if isinstance(item, int):
            if not -MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER:
                raise ValueError(f"integer {item} is outside the I-JSON range")
            continue
        if isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    raise TypeError(f"object key {key!r} is not a string")
                if not key.isascii() and max(key) > "\ud7ff":
                    return False
                stack.append(child)
            continue
        if isinstance(item, list | tuple):
            stack.extend(item)
            continue
        return False  # floats and anything else: the general encoder decides
    return True


def format_timestamp(moment: datetime) -> str:
    """The one textual form of a timestamp in the log: UTC, microseconds, 'Z'."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidEvent("timestamps in the audit record must be timezone-aware")
    m = moment.astimezone(UTC)
    return (
        f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}"
        f".{m.microsecond:06d}Z"
    )


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
