"""The reports shipped, by name, in the order an auditor usually asks for them."""

from __future__ import annotations

from reports.errors import UnknownReport
from reports.library import access_review, auth_failures, incident, integrity, privileged, sensitive
from reports.model import Definition

REPORTS: dict[str, Definition] = {d.name: d for d in (
    access_review.DEFINITION, privileged.DEFINITION, auth_failures.DEFINITION, integrity.DEFINITION,
    sensitive.DEFINITION, incident.DEFINITION)}


def get(name: str) -> Definition:
    try:
        return REPORTS[name]
    except KeyError:
        raise UnknownReport(f"no report named {name!r}; `auditwatch report list` shows them: "
                            f"{', '.join(REPORTS)}") from None


def all_reports() -> list[Definition]:
    return list(REPORTS.values())
