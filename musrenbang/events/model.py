"""What goes into the log and what comes out of it."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

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

    def content(self, log_id: str) -> str:
        """The event's canonical JSON text: the one source of truth stored in the log."""
        return canonical(
            {
                "actor": self.actor,
                "event_id": self.event_id,
                "idempotency_key": self.idempotency_key,
                "log_id": log_id,
                "metadata": self.metadata,
                "occurred_at": format_timestamp(self.occurred_at),
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


@dataclass(frozen=True)
class StoredEvent:
    """An event as the log holds it."""

    log_id: str
    seq: int
    event_id: str
    stream: str
    version: int
    type: str
    schema_version: int
    payload: JSON
    actor: JSON
    metadata: JSON
    occurred_at: datetime
    recorded_at: datetime
    idempotency_key: str
    prev_hash: bytes
    hash: bytes

    @classmethod
    def from_row(cls, row: Any) -> StoredEvent:
        """Builds from a row of (log_id, seq, content, version, recorded_at, prev_hash, hash)."""
        return cls.from_values(
            row.log_id, row.seq, row.content, row.version, row.recorded_at, row.prev_hash, row.hash
        )

    @classmethod
    def from_values(
        cls,
        log_id: str,
        seq: int,
        content_text: str,
        version: int,
        recorded_at: datetime,
        prev_hash: bytes,
        hash_: bytes,
    ) -> StoredEvent:
        content = json.loads(content_text)
        return cls(
            log_id=log_id,
            seq=seq,
            event_id=content["event_id"],
            stream=content["stream"],
            version=version,
            type=content["type"],
            schema_version=content["schema_version"],
            payload=content["payload"],
            actor=content["actor"],
            metadata=content["metadata"],
            occurred_at=parse_timestamp(content["occurred_at"]),
            recorded_at=recorded_at,
            idempotency_key=content["idempotency_key"],
            prev_hash=bytes(prev_hash),
            hash=bytes(hash_),
        )

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
