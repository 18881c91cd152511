"""The event log's own small error hierarchy; driver errors are translated into it."""

from __future__ import annotations


class EventLogError(Exception):
    """Base of every error the event log raises."""


class IdempotencyConflict(EventLogError):
    """An idempotency key was reused for different content."""

    def __init__(self, message: str, key: str) -> None:
        super().__init__(message)
        self.key = key


class VersionConflict(EventLogError):
    """A stream was not at the version the append expected."""

    def __init__(self, stream: str, expected: int, actual: int) -> None:
        super().__init__(f"stream {stream} is at version {actual}, expected {expected}")
        self.stream = stream
        self.expected = expected
        self.actual = actual


class InvalidEvent(EventLogError):
    """An event could not be encoded (e.g. a float that is not finite, a naive timestamp)."""


class Contention(EventLogError):
    """The streams of a batch kept changing under it: the same append may succeed later."""
