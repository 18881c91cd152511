"""One error shape for every failure: `{"error": "<Kind>", "detail": "<sentence>"}`."""

from __future__ import annotations

from html import escape
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy.exc import DataError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from musrenbang.domain.errors import Conflict, Forbidden, NotFound, Refused
from musrenbang.events.errors import EventLogError
from musrenbang.logging import get_logger

log = get_logger(__name__)


class ApiError(Exception):
    """Raised by routes; rendered by one handler."""

    def __init__(self, status: int, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.kind, self.detail = status, kind, detail


def not_found(what: str) -> ApiError:
    return ApiError(404, "NotFound", f"{what} does not exist")


def _body(status: int, kind: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": kind, "detail": detail}, status_code=status)


# Pages (everything but the API, its documents and static files) answer a person: HTML.
_MACHINE = ("/api/", "/openapi.json", "/docs", "/redoc", "/static")
TITLES = {
    401: "Perlu masuk",
    403: "Tidak diizinkan",
    404: "Tidak ditemukan",
    409: "Tidak dapat dilakukan sekarang",
    422: "Isian tidak dapat diterima",
    503: "Layanan sedang tidak menjawab",
}


def wants_page(request: Request) -> bool:
    return not request.url.path.startswith(_MACHINE)


def page_error(status: int, detail: str) -> HTMLResponse:
    """A readable page for a refusal or a failure, never a stack trace."""
    title = TITLES.get(status, "Terjadi kesalahan")
    return HTMLResponse(
        "<!doctype html><html lang=id><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f'<link rel=stylesheet href="/static/musrenbang.css"><title>{escape(title)}</title>'
        f'<main><h1>{escape(title)}</h1><div class="message error" role=alert>{escape(detail)}'
        '</div><p><a href="/">Kembali ke beranda</a></p></main></html>',
        status_code=status,
    )


def answer(request: Request, status: int, kind: str, detail: str) -> Response:
    """The one shape of every failure: JSON for the API, a page for a person."""
    if wants_page(request):
        return page_error(status, detail)
    return _body(status, kind, detail)


def _validation_sentence(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        parts.append(f"{where or 'body'}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "the request is not valid"


# The one table from a refusal's kind (domain/errors.py, carried as the type of an
# ApplicationError) to an HTTP status. Nothing reads a message to pick a status.
STATUS_OF_REFUSAL: dict[str, int] = {
    Refused.kind: 422,
    Forbidden.kind: 403,
    Conflict.kind: 409,
    NotFound.kind: 404,
}


def refusal(kind: str | None, detail: str) -> ApiError:
    """The answer to a refusal of `kind`; an unknown kind is the plain 422 refusal."""
    if kind in STATUS_OF_REFUSAL:
        return ApiError(STATUS_OF_REFUSAL[kind], kind, detail)
    return ApiError(422, Refused.kind, detail)


def update_failure(exc: WorkflowUpdateFailedError) -> ApiError:
    """A refused command: the rule's sentence, with the status its kind calls for."""
    cause: Any = exc.cause
    message = getattr(cause, "message", None) or str(cause)
    return refusal(getattr(cause, "type", None), message)


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError) -> Response:
        return answer(request, exc.status, exc.kind, exc.detail)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        return answer(request, 422, "ValidationError", _validation_sentence(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        kinds = {401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed"}
        return answer(
            request, exc.status_code, kinds.get(exc.status_code, "HTTPError"), str(exc.detail)
        )

    @app.exception_handler(WorkflowUpdateFailedError)
    async def _refused(request: Request, exc: WorkflowUpdateFailedError) -> Response:
        err = update_failure(exc)
        return answer(request, err.status, err.kind, err.detail)

    @app.exception_handler(RPCError)
    async def _rpc(request: Request, exc: RPCError) -> Response:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return answer(request, 404, "NotFound", "that forum or cycle is not running")
        log.error("temporal.error", status=str(exc.status), message=exc.message)
        return answer(request, 503, "Unavailable", "the workflow engine did not answer; try again")

    @app.exception_handler(ApplicationError)
    async def _app_error(request: Request, exc: ApplicationError) -> Response:
        err = refusal(exc.type, exc.message)
        return answer(request, err.status, err.kind, err.detail)

    @app.exception_handler(Refused)
    async def _refusal(request: Request, exc: Refused) -> Response:
        err = refusal(exc.kind, exc.detail)
        return answer(request, err.status, err.kind, err.detail)

    @app.exception_handler(OperationalError)
    async def _database_down(request: Request, exc: OperationalError) -> Response:
        log.error("database.unavailable", error=str(exc.orig)[:300])
        return answer(request, 503, "Unavailable", "the database did not answer; try again")

    @app.exception_handler(DataError)
    async def _data(request: Request, exc: DataError) -> Response:
        # e.g. a NUL character in a query parameter: PostgreSQL text cannot hold it
        return answer(
            request,
            422,
            "ValidationError",
            f"the request holds a value the database refuses: {exc.orig}",
        )

    @app.exception_handler(EventLogError)
    async def _log_error(request: Request, exc: EventLogError) -> Response:
        return answer(request, 409, "Conflict", str(exc))
