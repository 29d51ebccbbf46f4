"""Ingest errors: each carries a machine-readable code, the field at fault and a fix."""

from __future__ import annotations


class IngestError(ValueError):
    """A request or event that cannot be accepted as sent."""

    status = 400

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field

    def to_json(self) -> dict[str, str | None]:
        return {"code": self.code, "message": self.message, "field": self.field}


class EventRejected(IngestError):
    """One event failed validation; the rest of its batch is unaffected."""

    status = 422


class RateLimited(IngestError):
    """R6: a user's events per minute are over the limit."""

    status = 429

    def __init__(self, message: str, retry_after: int, field: str | None = "user_id") -> None:
        super().__init__("rate_limited", message, field)
        self.retry_after = retry_after


class Unavailable(IngestError):
    """Events could not be made durable right now (the bus or the database is down); nothing was acknowledged."""

    status = 503

    def __init__(self, message: str, retry_after: int = 5) -> None:
        super().__init__("unavailable", message, None)
        self.retry_after = retry_after
