"""Signed checkpoints of the chain head (Ed25519), each naming the one before, like CloudTrail digests.

A checkpoint pins (chain position, chain hash, events sealed, time); exported off the box, it is
what proves the newest batches were not cut off and re-chained.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from storage.errors import SigningKeyError

log = logging.getLogger(__name__)

CHECKPOINT_VERSION = 2  # 2: also signs the removal chain's head (1: the batch chain alone)
NO_PREVIOUS = "0" * 64
_NO_REMOVALS = (0, bytes(32))


@dataclass(frozen=True)
class Checkpoint:
    """One signed statement about the chain head; ``payload`` is exactly the signed text."""

    chain_pos: int
    chain_hash: bytes
    events: int
    created_at: datetime
    public_key: bytes
    payload: str
    signature: bytes

    @property
    def digest(self) -> str:
        """What the next checkpoint names as its ``previous``."""
        return hashlib.sha256(self.payload.encode() + self.signature).hexdigest()

    @property
    def previous(self) -> str:
        return orjson.loads(self.payload)["previous"]

    @property
    def removals(self) -> tuple[int, bytes] | None:
        """The signed head of the removal chain (position, hash); None for a version 1 checkpoint."""
        body = orjson.loads(self.payload)
        if "removals_pos" not in body:
            return None
        return int(body["removals_pos"]), bytes.fromhex(body["removals_hash"])

    def to_json_line(self) -> bytes:
        """One line of the export: the payload verbatim (a string), so re-serialising cannot alter it."""
        return orjson.dumps({
            "payload": self.payload,
            "signature": base64.b64encode(self.signature).decode(),
            "public_key": base64.b64encode(self.public_key).decode(),
        }) + b"\n"


def public_bytes(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def sign(key: Ed25519PrivateKey, *, chain_pos: int, chain_hash: bytes, events: int, created_at: datetime,
         previous: Checkpoint | None, removals: tuple[int, bytes] = _NO_REMOVALS) -> Checkpoint:
    """A checkpoint of the batch chain's head and the removal chain's, chained to ``previous``."""
    pub = public_bytes(key)
    payload = orjson.dumps({
        "removals_pos": removals[0],
        "removals_hash": removals[1].hex(),
        "version": CHECKPOINT_VERSION,
        "chain_pos": chain_pos,
        "chain_hash": chain_hash.hex(),
        "events": events,
        "created_at": created_at.isoformat(timespec="microseconds"),
        "previous": previous.digest if previous else NO_PREVIOUS,
        "public_key": pub.hex(),
    }, option=orjson.OPT_SORT_KEYS).decode()
    return Checkpoint(chain_pos, chain_hash, events, created_at, pub, payload, key.sign(payload.encode()))


def check(cp: Checkpoint, trusted: frozenset[bytes]) -> str | None:
    """None if the checkpoint is signed by a trusted key and its fields match its payload; else why not."""
    if cp.public_key not in trusted:
        return f"signed by an untrusted key {cp.public_key.hex()[:16]}..."
    try:
        Ed25519PublicKey.from_public_bytes(cp.public_key).verify(cp.signature, cp.payload.encode())
    except InvalidSignature:
        return "the signature does not match the payload"
    body = orjson.loads(cp.payload)
    if (body.get("chain_pos"), body.get("chain_hash"), body.get("events"), body.get("public_key")) != (
            cp.chain_pos, cp.chain_hash.hex(), cp.events, cp.public_key.hex()):
        return "the stored fields differ from the signed payload"
    return None


def from_json_line(line: bytes | str) -> Checkpoint:
    """A checkpoint from an exported line (fields taken from the signed payload)."""
    try:
        obj = orjson.loads(line)
        body = orjson.loads(obj["payload"])
        return Checkpoint(int(body["chain_pos"]), bytes.fromhex(body["chain_hash"]), int(body["events"]),
                          datetime.fromisoformat(body["created_at"]), base64.b64decode(obj["public_key"]),
                          obj["payload"], base64.b64decode(obj["signature"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise SigningKeyError(f"not an exported checkpoint line ({exc}); export them with "
                              "`auditwatch integrity export-checkpoints FILE`") from None


# -- keys ---------------------------------------------------------------------------------------------

def generate() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def to_base64(key: Ed25519PrivateKey) -> str:
    """The 32-byte private seed in base64 (what AUDITWATCH_INTEGRITY_SIGNING_KEY takes)."""
    return base64.b64encode(key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                              serialization.NoEncryption())).decode()


def from_base64(text: str) -> Ed25519PrivateKey:
    try:
        seed = base64.b64decode(text.strip(), validate=True)
        return Ed25519PrivateKey.from_private_bytes(seed)
    except ValueError:
        raise SigningKeyError("the integrity signing key is not base64 of a 32-byte Ed25519 seed; "
                              "make one with `auditwatch integrity keygen`") from None


def public_from_base64(text: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
        Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise SigningKeyError(f"{text!r} is not base64 of a 32-byte Ed25519 public key "
                              "(`auditwatch integrity keygen` prints one)") from None
    return raw


def public_path(private: Path) -> Path:
    """Where the public half of the key in ``private`` is kept for verifiers: ``<private>.pub``."""
    return private.with_name(private.name + ".pub")


def write_public(path: Path, key: Ed25519PrivateKey | Ed25519PublicKey) -> None:
    """Write the base64 public key (what `verify --public-key` reads), whole or not at all."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(base64.b64encode(public_bytes(key)).decode() + "\n")
    os.replace(tmp, path)


def load_public(path: Path) -> frozenset[bytes]:
    """The public keys in ``path``: one base64 key a line, as `integrity keygen` and the signer write them."""
    try:
        lines = [line for line in path.read_text().splitlines() if line.strip()]
    except OSError as exc:
        raise SigningKeyError(f"cannot read the public key file {path}: {exc}") from None
    if not lines:
        raise SigningKeyError(f"the public key file {path} is empty; `auditwatch integrity keygen` prints a key")
    return frozenset(public_from_base64(line) for line in lines)


def load_or_create(path: Path) -> tuple[Ed25519PrivateKey, bool]:
    """The key in ``path`` (base64 seed), created with mode 0600 if absent; True when created now.

    Written to a private temporary file and hard-linked into place, so two processes starting
    at once end up with the same complete key.
    """
    if path.exists():
        key = load(path)
        if not public_path(path).exists():
            write_public(public_path(path), key)
        return key, False
    path.parent.mkdir(parents=True, exist_ok=True)
    key = generate()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(to_base64(key) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    try:
        os.link(tmp, path)
    except FileExistsError:
        return load(path), False
    finally:
        tmp.unlink()
    write_public(public_path(path), key)
    log.warning("generated a new Ed25519 integrity signing key at %s (mode 0600); back it up, and keep "
                "its public key (%s) off this machine to check exported checkpoints", path, public_path(path))
    return key, True


def load(path: Path) -> Ed25519PrivateKey:
    try:
        mode = path.stat().st_mode & 0o777
        text = path.read_text()
    except OSError as exc:
        raise SigningKeyError(f"cannot read the integrity signing key {path}: {exc}") from None
    if mode & 0o077:
        raise SigningKeyError(f"the integrity signing key {path} is readable by others (mode {mode:o}); "
                              f"run `chmod 600 {path}`")
    if not text.strip():
        raise SigningKeyError(f"the integrity signing key file {path} is empty; delete it to have a new one "
                              "generated, or restore it from backup")
    return from_base64(text)
