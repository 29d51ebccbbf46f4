"""The integrity signing key from settings: configured, or generated under the data directory."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auditwatch.settings import Settings
from storage.integrity import checkpoints


def key_path(settings: Settings) -> Path:
    if settings.integrity_signing_key_file:
        return Path(settings.integrity_signing_key_file).expanduser()
    return settings.resolved_data_dir() / "integrity" / "signing.key"


def signing_key(settings: Settings) -> Ed25519PrivateKey:
    """The configured key; with none configured, the project-local one (created, 0600, on first use)."""
    if settings.integrity_signing_key:
        return checkpoints.from_base64(settings.integrity_signing_key)
    key, _created = checkpoints.load_or_create(key_path(settings))
    return key


def trusted_keys(settings: Settings, extra: tuple[str, ...] = ()) -> frozenset[bytes]:
    """Public keys whose checkpoints verify accepts: the signing key's and any rotated-out ones."""
    keys = {checkpoints.public_bytes(signing_key(settings))}
    keys.update(checkpoints.public_from_base64(k) for k in (*settings.integrity_trusted_keys, *extra))
    return frozenset(keys)


def checkpoint_job_kwargs(settings: Settings) -> dict:
    """The worker's arguments for storage.timescale.sealing:checkpoint_job."""
    return {"key": signing_key(settings)}
