"""What goes into the log and what comes out of it."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

import orjson

from musrenbang.events.canonical import canonical, format_timestamp, parse_timestamp

JSON = dict[str, Any]

# Event ids derive from the idempotency key, so a retried append carries identical
# content and is recognised as the same event.
EVENT_ID_NAMESPACE = uuid.UUID("6f2b8d1e-3c4a-5b6d-8e9f-0a1b2c3d4e5f")
_NAMESPACE_BYTES = EVENT_ID_NAMESPACE.bytes


def event_id_for(key: str) -> str:
    """``str(uuid.uuid5(EVENT_ID_NAMESPACE, key))``, computed without the UUID object (it is
    on every event's append path; a test holds the two equal)."""
    digest = bytearray(
        hashlib.sha1(_NAMESPACE_BYTES + key.encode(), usedforsecurity=False).digest()[:16]
    )
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass(frozen=True)
class NewEvent:
    """An event to append. `actor` says who acted: a person (subject, role, jurisdiction)
    or the system (and the workflow that acted)."""

    stream: str
    type: str
    payload: JSON
    actor: JSON
    occurred_at: datetime
    idempotency_key: str
    metadata: JSON = field(default_factory=dict)
    schema_version: int = 1

    @property
    def event_id(self) -> str:
        return event_id_for(self.idempotency_key)

    @property
    def occurred(self) -> str:
        """`occurred_at` as the log writes it (in the content, and beside it to the
        database): formatted once, kept beside the fields (functools.cached_property
        takes a lock on every first use before Python 3.12)."""
        kept = self.__dict__.get("_occurred")
        if kept is None:
            kept = self.__dict__["_occurred"] = format_timestamp(self.occurred_at)
        return kept

    def content(self, log_id: str) -> str:
        """The event's canonical JSON text: the one source of truth stored in the log."""
        return canonical(
            {
                "actor": self.actor,
                "event_id": self.event_id,
                "idempotency_key": self.idempotency_key,
                "log_id": log_id,
                "metadata": self.metadata,
                "occurred_at": self.occurred,
                "payload": self.payload,
                "schema_version": self.schema_version,
                "stream": self.stream,
                "type": self.type,
            }
        ).decode()


@dataclass(frozen=True)
class Appended:
    """Where an event landed. `replayed` is true when the key had already been recorded."""

    seq: int
    hash: bytes
    version: int
    recorded_at: datetime
    replayed: bool


T = TypeVar("T")


def _as_json(value: Any) -> JSON:
    decoded: JSON = value
    return decoded


class _Decoded(Generic[T]):
    """A field of a stored event's content, read from the content decoded once (named by
    the attribute it is assigned to)."""

    def __init__(self, convert: Callable[[Any], T]) -> None:
        self.convert = convert
        self.key = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.key = name

    def __get__(self, event: StoredEvent, owner: type | None = None) -> T:
        return self.convert(event._fields()[self.key])


class StoredEvent:
    """An event as the log holds it.

    The row's own columns are there at once; what its content says (type, payload, actor
    and the rest) is decoded from the content text the first time one of them is asked
    for, once. A read of a whole history then costs little more than its query, and a
    caller that wants only positions and hashes never decodes at all."""

    __slots__ = (
        "_decoded",
        "content",
        "hash",
        "log_id",
        "prev_hash",
        "recorded_at",
        "seq",
        "version",
    )

    def __init__(
        self,
        log_id: str,
        seq: int,
        content: str,
        version: int,
        recorded_at: datetime,
        prev_hash: bytes,
        hash_: bytes,
    ) -> None:
        self.log_id = log_id
        self.seq = seq
        self.content = content
        self.version = version
        self.recorded_at = recorded_at
        self.prev_hash = prev_hash if type(prev_hash) is bytes else bytes(prev_hash)
        self.hash = hash_ if type(hash_) is bytes else bytes(hash_)
        self._decoded: JSON | None = None

    def _fields(self) -> JSON:
        decoded = self._decoded
        if decoded is None:
            decoded = self._decoded = orjson.loads(self.content)
        return decoded

    event_id: _Decoded[str] = _Decoded(str)
    stream: _Decoded[str] = _Decoded(str)
    type: _Decoded[str] = _Decoded(str)
    schema_version: _Decoded[int] = _Decoded(int)
    payload: _Decoded[JSON] = _Decoded(_as_json)
    actor: _Decoded[JSON] = _Decoded(_as_json)
    metadata: _Decoded[JSON] = _Decoded(_as_json)
    idempotency_key: _Decoded[str] = _Decoded(str)
    occurred_at: _Decoded[datetime] = _Decoded(parse_timestamp)

    def _row(self) -> tuple[Any, ...]:
        return (self.log_id, self.seq, self.content, self.version, self.recorded_at, self.hash)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StoredEvent) and self._row() == other._row()

    def __hash__(self) -> int:
        return hash((self.log_id, self.seq, self.hash))

    def __repr__(self) -> str:
        return f"StoredEvent(log_id={self.log_id!r}, seq={self.seq}, content={self.content!r})"

    def as_json(self) -> JSON:
        return {
            "log_id": self.log_id,
            "seq": self.seq,
            "event_id": self.event_id,
            "stream": self.stream,
            "version": self.version,
            "type": self.type,
            "schema_version": self.schema_version,
            "payload": self.payload,
            "actor": self.actor,
            "metadata": self.metadata,
            "occurred_at": format_timestamp(self.occurred_at),
            "recorded_at": format_timestamp(self.recorded_at),
            "prev_hash": self.prev_hash.hex(),
            "hash": self.hash.hex(),
        }
