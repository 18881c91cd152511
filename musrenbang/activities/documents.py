"""The Berita Acara's digest, asked by a closing forum (a local activity): the forum's
document is rendered from the log as it stands before the closing record, and the
closing record carries its SHA-256. A document that cannot be rendered never stops the
forum from closing: the record then says why."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity

from musrenbang.documents import berita_acara
from musrenbang.events import queries
from musrenbang.logging import get_logger
from musrenbang.workflows.contracts import DocumentInput

log = get_logger(__name__)


class DocumentActivities:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @activity.defn(name="berita_acara_digest")
    async def berita_acara_digest(self, inp: DocumentInput) -> dict[str, Any]:
        try:
            async with self.engine.connect() as conn:
                # Everything before the closing record: if an attempt of this close was
                # already appended (a worker died after it), what came before it.
                _, closed = await queries.forum_records(conn, inp.forum_id)
                through = (
                    int(closed["seq"]) - 1
                    if closed is not None
                    else await queries.log_head_seq(conn, inp.log_id)
                )
                found = await berita_acara.from_log(conn, inp.forum_id, inp.closing, through)
            if found is None:
                return {"error": f"the log holds no opening of {inp.forum_id}"}
            doc, last_read = found
            digest = await asyncio.to_thread(berita_acara.digest, doc)
            # the last seq it read: the same for every attempt of this close
            return {**digest, "through_seq": last_read}
        except Exception as exc:
            log.error("berita_acara.failed", forum_id=inp.forum_id, error=str(exc)[:300])
            return {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
