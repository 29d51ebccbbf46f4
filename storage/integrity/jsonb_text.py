"""PostgreSQL's ``jsonb::text`` of a metadata value, computed in Python for the values where it is exact.

The leaf hash covers metadata as PostgreSQL prints it back (``chain.LEAF_CONTRACT``), so the writer used
to ask the server to render every row's metadata. For objects, arrays, strings, integers, booleans and
null, jsonb's output is fixed and simple (``src/backend/utils/adt/jsonb.c``: keys ordered by byte length,
then bytes; ``", "`` and ``": "`` between items; strings escaped as ``escape_json`` does). Anything else
(floats, whose numeric text differs from Python's, or values a JSON encoder converts, such as datetimes)
returns None, and the writer asks the server for that row as before. verify recomputes every leaf in SQL
from the stored row, and the tests hold this rendering equal to the server's.
"""

from __future__ import annotations

import re

# What escape_json writes for the characters it escapes (control characters as lowercase \u00xx).
_ESCAPES = {i: f"\\u{i:04x}" for i in range(0x20)}
_ESCAPES.update({ord('"'): '\\"', ord("\\"): "\\\\", ord("\b"): "\\b", ord("\f"): "\\f", ord("\n"): "\\n",
                 ord("\r"): "\\r", ord("\t"): "\\t"})
_NEEDS_ESCAPE = re.compile(r'[\x00-\x1f"\\]')


class _Inexact(Exception):
    """A value whose jsonb text this module does not reproduce."""


def _string(value: str) -> str:
    if _NEEDS_ESCAPE.search(value) is None:
        return '"' + value + '"'
    if "\x00" in value:  # jsonb refuses \u0000: let the server say so
        raise _Inexact
    return '"' + value.translate(_ESCAPES) + '"'


def _key_order(key: str) -> tuple[int, bytes]:
    data = key.encode()
    return len(data), data


def _render(value: object) -> str:
    kind = type(value)
    if kind is str:
        return _string(value)  # type: ignore[arg-type]
    if kind is dict:
        if not value:
            return "{}"
        if not all(type(k) is str for k in value):  # type: ignore[union-attr]
            raise _Inexact
        keys = sorted(value, key=_key_order)  # type: ignore[arg-type]
        return "{" + ", ".join(_string(k) + ": " + _render(value[k]) for k in keys) + "}"  # type: ignore[index]
    if kind is list or kind is tuple:
        return "[" + ", ".join(map(_render, value)) + "]"  # type: ignore[call-overload]
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)
    if value is None:
        return "null"
    raise _Inexact


def render(value: object) -> str | None:
    """``value``'s jsonb text as PostgreSQL prints it, or None when only the server can say exactly."""
    try:
        return _render(value)
    except _Inexact:
        return None
