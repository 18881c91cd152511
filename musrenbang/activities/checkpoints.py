"""Activities that sign the log: `issue_checkpoint` (a local activity of a closing forum
and of the cycle at the RKPD's adoption) and `checkpoint_logs` (run on a Temporal
Schedule: every log that grew since its last checkpoint gets a new one)."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Any

import psycopg
from sqlalchemy import URL
from temporalio import activity

from musrenbang.domain.catalogue import log_stream
from musrenbang.events.append import EventWriter
from musrenbang.events.checkpoints import (
    CHECKPOINT_EVENT,
    TamperDetected,
    grew_since,
    latest,
    sign_head,
)
from musrenbang.events.db import conninfo
from musrenbang.events.model import NewEvent
from musrenbang.events.tlog import Signer
from musrenbang.events.tree import head_size, log_ids
from musrenbang.logging import get_logger
from musrenbang.workflows.contracts import CheckpointInput

log = get_logger(__name__)

_RECORDED = "SELECT payload FROM audit.events WHERE idempotency_key = %s"


class CheckpointActivities:
    """Holds the signer (its key read from a file or a secret setting, never from the
    database), the event writer that records each checkpoint, and one connection of its
    own (autocommit) for the tree and the checkpoints."""

    def __init__(self, url: URL, writer: EventWriter, signer: Signer) -> None:
        self._conninfo = conninfo(url)
        self.writer, self.signer = writer, signer
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._lock = asyncio.Lock()

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(
                self._conninfo, autocommit=True, options="-c timezone=UTC"
            )
        return self._conn

    async def aclose(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                await self._conn.close()
            self._conn = None

    async def issue(self, inp: CheckpointInput) -> dict[str, Any]:
        """Signs the log's head and records it (`CheckpointIssued`), once per key."""
        async with self._lock:
            try:
                return await self._issue(inp)
            except psycopg.OperationalError:
                await self.aclose()
                raise

    async def _issue(self, inp: CheckpointInput) -> dict[str, Any]:
        conn = await self._connection()
        row = await (await conn.execute(_RECORDED, (inp.key,))).fetchone()
        if row is not None:  # issued for this cause before: the same answer
            return {k: v for k, v in dict(row[0]).items() if k != "reason"}
        try:
            issued = await sign_head(conn, inp.log_id, self.signer)
        except TamperDetected as exc:
            log.error("checkpoint.refused", log_id=inp.log_id, error=str(exc))
            return {"refused": str(exc)}
        summary = issued.summary()
        event = NewEvent(
            stream=log_stream(inp.log_id),
            type=CHECKPOINT_EVENT,
            payload={**summary, "reason": inp.reason},
            actor={"system": True, "role": "system", "workflow": activity.info().workflow_id},
            occurred_at=datetime.fromisoformat(inp.occurred_at),
            idempotency_key=inp.key,
            metadata={},
        )
        await self.writer.append(inp.log_id, [event])
        log.info("checkpoint.issued", log_id=inp.log_id, size=issued.size, reason=inp.reason)
        return summary

    @activity.defn(name="issue_checkpoint")
    async def issue_checkpoint(self, inp: CheckpointInput) -> dict[str, Any]:
        return await self.issue(inp)

    @activity.defn(name="checkpoint_logs")
    async def checkpoint_logs(self) -> dict[str, int]:
        """A checkpoint of every log that grew since its last one; their sizes."""
        async with self._lock:
            conn = await self._connection()
            logs = await log_ids(conn)
            due = []
            for log_id in logs:
                last = await latest(conn, log_id)
                if last is None or await grew_since(conn, log_id, last.size):
                    due.append(log_id)
        sizes = {}
        now = datetime.now(UTC).isoformat()
        for log_id in due:
            async with self._lock:
                conn = await self._connection()
                size = await head_size(conn, log_id)
            key = f"checkpoint:{log_id}:{size}"
            result = await self.issue(CheckpointInput(log_id, key, "schedule", now))
            sizes[log_id] = int(result.get("size", -1))
        return sizes
