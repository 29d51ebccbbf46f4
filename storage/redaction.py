"""R9: sensitive data never reaches storage or logs (ingested events and the platform's own records).

Values under sensitive keys are replaced, and strings that look like payment card
numbers (13-19 digits, optionally grouped by spaces or dashes, passing Luhn) are masked
wherever they appear in metadata. The free-text fields (user_agent, resource_id, source) get
``redact_text``: cards masked, and the secret of a ``name=secret`` pair with a sensitive name
(a URL's ``?token=``), of ``Bearer``/``Basic`` credentials and of Auditwatch API keys replaced.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Any

import numpy as np

REDACTED = "[REDACTED]"
REDACTED_CARD = "[REDACTED:card]"
DEFAULT_SENSITIVE_KEYS = (
    "password", "passwd", "pwd", "secret", "token", "api_key", "apikey", "authorization",
    "auth", "cookie", "session", "private_key", "credential", "card_number", "cvv",
)

# A run of digit groups joined by single spaces or dashes, of at least 13 digits (only such a run can hold a
# card; matching every run called back for each short one too: "5a5a5a..." beside one card cost a Python call
# per digit); cards are looked for group by group inside it.
_LONG_DIGIT_RUN = re.compile(r"\d(?:[ -]?\d){12,}")
_SEPARATOR = re.compile(r"([ -])")
# `name=value` as in a URL query, a cookie or a command line; the value ends at a separator.
_PAIR = re.compile(r"([A-Za-z][A-Za-z0-9_.\-]{0,63})=([^\s&;,\"'<>()\[\]]+)")
_SCHEME_CREDENTIAL = re.compile(r"\b(Bearer|Basic|Token)\s+[A-Za-z0-9._~+/\-]{8,}=*", re.IGNORECASE)
# At least 13 digits, single spaces or dashes between them: only such text can hold a card (cheap C-level pre-check).
_CARD_CANDIDATE = re.compile(r"\d(?:[ -]?\d){12}")
_AUDITWATCH_KEY = re.compile(r"\baw_[0-9a-f]{32}_[A-Za-z0-9_\-]+")


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


# Payment cards (PCI DSS's brands) start with 2-6: Mastercard 2/5, Amex, Diners and JCB 3, Visa 4, Discover,
# UnionPay and Maestro 6; only Visa issued 13 digits. Without this a 13-digit epoch-milliseconds time (17...)
# passing Luhn, one in ten of them, was masked as a card.
_ISSUER_FIRST = frozenset("23456")


def card_like(digits: str) -> bool:
    return (13 <= len(digits) <= 19 and digits[0] in _ISSUER_FIRST and (len(digits) > 13 or digits[0] == "4")
            and luhn_ok(digits))


# Runs of more groups than this are searched for every start at once (``_card_ends``): "5 5 5 ..." over a
# 16 KB syslog line cost ~100 ms one start at a time.
_MANY_GROUPS = 48


def _card_ends(groups: list[str], offsets: np.ndarray) -> np.ndarray:
    """For each group i, the last group of the longest card that starts with it (-1 for none): what
    ``_mask_run``'s per-start search finds, computed for every start at once.

    Luhn's sum of any span comes from prefix sums: counted from a span's right end, the doubled digits are
    those with the end's parity, so two running sums (doubled digits at even places and plain at odd ones, and
    the reverse) give each span's sum in O(1). Digits are taken as ``luhn_ok`` takes them (``ord(ch) - 48``,
    Unicode digits included), and only starts whose first digit an issuer uses are looked at. ``offsets[k]``
    is where group k's digits begin in the groups joined, ``offsets[-1]`` their total."""
    count = len(groups)
    ends_found = np.full(count, -1, dtype=np.int64)
    digits = np.frombuffer("".join(groups).encode("utf-32-le"), dtype=np.uint32).astype(np.int64) - 48
    first = digits[offsets[:-1]]
    starts = np.nonzero((first >= 2) & (first <= 6))[0]
    begin = offsets[starts]
    # A candidate span ends where a group ends 13-19 digits after its start: offsets[lo:hi] for each start.
    lo = np.searchsorted(offsets, begin + 13, "left")
    hi = np.searchsorted(offsets, begin + 19, "right")
    counts = np.maximum(hi - lo, 0)
    rows = np.repeat(np.arange(len(starts)), counts)
    if not len(rows):
        return ends_found
    ends = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts) + lo[rows]  # into offsets
    span_end = offsets[ends]
    span_start = begin[rows]
    shaped = (span_end - span_start > 13) | (first[starts[rows]] == 4)  # 13 digits: only Visa
    doubled = digits * 2
    doubled -= 9 * (doubled > 9)
    even = (np.arange(len(digits)) % 2) == 0
    sums = []  # [a span ending at an even place: doubled digits at even places, plain at odd; the reverse]
    for doubled_at in (even, ~even):
        running = np.zeros(len(digits) + 1, dtype=np.int64)
        np.cumsum(np.where(doubled_at, doubled, digits), out=running[1:])
        sums.append(running)
    total = np.where(span_end % 2 == 0, sums[0][span_end] - sums[0][span_start],
                     sums[1][span_end] - sums[1][span_start])
    ok = shaped & (total % 10 == 0)
    rows, ends = rows[ok], ends[ok]  # by start, then by end: each start's last is its longest card
    last = np.ones(len(rows), dtype=bool)
    last[:-1] = rows[1:] != rows[:-1]
    ends_found[starts[rows[last]]] = ends[last] - 1  # offsets[k] ends group k - 1
    return ends_found


def _mask_run(run: str) -> str:
    """Mask every span of whole groups that is a card, so digits beside it (a CVV, an order number)
    cannot hide it."""
    parts = _SEPARATOR.split(run)  # group, separator, group, ...
    groups = parts[::2]
    if len(groups) > _MANY_GROUPS:
        return _mask_long_run(run, groups)
    out: list[str] = []
    i = 0
    while i < len(groups):
        card_end = None
        digits = ""
        for j in range(i, len(groups)):
            digits += groups[j]
            if len(digits) > 19:
                break
            if card_like(digits):
                card_end = j  # keep the longest card starting here
        if card_end is None:
            out.append(groups[i])
            end = i
        else:
            out.append(REDACTED_CARD)
            end = card_end
        if end < len(groups) - 1:
            out.append(parts[2 * end + 1])
        i = end + 1
    return "".join(out)


def _mask_long_run(run: str, groups: list[str]) -> str:
    """``_mask_run`` for a run of many groups: every start's longest card found at once (``_card_ends``), then
    the cards taken left to right as the per-start loop takes them, copying the text between them whole."""
    offsets = np.zeros(len(groups) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, groups), dtype=np.int64, count=len(groups)), out=offsets[1:])
    ends = _card_ends(groups, offsets)
    # Each separator is one character, so group k starts in the run at its digits' offset plus k.
    position = (offsets[:-1] + np.arange(len(groups))).tolist()
    out: list[str] = []
    at = 0  # the first group not yet written
    for start in np.nonzero(ends >= 0)[0].tolist():
        if start < at:  # inside a card already taken
            continue
        end = int(ends[start])
        out.append(run[position[at]:position[start]])  # the groups before it, each with its separator
        out.append(REDACTED_CARD)
        at = end + 1
        if at < len(groups):
            out.append(run[position[at] - 1])  # the separator after the card
    if at < len(groups):
        out.append(run[position[at]:])
    return "".join(out)


# A UUID's dash-joined digit groups can add up to a Luhn-valid, issuer-shaped run ("56e41605-3427-4624-82c5-..."
# holds 4160534274624): event ids in forwarded JSON were masked. No card is written in a UUID's 8-4-4-4-12 shape.
_UUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")


def _mask_digits(text: str) -> str:
    return _LONG_DIGIT_RUN.sub(lambda m: _mask_run(m.group(0)), text)


def _mask_cards(text: str) -> str:
    if "-" not in text or not _UUID.search(text):
        return _mask_digits(text)
    out: list[str] = []
    at = 0
    for m in _UUID.finditer(text):
        out.append(_mask_digits(text[at:m.start()]))
        out.append(m.group(0))
        at = m.end()
    out.append(_mask_digits(text[at:]))
    return "".join(out)


# Integers of 13-19 digits may be card numbers written without quotes.
_CARD_LOW, _CARD_HIGH = 10**12, 10**19


class Redactor:
    """Redacts a metadata tree; keys match case-insensitively on normalised substrings."""

    def __init__(self, sensitive_keys: Iterable[str] = DEFAULT_SENSITIVE_KEYS) -> None:
        self._needles = tuple(self._norm(k) for k in sensitive_keys)
        # Metadata keys repeat across events: decide each key once.
        self.is_sensitive = functools.lru_cache(maxsize=16384)(self._is_sensitive)  # type: ignore[method-assign]
        # User agents and sources repeat across events; at most 4,096 texts of ≤ 1 KB are remembered.
        self._text_cache = functools.lru_cache(maxsize=4096)(self._redact_text)

    @staticmethod
    def _norm(key: str) -> str:
        return key.lower().replace("-", "").replace("_", "")

    def _is_sensitive(self, key: str) -> bool:
        norm = self._norm(key)
        return any(needle in norm for needle in self._needles)

    def redact_text(self, text: str | None) -> str | None:
        """A free-text field (user agent, resource id, source) with secrets and card numbers masked."""
        return self._text_cache(text) if text else text

    def _redact_text(self, text: str) -> str:
        if "=" in text:
            text = _PAIR.sub(lambda m: f"{m.group(1)}={REDACTED}" if self.is_sensitive(m.group(1)) else m.group(0),
                             text)
        if " " in text:
            text = _SCHEME_CREDENTIAL.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
        if "aw_" in text:
            text = _AUDITWATCH_KEY.sub(REDACTED, text)
        if len(text) >= 13 and _CARD_CANDIDATE.search(text):
            text = _mask_cards(text)
        return text

    def redact_object(self, value: dict[str, Any]) -> dict[str, Any]:
        """``redact`` of a JSON object, always as a new dict (the pipeline adds the sender to it).

        The same answers as ``redact``, with the scalars an event's metadata mostly holds decided here instead
        of in a call each."""
        out: dict[str, Any] = {}
        sensitive, redact = self.is_sensitive, self.redact
        for key, item in value.items():
            kind = type(item)
            if sensitive(key):
                out[key] = REDACTED
            elif kind is str:
                out[key] = _mask_cards(item) if len(item) >= 13 and _CARD_CANDIDATE.search(item) else item
            elif kind is float or kind is bool or item is None or (kind is int and not _CARD_LOW <= abs(item) < _CARD_HIGH):
                out[key] = item
            else:
                out[key] = redact(item)
        return out

    def redact(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: (REDACTED if self.is_sensitive(k) else self.redact(v)) for k, v in value.items()}
        if isinstance(value, list):
            return [self.redact(v) for v in value]
        # The C-level pre-check finds every text that can hold a card (13+ digits, single separators);
        # log lines full of addresses and times skip the run-by-run Luhn search.
        if isinstance(value, str) and len(value) >= 13 and _CARD_CANDIDATE.search(value):
            return _mask_cards(value)
        if isinstance(value, int) and not isinstance(value, bool) and _CARD_LOW <= abs(value) < _CARD_HIGH:
            return REDACTED_CARD if card_like(str(abs(value))) else value
        return value
