"""A closed forum's Berita Acara as a PDF, rendered from the log: the same bytes whose
SHA-256 its closing record holds."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response

from musrenbang.api.auth import CurrentActor, cycle_region, require_read
from musrenbang.api.deps import ConnDep
from musrenbang.api.errors import ApiError, not_found
from musrenbang.api.responses import error_responses, text_body
from musrenbang.documents import berita_acara
from musrenbang.domain.catalogue import forum_id
from musrenbang.events import queries

router = APIRouter(responses=error_responses(401, 422, 503))


@router.get(
    "/cycles/{cycle_id}/forums/{stage}/{unit}/berita-acara.pdf",
    response_class=Response,
    responses={
        **text_body("application/pdf", "the Berita Acara, as its closing record anchors it"),
        **error_responses(403, 404, 409),
    },
)
async def berita_acara_pdf(
    cycle_id: str,
    stage: str,
    unit: str,
    conn: ConnDep,
    actor: CurrentActor,
    kertas: Annotated[Literal["a4", "f4"], Query(description="paper: A4 or F4")] = "a4",
) -> Response:
    """A closed forum's Berita Acara: kop surat, nomor, the date in words, chair and
    attendance, the agreed usulan in priority order, those not agreed with their reasons,
    signature blocks, and the log checkpoint it anchors (with its QR code). The header
    X-Recorded-SHA256 is what the closing record holds; X-Content-SHA256 these bytes'."""
    require_read(actor, cycle_region(cycle_id))
    fid = forum_id(cycle_id, stage, unit)
    opened, closed = await queries.forum_records(conn, fid)
    if opened is None:
        raise not_found(f"forum {fid}")
    if closed is None:
        raise ApiError(409, "Conflict", f"the forum {fid} is not closed: no Berita Acara yet")
    found = await berita_acara.from_log(conn, fid)
    if found is None:
        raise not_found(f"forum {fid}")
    pdf = await asyncio.to_thread(berita_acara.render, found[0], kertas)
    recorded = ((closed["payload"].get("berita_acara_pdf") or {}).get(kertas) or {}).get("sha256")
    headers = {
        "Content-Disposition": f'inline; filename="berita-acara-{fid}-{kertas}.pdf"',
        "X-Content-SHA256": hashlib.sha256(pdf).hexdigest(),
    }
    if recorded:
        headers["X-Recorded-SHA256"] = recorded
    return Response(pdf, media_type="application/pdf", headers=headers)
