"""The integrity signing key from settings: configured, or generated under the data directory."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auditwatch.settings import Settings
from storage.errors import SigningKeyError
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


def verification_keys(settings: Settings, extra: tuple[str, ...] = (), public_key_file: str | None = None
                      ) -> frozenset[bytes]:
    """Public keys whose checkpoints verify accepts; never reads nor creates the private key.

    ``public_key_file`` (else the signer's ``<key file>.pub``, when present), the configured trusted keys
    (rotated-out ones) and ``extra``. Raises SigningKeyError when there is none.
    """
    keys = set(checkpoints.public_from_base64(k) for k in (*settings.integrity_trusted_keys, *extra))
    if public_key_file:
        keys |= checkpoints.load_public(Path(public_key_file).expanduser())
    else:
        default = checkpoints.public_path(key_path(settings))
        if default.exists():
            keys |= checkpoints.load_public(default)
    if not keys:
        raise SigningKeyError(
            "no public key to check the signed checkpoints with: pass --public-key FILE (the `.pub` file "
            f"written beside the signing key, here {checkpoints.public_path(key_path(settings))}, or by "
            "`auditwatch integrity keygen --out`), --trust BASE64, or set AUDITWATCH_INTEGRITY_TRUSTED_KEYS")
    return frozenset(keys)


def trusted_keys(settings: Settings) -> frozenset[bytes]:
    """The rotated-out public keys the signer still accepts on the checkpoints it continues."""
    return frozenset(checkpoints.public_from_base64(k) for k in settings.integrity_trusted_keys)


def checkpoint_job_kwargs(settings: Settings) -> dict:
    """The worker's arguments for storage.timescale.sealing:checkpoint_job."""
    return {"key": signing_key(settings), "trusted": trusted_keys(settings)}
