"""The OpenAPI document describes the answers the API really gives: every operation names
the model of its body (or the media type of a body that is not JSON) and the errors it
can answer, all in the one `{"error", "detail"}` shape; real bodies validate against it."""

from __future__ import annotations

import re
from typing import Any

import httpx
from jsonschema import Draft202012Validator

from musrenbang.api.app import create_app
from musrenbang.api.responses import ErrorBody
from musrenbang.config import Settings
from tests.api.test_api import KEL, REGION, open_cycle, usulan, wait_forum

V1 = "/api/v1"
CYCLE = f"{V1}/cycles/{{cycle_id}}"
FORUM = f"{CYCLE}/forums/{{stage}}/{{unit}}"
READ = {401, 403, 404, 422, 503}  # a read in a region: its token, its region, its thing
COMMAND = {400, 401, 403, 404, 409, 422, 503}

# (method, path) -> the body of its success (a model, or a media type) and its errors.
OPERATIONS: dict[tuple[str, str], tuple[str, set[int]]] = {
    ("get", f"{V1}/health"): ("HealthReport", {422, 503}),
    ("post", f"{V1}/cycles"): ("CycleCreated", COMMAND - {404}),
    ("post", f"{CYCLE}/pokir"): ("CommandAnswer", COMMAND),
    ("post", f"{FORUM}/proposals"): ("CommandAnswer", COMMAND),
    ("post", f"{FORUM}/decisions"): ("CommandAnswer", COMMAND),
    ("post", f"{FORUM}/close"): ("CommandAnswer", COMMAND),
    ("post", f"{FORUM}/deadline"): ("CommandAnswer", COMMAND),
    ("get", CYCLE): ("CycleView", READ),
    ("get", FORUM): ("ForumView", READ),
    ("get", f"{CYCLE}/forums"): ("ForumList", READ),
    ("get", f"{CYCLE}/funnel"): ("Funnel", READ),
    ("get", f"{CYCLE}/findings"): ("Findings", READ),
    ("get", f"{CYCLE}/export.csv"): ("text/csv", READ),
    ("get", f"{CYCLE}/export.xlsx"): (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        READ,
    ),
    ("get", f"{CYCLE}/export.json"): ("OpenData", READ),
    ("get", f"{V1}/schemas/open-data.json"): ("application/schema+json", {422}),
    ("get", f"{V1}/cycles"): ("CycleList", {401, 422, 503}),
    ("get", f"{CYCLE}/proposals"): ("ProposalList", READ),
    ("get", f"{FORUM}/berita-acara.pdf"): ("application/pdf", READ | {409}),
    ("get", f"{V1}/lacak/{{code}}"): ("PublicTrace", {404, 422, 503}),
    ("delete", f"{V1}/proposals/{{proposal_id}}/kontak"): ("", {401, 403, 404, 422}),
    ("get", f"{V1}/proposals/{{proposal_id}}"): ("ProposalState", READ - {403}),
    ("get", f"{V1}/proposals/{{proposal_id}}/history"): ("History", READ - {403}),
    ("get", f"{V1}/proposals/{{proposal_id}}/evidence"): ("EvidenceBundle", READ - {403} | {409}),
    ("get", f"{V1}/events"): ("EventsPage", READ - {404}),
    ("get", f"{V1}/audit/verify"): ("AuditVerification", {401, 422, 503}),
    ("get", f"{V1}/logs"): ("LogList", {401, 422, 503}),
    ("get", f"{V1}/logs/{{log_id}}/checkpoint"): ("text/plain", READ),
    ("get", f"{V1}/logs/{{log_id}}/proofs/inclusion"): ("InclusionProof", READ),
    ("get", f"{V1}/logs/{{log_id}}/proofs/consistency"): ("ConsistencyProof", READ),
    ("get", f"{V1}/logs/{{log_id}}/leaves"): ("application/octet-stream", READ),
    ("get", f"{V1}/profiles/{{region}}"): ("RegionProfile", READ | {409}),
    ("get", f"{V1}/nomenclature"): ("CatalogueList", {401, 422, 503}),
}
ERROR_REF = "#/components/schemas/ErrorBody"


async def _document(settings: Settings) -> dict[str, Any]:
    app = create_app(settings, engine=None, temporal=None)  # the document needs neither
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        res = await client.get("/openapi.json")
    assert res.status_code == 200
    doc: dict[str, Any] = res.json()
    return doc


def _validator(doc: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    """Validates against `schema`, whose $refs point into the document's components."""
    return Draft202012Validator({**schema, "components": doc["components"]})


def _success(doc: dict[str, Any], method: str, path: str) -> tuple[str, dict[str, Any]]:
    responses = doc["paths"][path][method]["responses"]
    [answer] = [r for s, r in responses.items() if s.startswith("2")]
    [(media_type, content)] = answer["content"].items()
    return media_type, content["schema"]


async def test_every_operation_documents_its_body_and_its_errors(settings: Settings) -> None:
    doc = await _document(settings)
    components = doc["components"]["schemas"]
    found = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert found == set(OPERATIONS), "a route is missing from OPERATIONS, or one went away"
    for (method, path), (body, statuses) in OPERATIONS.items():
        where = f"{method.upper()} {path}"
        if body == "":  # no body: 204
            assert "content" not in doc["paths"][path][method]["responses"]["204"], where
        elif "/" in body:
            media_type, schema = _success(
                doc, method, path
            )  # not JSON: the media type, and a string
            assert media_type == body and schema["type"] == "string", where
        else:
            media_type, schema = _success(doc, method, path)
            assert media_type == "application/json", where
            assert schema == {"$ref": f"#/components/schemas/{body}"}, where
            model = components[body]
            assert model["type"] == "object" and model["properties"], where
            assert set(model.get("required", [])) <= set(model["properties"]), where
        declared = doc["paths"][path][method]["responses"]
        assert statuses <= {int(s) for s in declared}, f"{where}: {sorted(declared)}"
        for status, answer in declared.items():
            if status.startswith("2") or (path.endswith("/health") and status == "503"):
                continue
            assert answer["content"]["application/json"]["schema"] == {"$ref": ERROR_REF}, (
                f"{where} {status}"
            )
    health_down = doc["paths"][f"{V1}/health"]["get"]["responses"]["503"]
    assert health_down["content"]["application/json"]["schema"]["$ref"].endswith("HealthReport")
    error = components["ErrorBody"]
    assert set(error["required"]) == {"error", "detail"}
    assert error["additionalProperties"] is False
    assert "HTTPValidationError" not in components, "FastAPI's 422 is never what we send"


async def test_real_error_bodies_validate_against_error_body(
    api: httpx.AsyncClient, token: Any, settings: Settings
) -> None:
    doc = await _document(settings)
    error = _validator(doc, {"$ref": ERROR_REF})
    auditor = token("auditor")
    answers = [
        (404, "NotFound", await api.get("/proposals/no-such-usulan", headers=auditor)),
        (422, "ValidationError", await api.get("/events", params={"limit": 0}, headers=auditor)),
        (422, "ValidationError", await api.get("/cycles/13.72-2028%00", headers=auditor)),
        (401, "Unauthorized", await api.get("/cycles/13.72-2028")),
        (403, "Forbidden", await api.get("/cycles/36.71-2028", headers=token("coordinator", KEL))),
    ]
    for status, kind, res in answers:
        assert res.status_code == status, res.text
        body = res.json()
        error.validate(body)
        assert ErrorBody.model_validate(body).error == kind


async def test_real_bodies_validate_against_their_documented_models(
    api: httpx.AsyncClient, token: Any, settings: Settings, cycle_year: int
) -> None:
    doc = await _document(settings)
    auditor, lurah = token("auditor"), token("coordinator", KEL)
    cycle = await open_cycle(api, token, cycle_year)
    forum = f"/cycles/{cycle}/forums/kelurahan/{KEL}"
    await wait_forum(api, token, forum)
    submitted = await api.post(
        f"{forum}/proposals",
        headers=lurah,
        json={
            "proposals": [usulan("Jalan rusak", "jalan", 10**8), usulan("Got", "drainase", 10**7)]
        },
    )
    kept, rejected = submitted.json()["proposal_ids"]
    decided = await api.post(
        f"{forum}/decisions",
        headers=lurah,
        json={
            "decisions": [
                {"proposal_id": kept, "kind": "accept"},
                {
                    "proposal_id": rejected,
                    "kind": "reject",
                    "reason_code": "duplikat",
                    "reason": "Tidak",
                },
            ]
        },
    )
    reads = {
        f"{V1}/health": await api.get("/health"),
        CYCLE: await api.get(f"/cycles/{cycle}", headers=auditor),
        FORUM: await api.get(forum, headers=auditor),
        f"{CYCLE}/forums": await api.get(f"/cycles/{cycle}/forums", headers=auditor),
        f"{CYCLE}/funnel": await api.get(f"/cycles/{cycle}/funnel", headers=auditor),
        f"{CYCLE}/findings": await api.get(f"/cycles/{cycle}/findings", headers=auditor),
        f"{V1}/proposals/{{proposal_id}}": await api.get(f"/proposals/{kept}", headers=auditor),
        f"{V1}/proposals/{{proposal_id}}/history": await api.get(
            f"/proposals/{rejected}/history", headers=auditor
        ),
        f"{V1}/events": await api.get("/events", params={"log": REGION}, headers=auditor),
        f"{V1}/audit/verify": await api.get("/audit/verify", headers=auditor),
        f"{V1}/logs": await api.get("/logs", headers=auditor),
    }
    answers = [
        ("post", f"{FORUM}/proposals", submitted),
        ("post", f"{FORUM}/decisions", decided),
        *(("get", path, res) for path, res in reads.items()),
    ]
    for method, path, res in answers:
        assert res.status_code == 200, (path, res.text)
        _, schema = _success(doc, method, path)
        _validator(doc, schema).validate(res.json())
    state = reads[f"{V1}/proposals/{{proposal_id}}"].json()
    assert state["details"]["masalah"] == "Jalan rusak" and "reason" not in state
    assert reads[CYCLE].json()["forums"], "the cycle's forums are counted"


async def test_the_docs_load_with_no_network(settings: Settings) -> None:
    """Swagger UI and ReDoc come from the app itself: every script, style and icon they load
    is served here, so /docs works on an intranet with no internet."""
    app = create_app(settings, engine=None, temporal=None)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        for page in ("/docs", "/redoc"):
            html = (await client.get(page)).text
            assets = re.findall(r'(?:src|href|url)\s*[=:]\s*["\']([^"\']+)["\']', html)
            assert assets, page
            for asset in assets:
                assert asset.startswith("/"), f"{page} loads {asset} from elsewhere"
                served = await client.get(asset)
                assert served.status_code == 200, asset
            assert "cdn." not in html and "fonts.googleapis" not in html
