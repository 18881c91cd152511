"""The transparency log over HTTP, for auditors and their witnesses: the latest signed
checkpoint of a log (the note itself), inclusion and consistency proofs, leaf hashes
for a mirror, and an usulan's evidence bundle. Everything here is checkable with the
log's verifier key and public formats (C2SP tlog-checkpoint, RFC 9162)."""

from __future__ import annotations

import base64
import re
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse, Response

from musrenbang.api.auth import CurrentActor, may_read, require_read
from musrenbang.api.deps import ConnDep
from musrenbang.api.errors import ApiError, not_found
from musrenbang.api.responses import (
    ConsistencyProof,
    EvidenceBundle,
    InclusionProof,
    LogList,
    LogSummary,
    error_responses,
    text_body,
)
from musrenbang.events import checkpoints, evidence, queries, tree
from musrenbang.events.db import driver_connection

router = APIRouter(responses=error_responses(401, 422, 503))
OF_LOG = error_responses(403, 404)  # a log of a region the token does not read; no such log

LOG_ID = re.compile(r"^\d{2}\.\d{2}$")
MAX_LEAVES = 1 << 16  # per request of leaf hashes (2 MiB)


async def _log(conn: Any, actor: Any, log_id: str) -> tuple[Any, int]:
    """The log's driver connection and size; 404 for a log not there or not readable."""
    if not LOG_ID.fullmatch(log_id):
        raise ApiError(422, "ValidationError", f"{log_id!r} is not a log id (a region, e.g. 36.71)")
    require_read(actor, log_id)
    driver = await driver_connection(conn)
    head = await tree.head_of(driver, log_id)
    if head is None:
        raise not_found(f"log {log_id}")
    return driver, head


async def _integrated(request: Request, log_id: str) -> None:
    """Stores what the log's tree lacks (on a connection that commits, so the work is
    done once); the worker's checkpoints have usually done it already, and then this
    finds nothing to do."""
    async with request.app.state.engine.begin() as own:
        await tree.integrate(await driver_connection(own), log_id)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@router.get("/logs")
async def list_logs(conn: ConnDep, actor: CurrentActor) -> LogList:
    """The logs this token reads: each one's size and its latest checkpoint's size."""
    return LogList(
        logs=[
            LogSummary(log_id=log_id, size=size, checkpoint_size=signed)
            for log_id, size, signed in await queries.log_sizes(conn)
            if may_read(actor, log_id)
        ]
    )


@router.get(
    "/logs/{log_id}/checkpoint",
    response_class=Response,  # not PlainTextResponse: the errors are JSON
    responses={**text_body("text/plain", "a C2SP signed note (tlog-checkpoint)"), **OF_LOG},
)
async def get_checkpoint(log_id: str, conn: ConnDep, actor: CurrentActor) -> PlainTextResponse:
    """The log's latest signed checkpoint: a C2SP signed note (text/plain)."""
    driver, _ = await _log(conn, actor, log_id)
    latest = await checkpoints.latest(driver, log_id)
    if latest is None:
        raise not_found(f"a signed checkpoint of log {log_id}")
    return PlainTextResponse(latest.note, media_type="text/plain; charset=utf-8")


@router.get("/logs/{log_id}/proofs/inclusion", responses=OF_LOG)
async def get_inclusion(
    log_id: str,
    request: Request,
    conn: ConnDep,
    actor: CurrentActor,
    seq: Annotated[int, Query(ge=1, le=2**62)],
    size: Annotated[int, Query(ge=1, le=2**62)],
) -> InclusionProof:
    """The RFC 9162 inclusion proof of event `seq` (leaf seq - 1) in the tree of `size`."""
    driver, head = await _log(conn, actor, log_id)
    if not seq <= size <= head:
        raise ApiError(422, "ValidationError", f"need 1 <= seq <= size <= {head} (the log's size)")
    await _integrated(request, log_id)
    proof = await tree.inclusion_proof(driver, log_id, seq, size)
    [leaf] = await tree.leaf_hashes(driver, log_id, seq - 1, seq)
    return InclusionProof(
        log_id=log_id,
        seq=seq,
        leaf_index=seq - 1,
        size=size,
        leaf_hash=_b64(leaf),
        root=_b64(await tree.root_at(driver, log_id, size)),
        proof=[_b64(p) for p in proof],
    )


@router.get("/logs/{log_id}/proofs/consistency", responses=OF_LOG)
async def get_consistency(
    log_id: str,
    request: Request,
    conn: ConnDep,
    actor: CurrentActor,
    from_: Annotated[int, Query(alias="from", ge=1, le=2**62)],
    to: Annotated[int, Query(ge=1, le=2**62)],
) -> ConsistencyProof:
    """The RFC 9162 consistency proof from the tree of `from` leaves to that of `to`."""
    driver, head = await _log(conn, actor, log_id)
    if not from_ <= to <= head:
        raise ApiError(422, "ValidationError", f"need 1 <= from <= to <= {head} (the log's size)")
    await _integrated(request, log_id)
    proof = await tree.consistency_proof(driver, log_id, from_, to)
    return ConsistencyProof.model_validate(
        {"log_id": log_id, "from": from_, "to": to, "proof": [_b64(p) for p in proof]}
    )


@router.get(
    "/logs/{log_id}/leaves",
    response_class=Response,
    responses={
        **text_body(
            "application/octet-stream", "32-byte leaf hashes back to back", format="binary"
        ),
        **OF_LOG,
    },
)
async def get_leaves(
    log_id: str,
    conn: ConnDep,
    actor: CurrentActor,
    start: Annotated[int, Query(ge=0, le=2**62)],
    end: Annotated[int, Query(ge=1, le=2**62)],
) -> Response:
    """The leaf hashes of indexes [start, end), 32 bytes each, back to back (for a
    witness's mirror); at most 65,536 a request."""
    driver, head = await _log(conn, actor, log_id)
    if not start < end <= head or end - start > MAX_LEAVES:
        raise ApiError(
            422,
            "ValidationError",
            f"need 0 <= start < end <= {head} (the log's size), at most {MAX_LEAVES} leaves",
        )
    leaves = await tree.leaf_hashes(driver, log_id, start, end)
    return Response(b"".join(leaves), media_type="application/octet-stream")


@router.get("/proposals/{proposal_id}/evidence", responses=error_responses(404, 409))
async def get_evidence(
    proposal_id: str, request: Request, conn: ConnDep, actor: CurrentActor
) -> EvidenceBundle:
    """The usulan's whole history (lineage included), each record with its leaf index and
    its inclusion proof against the log's latest signed checkpoint, and that checkpoint.
    Check it offline: `musrenbang audit verify-evidence FILE --key VKEY`."""
    log_id = await queries.proposal_log(conn, proposal_id)
    if log_id is None or not may_read(actor, log_id):
        raise not_found(f"usulan {proposal_id}")
    driver = await driver_connection(conn)
    latest = await checkpoints.latest(driver, log_id)
    if latest is None:
        raise ApiError(
            409, "Conflict", f"log {log_id} has no signed checkpoint yet; ask again after one"
        )
    try:
        await _integrated(request, log_id)
        bundle = await evidence.build_bundle(driver, proposal_id, latest.note, latest.size)
    except tree.TreeError as exc:
        raise ApiError(503, "Unavailable", f"the log's tree cannot answer yet: {exc}") from None
    if bundle is None:
        raise not_found(f"usulan {proposal_id}")
    return EvidenceBundle.model_validate(bundle)
