"""Bus messages signed by the node that checked them, so a writer need not check them all again.

A node publishes only what its pipeline has validated, redacted and enriched. Without proof of that, the writer
re-runs every check on every event (``ingest.busguard``): a third of its CPU per event, for work already done.
With ``bus_signing_key`` set on the nodes and the writers, each published message carries an HMAC-SHA256 of its
body under that key (``Auditwatch-Signature: v1 <key id> <hex>``). A writer that verifies it stores the message's
records as they were sent, with ``received_at`` stamped, as always, from the time JetStream stored the message,
after only the checks that guard the platform's own records (``BusGuard.check_signed``): a stolen key must not
be able to forge an erasure or an operator's action.

A message that is unsigned, or whose signature does not verify (another key, a changed body), is not refused: it
is re-validated as before, so a key rotated on the nodes first, or a message re-published by hand, loses nothing.
A signature only ever saves work; it never lets through what the checks would refuse from a holder of no key.
Several keys may be given (comma-separated): the first signs, each verifies, which is how a key is rotated.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass

HEADER = "Auditwatch-Signature"
_SCHEME = "v1"
_MIN_KEY_BYTES = 32


def signature_of(headers: dict[str, str] | None) -> str | None:
    """A message's signature header, if it has one."""
    return headers.get(HEADER) if headers else None


class SigningKeyError(ValueError):
    """A ``bus_signing_key`` that cannot be used."""


def _key_id(key: bytes) -> str:
    return hashlib.sha256(b"auditwatch-bus-key\n" + key).hexdigest()[:12]


@dataclass(frozen=True)
class BusKeys:
    """The keys a node signs with (the first) and a writer verifies with (any)."""

    keys: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if not self.keys:
            raise SigningKeyError("no bus signing key given")
        for key in self.keys:
            if len(key) < _MIN_KEY_BYTES:
                raise SigningKeyError(f"a bus signing key must be at least {_MIN_KEY_BYTES} bytes, not {len(key)}: "
                                      "make one with `openssl rand -base64 32`")

    @classmethod
    def from_setting(cls, text: str) -> BusKeys | None:
        """The keys of ``bus_signing_key`` (base64, comma-separated, the signing one first); None when empty."""
        parts = [p.strip() for p in text.split(",") if p.strip()]
        if not parts:
            return None
        keys = []
        for i, part in enumerate(parts, 1):
            try:
                keys.append(base64.b64decode(part, validate=True))
            except (binascii.Error, ValueError):
                raise SigningKeyError(f"bus signing key {i} of {len(parts)} is not base64: make one with "
                                      "`openssl rand -base64 32`") from None
        return cls(tuple(keys))

    def sign(self, body: bytes) -> str:
        """The header value that proves ``body`` came from a holder of the first key."""
        key = self.keys[0]
        return f"{_SCHEME} {_key_id(key)} {hmac.digest(key, body, 'sha256').hex()}"

    def verify(self, body: bytes, signature: str | None) -> bool:
        """True when ``signature`` is one of these keys' over exactly ``body``."""
        if not signature:
            return False
        parts = signature.split(" ")
        if len(parts) != 3 or parts[0] != _SCHEME:
            return False
        _, key_id, mac = parts
        try:
            given = bytes.fromhex(mac)  # a header is anyone's text: not hex (or not ASCII) is simply not valid
        except ValueError:
            return False
        for key in self.keys:
            if _key_id(key) == key_id:
                return hmac.compare_digest(hmac.digest(key, body, "sha256"), given)
        return False
