"""Dashboard errors, each saying how to fix the problem."""

from __future__ import annotations


class DashboardError(ValueError):
    """Base class for dashboard problems shown to the user."""


class DashboardConfigError(DashboardError):
    """A dashboard definition (YAML or stored) that does not fit the widget registry."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}" if where else problem)
        self.where = where
        self.problem = problem


class TimeRangeError(DashboardError):
    """A custom time range that cannot be used."""


class NotAllowed(DashboardError):
    """The signed-in role may not do this."""
