"""Refusals: the one small hierarchy every rule raises when it says "no".

Workflows carry a refusal through Temporal as an `ApplicationError` whose `type` is the
class name; the API maps that name to an HTTP status through one table. Nobody ever
reads a refusal's message to decide what it is.
"""

from __future__ import annotations


class Refused(Exception):
    """The request breaks a rule (bad values, a pagu exceeded): nothing is written."""

    kind = "Refused"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class Forbidden(Refused):
    """The actor may not do this here."""

    kind = "Forbidden"


class Conflict(Refused):
    """The request clashes with the state it meets (a closed forum, a reused id)."""

    kind = "Conflict"


class NotFound(Refused):
    """What the request names does not exist."""

    kind = "NotFound"


REFUSALS: dict[str, type[Refused]] = {
    cls.kind: cls for cls in (Refused, Forbidden, Conflict, NotFound)
}
