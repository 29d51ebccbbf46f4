"""Layered settings: defaults → TOML file → AUDITWATCH_* environment → explicit overrides.

Loaded once at the edge (CLI, server factory, tests) and passed down as arguments.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_PREFIX = "AUDITWATCH_"


class SettingsError(ValueError):
    """A setting that cannot be used as given."""


@dataclass(frozen=True)
class Settings:
    # Where the embedded database, keys and logs live.
    data_dir: Path = Path(".data")
    # An existing TimescaleDB server; empty means the embedded, project-local one.
    database_url: str = ""
    db_port: int = 54329
    chunk_interval: str = "1 day"
    pool_min: int = 2
    pool_max: int = 16

    # HTTP server
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 2
    threads: int = 16
    max_body_bytes: int = 32 * 1024 * 1024
    max_batch: int = 10_000
    public_url: str = ""

    # Ingest rules
    clock_skew_seconds: int = 300  # R2
    unknown_users: str = "reject"  # R4: reject | register
    rate_limit_per_minute: int = 1000  # R6; 0 disables
    max_metadata_bytes: int = 10 * 1024  # R7
    geoip: bool = True  # R8
    geoip_mmdb: str = ""  # a MaxMind country/city .mmdb instead of the bundled database
    geoip_asn_mmdb: str = ""
    redact_keys: tuple[str, ...] = field(default=())  # R9: extra sensitive keys on top of the defaults
    group_commit_threads: int = 2
    group_commit_max_events: int = 5000
    key_cache_seconds: float = 5.0

    # Query API
    max_query_limit: int = 1000
    max_export_rows: int = 5_000_000

    # Dashboard (Dash at /dashboard/): the session cookie's signing secret (empty: generated once into
    # data_dir/dashboard-secret-key), how long a sign-in lasts, and whether to serve the dashboard at all.
    dashboard: bool = True
    dashboard_secret_key: str = ""
    dashboard_session_hours: float = 12.0
    dashboard_alerts_module: str = "alerts.actions"  # the module behind the alert feed (its actions contract)

    @property
    def embedded(self) -> bool:
        return not self.database_url

    def resolved_data_dir(self) -> Path:
        return self.data_dir.expanduser().resolve()

    def replace(self, **changes: Any) -> Settings:
        return load(base=self, overrides=changes, environ={}, config_file=None)


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}
_TYPES = typing.get_type_hints(Settings)


def _coerce(name: str, value: Any) -> Any:
    kind = _TYPES[name]
    try:
        if kind is Path:
            return Path(value)
        if kind is bool:
            if isinstance(value, bool):
                return value
            lowered = str(value).strip().lower()
            if lowered in {"1", "true", "yes", "on"}:
                return True
            if lowered in {"0", "false", "no", "off", ""}:
                return False
            raise ValueError(value)
        if kind is int:
            return int(value)
        if kind is float:
            return float(value)
        if kind == tuple[str, ...]:
            if isinstance(value, str):
                return tuple(v.strip() for v in value.split(",") if v.strip())
            return tuple(str(v) for v in value)
        return str(value)
    except (TypeError, ValueError):
        raise SettingsError(f"setting `{name}` = {value!r} is not a valid {getattr(kind, '__name__', kind)}") from None


def _validate(settings: Settings) -> Settings:
    if settings.unknown_users not in {"reject", "register"}:
        raise SettingsError("`unknown_users` must be `reject` or `register`")
    if settings.max_batch < 1 or settings.max_batch > 100_000:
        raise SettingsError("`max_batch` must be between 1 and 100000")
    if settings.database_url and not settings.database_url.startswith(("postgresql://", "postgres://")):
        raise SettingsError("`database_url` must be a postgresql:// URL (or empty for the embedded database)")
    return settings


def load(*, base: Settings | None = None, config_file: Path | str | None = "auto",
         environ: typing.Mapping[str, str] | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Build settings from each layer in turn; later layers win."""
    values: dict[str, Any] = dataclasses.asdict(base) if base else {}
    environ = os.environ if environ is None else environ
    if config_file == "auto":
        config_file = environ.get(f"{ENV_PREFIX}CONFIG") or ("auditwatch.toml" if Path("auditwatch.toml").exists() else None)
    if config_file:
        path = Path(config_file)
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise SettingsError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"config file {path} is not valid TOML: {exc}") from None
        for key, value in data.items():
            if key not in _FIELDS:
                raise SettingsError(f"config file {path}: unknown setting `{key}`")
            values[key] = _coerce(key, value)
    for name in _FIELDS:
        env_value = environ.get(ENV_PREFIX + name.upper())
        if env_value is not None:
            values[name] = _coerce(name, env_value)
    for key, value in (overrides or {}).items():
        if key not in _FIELDS:
            raise SettingsError(f"unknown setting `{key}`")
        values[key] = _coerce(key, value)
    return _validate(Settings(**values))
