"""R11: PHI never reaches storage in clear (HIPAA 164.312): tagged fields are tokenised or redacted at ingest.

Tags (settings ``phi_event_types``, ``phi_resources``, ``phi_metadata_keys``):

* an event type: every metadata value of its events (but the sender under ``_ingest``) and its resource_id;
* a resource pattern (``fnmatch``, e.g. ``patients/*``): the resource_id of events whose resource matches;
* a metadata key (matched like R9's keys, case and ``-``/``_`` ignored, but whole names): the values under it,
  at any depth.

``tokenise`` (the default) replaces a value with ``phi_`` and 32 letters: an HMAC-SHA256 of the value under a
key kept outside the database, so one value always gives one token (joins, counts and detectors still work) and
the token tells nothing without the key. The value itself goes to the vault (``phi_vault``), encrypted with
AES-GCM under a second key derived from the same secret, the token bound as associated data; it comes back
only through the audited reveal (``reveal``). ``redact`` replaces values with ``[REDACTED:phi]`` and keeps
nothing. The event's user_id is never tokenised: it is the account the event is attributed to (R4).
"""

from __future__ import annotations

import base64
import fnmatch
import functools
import hashlib
import hmac
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ingest.validate import INGEST_KEY
from storage.events import EventRecord

PHI_REDACTED = "[REDACTED:phi]"
TOKEN_PREFIX = "phi_"
MODES = ("tokenise", "redact")
_LETTERS = str.maketrans("0123456789abcdef", "abcdefghijklmnop")  # no digits: R9's card masking never fires


class PhiKeyError(ValueError):
    """The PHI key is missing, malformed or unsafe; the message says how to fix it."""


def _norm(key: str) -> str:
    return key.lower().replace("-", "").replace("_", "")


class PhiKey:
    """The secret behind tokens (HMAC) and the vault (AES-GCM), two keys derived from one 32-byte secret."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) != 32:
            raise PhiKeyError("the PHI key must be 32 bytes (base64 of 32 random bytes: `openssl rand -base64 32`)")
        self._token_key = hmac.new(secret, b"auditwatch phi token", hashlib.sha256).digest()
        self._aead = AESGCM(hmac.new(secret, b"auditwatch phi vault", hashlib.sha256).digest())

    @classmethod
    def from_base64(cls, text: str) -> PhiKey:
        try:
            return cls(base64.b64decode(text.strip(), validate=True))
        except ValueError:
            raise PhiKeyError("the PHI key is not base64 of 32 bytes; make one with `openssl rand -base64 32`") \
                from None

    @classmethod
    def load_or_create(cls, path: Path) -> PhiKey:
        """The key in ``path`` (base64), created with mode 0600 when absent (like the integrity signing key)."""
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(base64.b64encode(os.urandom(32)).decode() + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, path)  # two processes starting at once end up with the same key
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise PhiKeyError(f"the PHI key {path} is readable by others (mode {mode:o}); run `chmod 600 {path}`")
        return cls.from_base64(path.read_text())

    def token(self, plaintext: bytes) -> str:
        digest = hmac.digest(self._token_key, plaintext, "sha256").hex()[:32]
        return TOKEN_PREFIX + digest.translate(_LETTERS)

    def seal(self, token: str, plaintext: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, plaintext, token.encode())

    def open(self, token: str, sealed: bytes) -> bytes:
        try:
            return self._aead.decrypt(sealed[:12], sealed[12:], token.encode())
        except InvalidTag:
            raise PhiKeyError(f"the vault entry of {token} does not open with this PHI key: the key changed "
                              "(set the phi_key that tokenised it) or the entry was altered") from None


def is_token(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 36 and value.startswith(TOKEN_PREFIX)


# (token, sealed value) pairs new to the vault -> stored (storage.timescale.phi_vault.store)
VaultSink = Callable[[Sequence[tuple[str, bytes]]], None]


@dataclass(frozen=True)
class PhiTags:
    event_types: frozenset[str] = frozenset()
    resources: tuple[str, ...] = ()
    metadata_keys: frozenset[str] = frozenset()  # normalised

    @classmethod
    def of(cls, event_types: Iterable[str] = (), resources: Iterable[str] = (),
           metadata_keys: Iterable[str] = ()) -> PhiTags:
        return cls(frozenset(event_types), tuple(resources), frozenset(_norm(k) for k in metadata_keys))

    def __bool__(self) -> bool:
        return bool(self.event_types or self.resources or self.metadata_keys)


class PhiRule:
    """R11 over finished records: tagged values tokenised (their sealed values sent to the vault) or redacted."""

    def __init__(self, tags: PhiTags, *, mode: str = "tokenise", key: PhiKey | None = None,
                 vault: VaultSink | None = None) -> None:
        if mode not in MODES:
            raise PhiKeyError(f"phi_mode must be one of {', '.join(MODES)}, not {mode!r}")
        if mode == "tokenise" and (key is None or vault is None):
            raise PhiKeyError("tokenising PHI needs a key and a vault (or set phi_mode = redact)")
        self.tags = tags
        self.mode = mode
        self._key = key
        self._vault = vault
        self._known: set[str] = set()  # tokens this process already put in the vault
        # Keys and values repeat across events (the same patients, the same metadata keys): decide each once.
        self._tagged_key = functools.lru_cache(maxsize=16384)(lambda k: _norm(k) in tags.metadata_keys)
        self._tagged_resource = functools.lru_cache(maxsize=16384)(
            lambda r: any(fnmatch.fnmatchcase(r, p) for p in tags.resources))
        self._token = functools.lru_cache(maxsize=65536)(key.token) if key is not None else None

    def apply(self, records: Sequence[EventRecord]) -> list[EventRecord]:
        """The records with their tagged values replaced; new tokens are in the vault when this returns."""
        fresh: dict[str, bytes] = {}
        out = [self._protect(r, fresh) for r in records]
        if fresh:
            assert self._vault is not None and self._key is not None
            self._vault([(t, self._key.seal(t, p)) for t, p in fresh.items()])
            if len(self._known) > 1_000_000:
                self._known.clear()
            self._known.update(fresh)
        return out

    def _replace(self, value: Any, fresh: dict[str, bytes]) -> Any:
        if value is None or isinstance(value, bool) or is_token(value) or value == PHI_REDACTED:
            return value
        if self.mode == "redact":
            return PHI_REDACTED
        assert self._token is not None
        plaintext = orjson.dumps(value)
        token = self._token(plaintext)
        if token not in self._known:
            fresh[token] = plaintext
        return token

    def _all(self, value: Any, fresh: dict[str, bytes]) -> Any:
        if isinstance(value, dict):
            return {k: self._all(v, fresh) for k, v in value.items()}
        if isinstance(value, list):
            return [self._all(v, fresh) for v in value]
        return self._replace(value, fresh)

    def _keys(self, value: Any, fresh: dict[str, bytes]) -> Any:
        """Values under tagged keys replaced; an untouched container is returned as itself (no copy)."""
        if isinstance(value, dict):
            out = None
            for k, v in value.items():
                if self._tagged_key(k):
                    new = self._all(v, fresh)
                elif isinstance(v, dict | list):
                    new = self._keys(v, fresh)
                else:
                    continue
                if new is not v:
                    out = out if out is not None else dict(value)
                    out[k] = new
            return value if out is None else out
        if isinstance(value, list):
            items = [self._keys(v, fresh) if isinstance(v, dict | list) else v for v in value]
            return value if all(a is b for a, b in zip(items, value, strict=True)) else items
        return value

    def _protect(self, record: EventRecord, fresh: dict[str, bytes]) -> EventRecord:
        whole = record.event_type in self.tags.event_types
        resource = record.resource_id
        if resource and (whole or self._tagged_resource(resource)):
            resource = self._replace(resource, fresh)
        metadata = record.metadata
        if whole:
            metadata = {k: (v if k == INGEST_KEY else self._all(v, fresh)) for k, v in metadata.items()}
        elif self.tags.metadata_keys:
            metadata = self._keys(metadata, fresh)
        if resource is record.resource_id and metadata is record.metadata:
            return record
        return replace(record, resource_id=resource, metadata=metadata)
