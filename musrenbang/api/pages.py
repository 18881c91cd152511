"""The pages people use, served by the same app: a coordinator's console, the auditor's
pages and the public lookup of an usulan. Server-rendered (Jinja2), htmx for the filters,
Bahasa Indonesia first. Sign-in fits the token model: a token is pasted (development) or
comes from the organisation's identity provider (production, the configured JWKS), and is
kept in an HttpOnly cookie; every page applies the API's jurisdiction rules."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from lokal import format_rupiah
from pydantic import ValidationError

from musrenbang.api.auth import PAGE_COOKIE as COOKIE
from musrenbang.api.auth import actor_of, cycle_region, may_read
from musrenbang.api.commands import remember_contacts, run_update
from musrenbang.api.deps import ConnDep, TemporalDep
from musrenbang.api.errors import ApiError, page_error
from musrenbang.api.public import trace_of
from musrenbang.api.schemas import BeritaAcaraBody, DecisionBody, Draft
from musrenbang.domain.access import Actor, Role, may_decide, may_extend
from musrenbang.domain.catalogue import forum_id, forum_workflow_id
from musrenbang.domain.decisions import Kind, allowed_kinds
from musrenbang.domain.regions import unit_name
from musrenbang.domain.stages import Level, Stage, defined
from musrenbang.domain.text import first_bad_text
from musrenbang.domain.trace import normalize_receipt
from musrenbang.events import queries
from musrenbang.events.checkpoints import latest
from musrenbang.events.db import driver_connection
from musrenbang.events.verify import verify_all
from musrenbang.workflows.contracts import (
    ActorRef,
    CloseRequest,
    DecideRequest,
    ExtendRequest,
    SubmitRequest,
)
from musrenbang.workflows.forum import ForumWorkflow

HERE = Path(__file__).parent
WIB = timezone(timedelta(hours=7), "WIB")
router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=HERE / "templates")
KIND_NAMES = {
    Kind.ACCEPT: "Terima",
    Kind.REVISE: "Terima dengan perubahan",
    Kind.REJECT: "Tolak",
    Kind.DEFER: "Tunda",
    Kind.MERGE: "Gabung",
    Kind.PRIORITIZE: "Peringkat",
    Kind.ASSIGN: "Tetapkan OPD",
    Kind.INCLUDE: "Masukkan RKPD",
    Kind.NOT_ACCOMMODATED: "Tidak diakomodasi",
}
# What a page form decides without more fields (merge, revise, prioritize and assign need
# fields of their own: the API takes them).
FORM_KINDS = (Kind.ACCEPT, Kind.REJECT, Kind.DEFER, Kind.INCLUDE, Kind.NOT_ACCOMMODATED)
FINDINGS = {
    "without_ancestor": "usulan tanpa asal",
    "rkpd_untraced": "isi RKPD yang tidak terlacak ke usulan",
    "stranded": "usulan yang tertahan",
    "submitted_after_escalation": "usulan diajukan setelah eskalasi",
    "duplicates": "usulan ganda",
}
STATUSES = ("submitted", "accepted", "rejected", "deferred", "merged", "forwarded", "included")


def static_files() -> StaticFiles:
    return StaticFiles(directory=HERE / "static")


def _rupiah(amount: Any) -> str:
    return str(format_rupiah(amount)) if isinstance(amount, int) else ""


def _when(moment: Any) -> str:
    if not moment:
        return ""
    try:
        return datetime.fromisoformat(str(moment)).astimezone(WIB).strftime("%d-%m-%Y %H:%M WIB")
    except ValueError:
        return str(moment)


templates.env.globals.update(rupiah=_rupiah)


async def _actor(request: Request) -> ActorRef | None:
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    try:
        return await actor_of(request, token)
    except ApiError:
        return None  # expired or revoked: the person signs in again


def _page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, name, context, status_code=status)


async def _signed_in(request: Request) -> ActorRef:
    actor = await _actor(request)
    if actor is None:
        raise ApiError(401, "Unauthorized", "masuk dahulu dengan token Anda (halaman Masuk)")
    return actor


async def _posted(request: Request) -> tuple[ActorRef, Any]:
    """A form posted by a signed-in person from these pages: who, and the form."""
    _same_origin(request)
    return await _signed_in(request), await request.form()


def _same_origin(request: Request) -> None:
    """A form posted from another site is refused (the cookie is SameSite=Strict too)."""
    origin = request.headers.get("origin")
    if origin is not None and origin.split("://", 1)[-1] != request.url.netloc:
        raise ApiError(403, "Forbidden", "formulir dari situs lain ditolak")


@router.get("/", response_class=HTMLResponse)
async def home(request: Request) -> HTMLResponse:
    return _page(request, "home.html", actor=await _actor(request))


@router.get("/lacak", response_model=None)
async def lacak_form(request: Request, kode: str = "") -> Response:
    receipt = normalize_receipt(kode)
    if receipt is None:
        return page_error(422, "Nomor usulan terdiri atas 12 huruf dan angka, mis. 7K3Q-9XPA-M2TD.")
    return RedirectResponse(f"/lacak/{receipt}", status_code=303)


@router.get("/lacak/{kode}", response_class=HTMLResponse)
async def lacak(request: Request, kode: str, conn: ConnDep) -> HTMLResponse:
    """Anyone, with no account: an usulan's path and the reason of every "no"."""
    trace = await trace_of(conn, kode)
    return _page(request, "lacak.html", trace=trace, actor=await _actor(request))


@router.get("/masuk", response_class=HTMLResponse)
async def masuk_form(request: Request) -> HTMLResponse:
    return _page(request, "masuk.html", actor=await _actor(request))


@router.post("/masuk", response_model=None)
async def masuk(request: Request, token: Annotated[str, Form(max_length=8000)]) -> Response:
    _same_origin(request)
    actor = await actor_of(request, token.strip())  # refused: a readable 401 page
    response = RedirectResponse("/audit" if actor.role == Role.AUDITOR else "/konsol", 303)
    production = request.app.state.settings.environment == "production"
    response.set_cookie(
        COOKIE, token.strip(), httponly=True, samesite="strict", secure=production, max_age=86400
    )
    return response


@router.post("/keluar", response_model=None)
async def keluar(request: Request) -> Response:
    response = RedirectResponse("/", 303)
    response.delete_cookie(COOKIE)
    return response


def _stages(state: dict[str, Any]) -> dict[str, Stage]:
    return {s.slug: s for s in defined(state.get("stages", []), state.get("stage_defs") or [])}


def _may_see(actor: ActorRef, row: Any, level: Level, city: str) -> bool:
    """The forums a coordinator's console lists: its own, those escalated to it, every
    Forum PD for Bappeda, everything for an admin."""
    who = Actor(actor.subject, actor.role, actor.jurisdiction, region=actor.region)
    escalated = row.state.get("escalated_to")
    return may_decide(who, level, row.unit, city, escalated) or (
        actor.jurisdiction == city and actor.role == Role.COORDINATOR
    )


@router.get("/konsol", response_class=HTMLResponse)
async def konsol(request: Request, conn: ConnDep) -> HTMLResponse:
    actor = await _signed_in(request)
    shown = []
    for cycle in await queries.cycles(conn):
        if not may_read(actor, cycle["region"]) or (
            actor.region is not None and cycle["region"] != actor.region
        ):
            continue
        state = await queries.cycle_state(conn, cycle["cycle_id"]) or {}
        names, stages = state.get("names") or {}, _stages(state)
        forums = []
        for row in await queries.cycle_forums(conn, cycle["cycle_id"], None, None):
            if not _may_see(actor, row, stages[row.stage].level, cycle["region"]):
                continue
            forums.append(
                {
                    "stage": row.stage,
                    "unit": row.unit,
                    "unit_name": unit_name(row.unit, names),
                    "status": row.status,
                    "deadline_text": _when(row.state.get("deadline")),
                    "deadline": str(row.state.get("deadline") or ""),
                    "escalated_to": row.state.get("escalated_to"),
                    "escalated_to_name": unit_name(row.state.get("escalated_to"), names),
                }
            )
        order = {"overdue": 0, "open": 1, "closed": 2}
        forums.sort(key=lambda f: (order.get(str(f["status"]), 3), str(f["deadline"])))
        shown.append({**cycle, "forums": forums})
    return _page(request, "konsol.html", cycles=shown, actor=actor)


async def _forum_context(
    request: Request, conn: Any, actor: ActorRef, cycle_id: str, stage: str, unit: str
) -> dict[str, Any]:
    if not may_read(actor, cycle_region(cycle_id)):
        raise ApiError(403, "Forbidden", f"token ini tidak membaca daerah {cycle_region(cycle_id)}")
    state = await queries.cycle_state(conn, cycle_id)
    forum = await queries.forum_state(conn, forum_id(cycle_id, stage, unit))
    if state is None or forum is None:
        raise ApiError(404, "NotFound", f"forum {stage} {unit} di siklus {cycle_id} tidak ada")
    names = state.get("names") or {}
    stages: list[str] = state.get("stages", [])
    this = _stages(state)[stage]
    level, final, city = this.level, stage == stages[-1], cycle_region(cycle_id)
    who = Actor(actor.subject, actor.role, actor.jurisdiction, region=actor.region)
    open_ = forum["status"] != "closed"
    bappeda = this.chaired_by == "Bappeda"
    can_act = open_ and may_decide(who, level, unit, city, forum.get("escalated_to"), bappeda)
    filters = {k: request.query_params.get(k) for k in ("status", "bidang", "q")}
    held = await queries.search_proposals(
        conn,
        cycle_id,
        stage=stage,
        unit=unit,
        bidang=filters["bidang"] or None,
        status=filters["status"] or None,
        words=filters["q"] if filters["q"] and len(filters["q"]) >= 2 else None,
        limit=5000,
        names=names,
    )
    profile = state.get("profile") or {}
    return {
        "actor": actor,
        "cycle_id": cycle_id,
        "forum": {**forum, "unit_name": forum.get("unit_name") or unit_name(unit, names)},
        "stage_name": this.name,
        "deadline_text": _when(forum.get("deadline")),
        "proposals": held,
        "filters": filters,
        "statuses": STATUSES,
        "kinds": [k for k in FORM_KINDS if k in allowed_kinds(level, final)],
        "kind_names": KIND_NAMES,
        "reason_codes": profile.get("reason_codes") or [],
        "bidang": sorted({b for o in profile.get("opds", []) for b in o.get("bidang", [])}),
        "can_act": can_act,
        "can_extend": open_ and may_extend(who, level, unit, city),
        "intake": stage == stages[0],
        "final": final,
        "path": f"/konsol/{cycle_id}/{stage}/{unit}",
    }


@router.get("/konsol/{cycle_id}/{stage}/{unit}", response_class=HTMLResponse)
async def forum_page(
    request: Request, cycle_id: str, stage: str, unit: str, conn: ConnDep
) -> HTMLResponse:
    actor = await _signed_in(request)
    context = await _forum_context(request, conn, actor, cycle_id, stage, unit)
    return _page(request, "forum.html", message=request.query_params.get("pesan"), **context)


async def _command(
    request: Request,
    client: Any,
    cycle_id: str,
    stage: str,
    unit: str,
    update: Any,
    req: Any,
    kontak: str | None = None,
) -> Response:
    handle = client.get_workflow_handle(forum_workflow_id(cycle_id, stage, unit))

    async def missing() -> ApiError:
        return ApiError(409, "Conflict", "forum ini sudah ditutup atau belum dibuka")

    # a refusal is answered by errors.install, as a page: the rule's sentence
    answer = await run_update(handle, update, req, str(uuid.uuid4()), missing)
    if kontak:
        await remember_contacts(request.app.state.engine, answer["proposal_ids"], [kontak])
    done = "Tersimpan."
    return RedirectResponse(f"/konsol/{cycle_id}/{stage}/{unit}?pesan={done}", status_code=303)


def _checked(model: Any, data: dict[str, Any]) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise ApiError(422, "ValidationError", f"{where}: {first.get('msg')}") from None


@router.post("/konsol/{cycle_id}/{stage}/{unit}/usulan", response_model=None)
async def submit_page(
    request: Request, cycle_id: str, stage: str, unit: str, client: TemporalDep
) -> Response:
    actor, form = await _posted(request)
    data: dict[str, Any] = {k: str(v).strip() for k, v in form.items() if str(v).strip()}
    bad = first_bad_text(data)  # as a JSON body is checked: nothing the log cannot hold
    if bad:
        raise ApiError(422, "ValidationError", f"{bad[0]} {bad[1]}")
    try:  # Rupiah as people write them (150.000.000), a volume with a decimal comma
        data["cost"] = int(str(data.get("cost", "")).replace(".", ""))
        data["volume"] = float(str(data.get("volume", "")).replace(",", "."))
    except ValueError:
        raise ApiError(422, "ValidationError", "biaya dan volume harus berupa angka") from None
    draft = _checked(Draft, data)
    req = SubmitRequest(actor, [draft.model_dump(exclude={"kontak"})])
    return await _command(
        request, client, cycle_id, stage, unit, ForumWorkflow.submit, req, draft.kontak
    )


@router.post("/konsol/{cycle_id}/{stage}/{unit}/keputusan", response_model=None)
async def decide_page(
    request: Request, cycle_id: str, stage: str, unit: str, client: TemporalDep
) -> Response:
    actor, form = await _posted(request)
    decisions = []
    for key, value in form.items():
        if not key.startswith("kind:") or not str(value):
            continue
        pid = key.removeprefix("kind:")
        item: dict[str, Any] = {"proposal_id": pid, "kind": str(value)}
        reason, code = (
            str(form.get(f"reason:{pid}") or "").strip(),
            str(form.get(f"code:{pid}") or ""),
        )
        if reason:
            item["reason"] = reason
        if code:
            item["reason_code"] = code
        decisions.append(_checked(DecisionBody, item).model_dump())
    if not decisions:
        raise ApiError(422, "Refused", "pilih keputusan untuk sedikitnya satu usulan")
    req = DecideRequest(actor, decisions)
    return await _command(request, client, cycle_id, stage, unit, ForumWorkflow.decide, req)


@router.post("/konsol/{cycle_id}/{stage}/{unit}/tutup", response_model=None)
async def close_page(
    request: Request, cycle_id: str, stage: str, unit: str, client: TemporalDep
) -> Response:
    actor, form = await _posted(request)
    try:
        peserta = int(str(form.get("peserta") or ""))
    except ValueError:
        raise ApiError(422, "ValidationError", "peserta harus berupa angka") from None
    # one signer a line (a name may carry titles with commas: "Budi, S.Kom.")
    signers = [s.strip() for s in str(form.get("penandatangan") or "").splitlines() if s.strip()]
    body = _checked(
        BeritaAcaraBody,
        {
            "tanggal": str(form.get("tanggal") or ""),
            "tempat": str(form.get("tempat") or ""),
            "peserta": peserta,
            "penandatangan": signers,
            **({"perkada": str(form["perkada"])} if form.get("perkada") else {}),
        },
    )
    req = CloseRequest(actor, body.request())
    return await _command(request, client, cycle_id, stage, unit, ForumWorkflow.close, req)


@router.post("/konsol/{cycle_id}/{stage}/{unit}/tenggat", response_model=None)
async def extend_page(
    request: Request, cycle_id: str, stage: str, unit: str, client: TemporalDep
) -> Response:
    actor, form = await _posted(request)
    try:
        moment = datetime.fromisoformat(str(form.get("new_deadline") or "")).replace(tzinfo=WIB)
    except ValueError:
        raise ApiError(
            422, "ValidationError", "tenggat baru harus berupa tanggal dan jam"
        ) from None
    req = ExtendRequest(actor, moment.isoformat(), str(form.get("reason") or "").strip())
    return await _command(request, client, cycle_id, stage, unit, ForumWorkflow.extend, req)


@router.get("/audit", response_class=HTMLResponse)
async def audit_home(request: Request, conn: ConnDep) -> HTMLResponse:
    actor = await _signed_in(request)
    readable = [c for c in await queries.cycles(conn) if may_read(actor, c["region"])]
    result = await verify_all(conn, only=lambda log_id: may_read(actor, log_id))
    return _page(request, "audit.html", cycles=readable, verify=result, actor=actor)


@router.get("/audit/usulan/{proposal_id}", response_class=HTMLResponse)
async def audit_usulan(request: Request, proposal_id: str, conn: ConnDep) -> HTMLResponse:
    actor = await _signed_in(request)
    events = await queries.proposal_events(conn, proposal_id)
    if not events or not may_read(actor, events[0]["log_id"]):
        raise ApiError(404, "NotFound", "usulan itu tidak ada (atau bukan di daerah Anda)")
    state = await queries.proposal_state(conn, proposal_id) or {}
    shown = []
    for e in events:
        who = e["actor"] or {}
        by = "sistem" if who.get("system") else f"{who.get('subject')} ({who.get('role')})"
        shown.append({**e, "at": _when(e["at"].isoformat()), "by": by})
    lineage = [
        {
            "id": other,
            "receipt": (await queries.proposal_state(conn, other) or {}).get("receipt"),
            "how": how,
        }
        for other, how in [(state.get("merged_into"), "digabung ke")]
        + [(m, "menyerap") for m in state.get("merged_from", [])]
        if other
    ]
    driver = await driver_connection(conn)
    found = await latest(driver, events[0]["log_id"])
    last_seq = max(e["seq"] for e in events)
    return _page(
        request,
        "audit_usulan.html",
        actor=actor,
        state=state,
        receipt=state.get("receipt"),
        events=shown,
        lineage=lineage,
        checkpoint={"log_id": events[0]["log_id"], "size": found.size} if found else None,
        covered=bool(found and found.size >= last_seq),
        last_seq=last_seq,
    )


@router.get("/audit/{cycle_id}", response_class=HTMLResponse)
async def audit_cycle(request: Request, cycle_id: str, conn: ConnDep) -> HTMLResponse:
    actor = await _signed_in(request)
    if not may_read(actor, cycle_region(cycle_id)):
        raise ApiError(403, "Forbidden", f"token ini tidak membaca daerah {cycle_region(cycle_id)}")
    state = await queries.cycle_state(conn, cycle_id)
    if state is None:
        raise ApiError(404, "NotFound", f"siklus {cycle_id} tidak ada")
    funnel = await queries.funnel(conn, cycle_id, state["stages"])
    findings = await queries.findings(conn, cycle_id, state["stages"][0], state["stages"])
    q = request.query_params.get("q")
    found = (
        await queries.search_proposals(
            conn, cycle_id, words=q, limit=100, names=state.get("names") or {}
        )
        if q and len(q) >= 2
        else None
    )
    items = [f"{FINDINGS.get(k, k)}: {len(v)}" for k, v in findings.items() if k != "ok" and v]
    most = max((s.get("entered", 0) for s in funnel), default=0)
    return _page(
        request,
        "audit_cycle.html",
        actor=actor,
        cycle=state,
        cycle_id=cycle_id,
        funnel=[
            {"stage": s["stage"], "entered": s["entered"], "onward": s["forwarded"]} for s in funnel
        ],
        most=most,
        findings={"ok": findings.get("ok"), "items": items},
        q=q,
        found=found,
    )
