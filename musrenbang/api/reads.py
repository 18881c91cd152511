"""Reads for coordinators and auditors: straight from PostgreSQL, never through Temporal
(except the live view of a running forum or cycle)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response

from musrenbang.api.auth import CurrentActor, cycle_region, may_read, require_read
from musrenbang.api.deps import ConnDep
from musrenbang.api.errors import ApiError, not_found
from musrenbang.api.responses import (
    AuditVerification,
    CycleList,
    CycleView,
    EventsPage,
    Findings,
    ForumView,
    Funnel,
    History,
    OpenData,
    ProposalList,
    ProposalState,
    error_responses,
    text_body,
)
from musrenbang.documents import exports
from musrenbang.domain.catalogue import forum_id
from musrenbang.domain.regions import place_names, unit_name
from musrenbang.events import queries
from musrenbang.events.store import read_log
from musrenbang.events.verify import verify_all, verify_read_models, verify_tree

router = APIRouter(responses=error_responses(401, 422, 503))
IN_REGION = error_responses(403, 404)  # a region the token does not read; nothing there


async def _cycle_state(conn: Any, cycle_id: str) -> dict[str, Any]:
    state = await queries.cycle_state(conn, cycle_id)
    if state is None:
        raise not_found(f"cycle {cycle_id}")
    return state


async def _proposal_region(conn: Any, proposal_id: str, actor: Any) -> None:
    """An usulan outside the token's regions is, to that token, not there."""
    log_id = await queries.proposal_log(conn, proposal_id)  # from the log, not a read model
    if log_id is not None and not may_read(actor, log_id):
        raise not_found(f"usulan {proposal_id}")


@router.get("/cycles")
async def list_cycles(conn: ConnDep, actor: CurrentActor) -> CycleList:
    """The cycles of the regions this token reads, newest year first."""
    found = [c for c in await queries.cycles(conn) if may_read(actor, c["region"])]
    return CycleList.model_validate({"cycles": found})


@router.get("/cycles/{cycle_id}/proposals", responses=IN_REGION)
async def search_proposals(
    cycle_id: str,
    conn: ConnDep,
    actor: CurrentActor,
    kelurahan: Annotated[str | None, Query(pattern=r"^\d{2}\.\d{2}\.\d{2}(\.\d{4})?$")] = None,
    bidang: Annotated[str | None, Query(max_length=60)] = None,
    status: Annotated[str | None, Query(max_length=40)] = None,
    stage: Annotated[str | None, Query(max_length=60)] = None,
    q: Annotated[str | None, Query(min_length=2, max_length=200)] = None,
    after: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> ProposalList:
    """The cycle's usulan by kelurahan (or kecamatan), bidang, status, stage and words in
    their masalah or gagasan; a page at a time."""
    require_read(actor, cycle_region(cycle_id))
    state = await _cycle_state(conn, cycle_id)
    found = await queries.search_proposals(
        conn,
        cycle_id,
        kelurahan=kelurahan,
        bidang=bidang,
        status=status,
        stage=stage,
        words=q,
        after=after,
        limit=limit,
        names=state.get("names") or {},
    )
    last = found[-1]["proposal_id"] if len(found) == limit else None
    return ProposalList.model_validate(
        {"cycle_id": cycle_id, "proposals": found, "next_after": last}
    )


@router.get("/cycles/{cycle_id}", responses=IN_REGION, response_model_exclude_unset=True)
async def get_cycle(cycle_id: str, conn: ConnDep, actor: CurrentActor) -> CycleView:
    require_read(actor, cycle_region(cycle_id))
    state = await _cycle_state(conn, cycle_id)
    return CycleView.model_validate({**state, "forums": await queries.forum_counts(conn, cycle_id)})


@router.get(
    "/cycles/{cycle_id}/forums/{stage}/{unit}",
    responses=IN_REGION,
    response_model_exclude_unset=True,
)
async def get_forum(
    cycle_id: str, stage: str, unit: str, conn: ConnDep, actor: CurrentActor
) -> ForumView:
    require_read(actor, cycle_region(cycle_id))
    fid = forum_id(cycle_id, stage, unit)
    state = await queries.forum_state(conn, fid)
    if state is None:
        raise not_found(f"forum {fid}")
    names = await queries.cycle_names(conn, cycle_id) or {}
    held = await queries.held_proposals(conn, cycle_id, stage, unit, names)
    state.setdefault("unit_name", unit_name(unit, names))
    return ForumView.model_validate({**state, "proposals": held})


@router.get(
    "/proposals/{proposal_id}", responses=error_responses(404), response_model_exclude_unset=True
)
async def get_proposal(
    proposal_id: str,
    conn: ConnDep,
    actor: CurrentActor,
    as_of: Annotated[datetime | None, Query()] = None,
) -> ProposalState:
    """The usulan now, or as it stood at `as_of` (an ISO-8601 moment with a zone)."""
    if as_of is not None and as_of.tzinfo is None:
        raise ApiError(
            422, "ValidationError", "as_of needs a time zone, e.g. 2027-02-01T00:00:00+07:00"
        )
    await _proposal_region(conn, proposal_id, actor)
    state = await queries.proposal_state(conn, proposal_id, as_of)
    if state is None:
        raise not_found(f"usulan {proposal_id}" + (f" as of {as_of.isoformat()}" if as_of else ""))
    names = await queries.cycle_names(conn, str(state.get("cycle_id"))) or {}
    place = place_names(state.get("details") or {}, names)
    place["unit_name"] = unit_name(state.get("unit"), names)
    return ProposalState.model_validate({**state, "names": place})


@router.get(
    "/proposals/{proposal_id}/history",
    responses=error_responses(404),
    response_model_exclude_unset=True,
)
async def get_history(proposal_id: str, conn: ConnDep, actor: CurrentActor) -> History:
    await _proposal_region(conn, proposal_id, actor)
    found = await queries.history(conn, proposal_id)
    if found is None:
        raise not_found(f"usulan {proposal_id}")
    return History.model_validate(found)


@router.get("/events", responses=error_responses(403), response_model_exclude_unset=True)
async def get_events(
    conn: ConnDep,
    actor: CurrentActor,
    after: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    type: Annotated[list[str] | None, Query(max_length=20)] = None,  # noqa: A002 - the contract's name
    cycle: Annotated[str | None, Query(max_length=40)] = None,
    log: Annotated[str | None, Query(max_length=20)] = None,
) -> EventsPage:
    """The log as a cursor feed: pass the last `seq` you saw as `after`."""
    log_id = log or (cycle_region(cycle) if cycle else None)
    if log_id is None:
        logs = [name for name in await queries.log_ids(conn) if may_read(actor, name)]
        if len(logs) > 1:
            raise ApiError(
                422, "ValidationError", f"name a log (one of {', '.join(logs)}) or a cycle"
            )
        log_id = logs[0] if logs else ""
    if log_id:
        require_read(actor, log_id)
    events = await read_log(conn, log_id, after=after, limit=limit, types=type, cycle_id=cycle)
    return EventsPage.model_validate(
        {
            "log_id": log_id,
            "events": [e.as_json() for e in events],
            "next_after": events[-1].seq if events else after,
        }
    )


@router.get("/audit/verify")
async def audit_verify(conn: ConnDep, actor: CurrentActor) -> AuditVerification:
    """Verifies every log this token reads (all of them, for a token that reads all)."""
    readable = lambda log_id: may_read(actor, log_id)  # noqa: E731
    result = await verify_all(conn, only=readable)
    models = await verify_read_models(conn, only=readable) if result.ok else None
    tree = await verify_tree(conn, only=readable) if result.ok else None
    return AuditVerification(
        ok=result.ok and models is not None and models.ok and tree is not None and tree.ok,
        checked=result.checked,
        first_bad_seq=result.first_bad_seq,
        log_id=result.log_id,
        problem=result.problem
        or (models.problem if models else None)
        or (tree.problem if tree and not tree.ok else None),
        tree_checked=tree.checked if tree else 0,
        read_models_checked=models.checked if models else 0,
        first_bad_record=models.record if models else None,
    )


@router.get("/cycles/{cycle_id}/funnel", responses=IN_REGION)
async def get_funnel(cycle_id: str, conn: ConnDep, actor: CurrentActor) -> Funnel:
    require_read(actor, cycle_region(cycle_id))
    state = await _cycle_state(conn, cycle_id)
    stages = await queries.funnel(conn, cycle_id, state["stages"])
    return Funnel.model_validate({"cycle_id": cycle_id, "stages": stages})


@router.get("/cycles/{cycle_id}/findings", responses=IN_REGION)
async def get_findings(cycle_id: str, conn: ConnDep, actor: CurrentActor) -> Findings:
    require_read(actor, cycle_region(cycle_id))
    state = await _cycle_state(conn, cycle_id)
    stages = state["stages"]
    found = await queries.findings(conn, cycle_id, stages[0], stages)
    return Findings.model_validate({"cycle_id": cycle_id, **found})


async def _export_rows(
    conn: Any, cycle_id: str, stage: str | None = None, every_stage: bool = False
) -> tuple[dict[str, Any], list[tuple[str, list[dict[str, Any]]]]]:
    """The cycle's state and its export's sheets: the cycle's (or one stage's) rows, and
    with `every_stage` one sheet per stage after them."""
    state = await _cycle_state(conn, cycle_id)
    if stage is not None and stage not in state.get("stages", []):
        raise not_found(f"stage {stage} of cycle {cycle_id}")
    states = await queries.cycle_proposal_states(conn, cycle_id)
    events = await queries.cycle_proposal_events(conn, cycle_id)
    names = state.get("names") or {}
    sheets = [(stage or "Usulan", exports.records(states, events, names, stage))]
    if every_stage:
        sheets += [(s, exports.records(states, events, names, s)) for s in state["stages"]]
    return state, sheets


StageQuery = Annotated[str | None, Query(max_length=60, description="one stage's usulan only")]


@router.get(
    "/cycles/{cycle_id}/export.csv",
    response_class=Response,
    responses={
        **text_body(
            "text/csv",
            "every usulan of the cycle, one a row, with a header row: UTF-8 with a BOM,"
            " fields separated by `;` (as Excel reads them in an Indonesian locale)",
        ),
        **IN_REGION,
    },
)
async def export_csv(
    cycle_id: str, conn: ConnDep, actor: CurrentActor, stage: StageQuery = None
) -> Response:
    require_read(actor, cycle_region(cycle_id))
    _, [(_, rows)] = await _export_rows(conn, cycle_id, stage)
    suffix = f"-{stage}" if stage else ""
    return Response(
        exports.to_csv(rows),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="usulan-{cycle_id}{suffix}.csv"'},
    )


XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@router.get(
    "/cycles/{cycle_id}/export.xlsx",
    response_class=Response,
    responses={
        **text_body(XLSX, "a workbook: the cycle's usulan, then one sheet per stage"),
        **IN_REGION,
    },
)
async def export_xlsx(
    cycle_id: str, conn: ConnDep, actor: CurrentActor, stage: StageQuery = None
) -> Response:
    """Names beside codes, codes as text, original and revised values, rank and scores,
    OPD awal and akhir, sub-kegiatan with its name, who decided and when, pokir members."""
    require_read(actor, cycle_region(cycle_id))
    _, sheets = await _export_rows(conn, cycle_id, stage, every_stage=stage is None)
    suffix = f"-{stage}" if stage else ""
    return Response(
        exports.to_xlsx(sheets),
        media_type=XLSX,
        headers={"Content-Disposition": f'attachment; filename="usulan-{cycle_id}{suffix}.xlsx"'},
    )


@router.get("/cycles/{cycle_id}/export.json", responses=IN_REGION)
async def export_open_data(cycle_id: str, conn: ConnDep, actor: CurrentActor) -> OpenData:
    """The cycle's usulan as open data, in the schema of GET /schemas/open-data.json (no
    names of officials, no proposer's reference)."""
    require_read(actor, cycle_region(cycle_id))
    state, [(_, rows)] = await _export_rows(conn, cycle_id)
    return OpenData.model_validate(exports.open_data({**state, "cycle_id": cycle_id}, rows))


@router.get(
    "/schemas/open-data.json",
    response_class=Response,
    responses=text_body("application/schema+json", "JSON Schema 2020-12 of export.json"),
)
async def open_data_schema() -> JSONResponse:
    """The JSON Schema of the open-data export."""
    return JSONResponse(exports.OPEN_DATA_SCHEMA, media_type="application/schema+json")
