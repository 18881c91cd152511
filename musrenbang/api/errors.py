"""One error shape for every failure: `{"error": "<Kind>", "detail": "<sentence>"}`."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
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
    async def _api(_: Request, exc: ApiError) -> JSONResponse:
        return _body(exc.status, exc.kind, exc.detail)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _body(422, "ValidationError", _validation_sentence(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kinds = {401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed"}
        return _body(exc.status_code, kinds.get(exc.status_code, "HTTPError"), str(exc.detail))

    @app.exception_handler(WorkflowUpdateFailedError)
    async def _refused(_: Request, exc: WorkflowUpdateFailedError) -> JSONResponse:
        err = update_failure(exc)
        return _body(err.status, err.kind, err.detail)

    @app.exception_handler(RPCError)
    async def _rpc(_: Request, exc: RPCError) -> JSONResponse:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return _body(404, "NotFound", "that forum or cycle is not running")
        log.error("temporal.error", status=str(exc.status), message=exc.message)
        return _body(503, "Unavailable", "the workflow engine did not answer; try again")

    @app.exception_handler(ApplicationError)
    async def _app_error(_: Request, exc: ApplicationError) -> JSONResponse:
        err = refusal(exc.type, exc.message)
        return _body(err.status, err.kind, err.detail)

    @app.exception_handler(Refused)
    async def _refusal(_: Request, exc: Refused) -> JSONResponse:
        err = refusal(exc.kind, exc.detail)
        return _body(err.status, err.kind, err.detail)

    @app.exception_handler(OperationalError)
    async def _database_down(_: Request, exc: OperationalError) -> JSONResponse:
        log.error("database.unavailable", error=str(exc.orig)[:300])
        return _body(503, "Unavailable", "the database did not answer; try again")

    @app.exception_handler(DataError)
    async def _data(_: Request, exc: DataError) -> JSONResponse:
        # e.g. a NUL character in a query parameter: PostgreSQL text cannot hold it
        return _body(
            422, "ValidationError", f"the request holds a value the database refuses: {exc.orig}"
        )

    @app.exception_handler(EventLogError)
    async def _log_error(_: Request, exc: EventLogError) -> JSONResponse:
        return _body(409, "Conflict", str(exc))
