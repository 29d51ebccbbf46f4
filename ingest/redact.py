"""R9: sensitive metadata never reaches storage or logs.

Values under sensitive keys are replaced, and strings that look like payment card
numbers (13-19 digits, optionally grouped by spaces or dashes, passing Luhn) are masked
wherever they appear in metadata.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

REDACTED = "[REDACTED]"
REDACTED_CARD = "[REDACTED:card]"
DEFAULT_SENSITIVE_KEYS = (
    "password", "passwd", "pwd", "secret", "token", "api_key", "apikey", "authorization",
    "auth", "cookie", "session", "private_key", "credential", "card_number", "cvv",
)

_CARD = re.compile(r"(?<![\d])(?:\d[ -]?){12,18}\d(?![\d])")


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _mask_cards(text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        digits = re.sub(r"[ -]", "", match.group(0))
        return REDACTED_CARD if 13 <= len(digits) <= 19 and luhn_ok(digits) else match.group(0)

    return _CARD.sub(replace, text)


class Redactor:
    """Redacts a metadata tree; keys match case-insensitively on normalised substrings."""

    def __init__(self, sensitive_keys: Iterable[str] = DEFAULT_SENSITIVE_KEYS) -> None:
        self._needles = tuple(self._norm(k) for k in sensitive_keys)

    @staticmethod
    def _norm(key: str) -> str:
        return key.lower().replace("-", "").replace("_", "")

    def is_sensitive(self, key: str) -> bool:
        norm = self._norm(key)
        return any(needle in norm for needle in self._needles)

    def redact(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: (REDACTED if self.is_sensitive(k) else self.redact(v)) for k, v in value.items()}
        if isinstance(value, list):
            return [self.redact(v) for v in value]
        if isinstance(value, str) and len(value) >= 13 and any(c.isdigit() for c in value):
            return _mask_cards(value)
        if isinstance(value, int) and not isinstance(value, bool) and 10**12 <= abs(value) < 10**19:
            digits = str(abs(value))
            return REDACTED_CARD if luhn_ok(digits) else value
        return value
