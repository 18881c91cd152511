"""The workflow edge of the refusal contract: a domain `Refused` (or an append the log
refused for good) leaves an update as a non-retryable `ApplicationError` whose type is
the refusal's kind. Anything else raised in a handler would fail the workflow task and be
retried forever, wedging the forum (temporalio/samples-python, safe_message_handlers)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from temporalio.exceptions import ActivityError, ApplicationError

from musrenbang.domain.errors import REFUSALS, Refused


def as_application_error(exc: Refused) -> ApplicationError:
    return ApplicationError(exc.detail, type=exc.kind, non_retryable=True)


def refusal_of(exc: BaseException) -> Refused | None:
    """The refusal an error stands for: a domain refusal, or an activity that failed for a
    reason a retry cannot change (the activity marks those non-retryable)."""
    if isinstance(exc, Refused):
        return exc
    if isinstance(exc, ActivityError) and isinstance(exc.cause, ApplicationError):
        cause = exc.cause
        if cause.non_retryable:
            return REFUSALS.get(cause.type or "", Refused)(cause.message)
    return None


@contextmanager
def refusals() -> Iterator[None]:
    """Wraps an update's handler or validator."""
    try:
        yield
    except (Refused, ActivityError) as exc:
        refusal = refusal_of(exc)
        if refusal is None:
            raise
        raise as_application_error(refusal) from None
