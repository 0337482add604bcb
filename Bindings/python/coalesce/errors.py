"""Exceptions raised by the binding: one class per cz_status code (Include/coalesce.h)."""
from __future__ import annotations


class CoalesceError(Exception):
    """A libcoalesce call failed. ``status`` is the cz_status integer, ``message`` the library's
    per-handle message (cz_engine_errmsg)."""

    status = -1

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status

    def __str__(self) -> str:
        return f"{STATUS_NAMES.get(self.status, 'CZ_UNKNOWN_STATUS')}: {self.message}"


class InvalidArgumentError(CoalesceError, ValueError):
    """CZ_INVALID_ARGUMENT: a bad argument (the message says which)."""
    status = 1


class NotFoundError(CoalesceError, LookupError):
    """CZ_NOT_FOUND: unknown model, missing directory, config or plugin."""
    status = 2


class ResourceExhaustedError(CoalesceError, MemoryError):
    """CZ_RESOURCE_EXHAUSTED: out of memory or a limit reached."""
    status = 3


class CancelledError(CoalesceError):
    """CZ_CANCELLED: the progress callback asked to stop."""
    status = 4


class DeadlineExceededError(CoalesceError, TimeoutError):
    """CZ_DEADLINE_EXCEEDED: timeout_ms elapsed."""
    status = 5


class InternalError(CoalesceError):
    """CZ_INTERNAL: an unexpected failure; the message says what."""
    status = 6


class UnavailableError(CoalesceError):
    """CZ_UNAVAILABLE: model being unloaded or engine shutting down; retry."""
    status = 7


STATUS_NAMES = {
    0: "CZ_OK", 1: "CZ_INVALID_ARGUMENT", 2: "CZ_NOT_FOUND", 3: "CZ_RESOURCE_EXHAUSTED",
    4: "CZ_CANCELLED", 5: "CZ_DEADLINE_EXCEEDED", 6: "CZ_INTERNAL", 7: "CZ_UNAVAILABLE",
}

_BY_STATUS = {cls.status: cls for cls in (
    InvalidArgumentError, NotFoundError, ResourceExhaustedError, CancelledError,
    DeadlineExceededError, InternalError, UnavailableError)}


def error_for(status: int, message: str) -> CoalesceError:
    """The exception for a nonzero status."""
    cls = _BY_STATUS.get(status)
    if cls is None:
        return CoalesceError(message, status)
    return cls(message)
