"""Sigma interop errors, each naming the rule, the field and the reason."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Refusal:
    """Why one Sigma rule (or one of our rules) has no equivalent on the other side."""

    rule: str  # the rule's name, id or title, and its file when known
    field: str | None  # the Sigma field, condition part or rule attribute at fault
    reason: str

    def __str__(self) -> str:
        where = f" (field {self.field})" if self.field else ""
        return f"{self.rule}{where}: {self.reason}"


class SigmaUnmappable(ValueError):
    """A rule cannot be mapped; ``refusal`` says which rule, which field and why."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(str(refusal))
        self.refusal = refusal
