"""Report errors, each saying how to fix the call."""

from __future__ import annotations


class ReportError(ValueError):
    """A report that cannot be generated as asked."""


class UnknownReport(ReportError):
    """No report has this name."""


class BadScope(ReportError):
    """A scope the report cannot use."""


class RenderError(RuntimeError):
    """The PDF or an appendix could not be written (a missing system library, a full disk)."""
