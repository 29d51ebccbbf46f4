"""Object-storage settings for the cold tier: one description, handed to both pyarrow and Polars.

An archive root such as ``s3://audit/cold?endpoint=http://minio:9000&region=eu-1&path_style=true``
carries the non-secret options in its query string, so the jobs and the data API can pass it as one
string; credentials come separately (``archive_access_key_id`` / ``archive_secret_access_key``
settings, or the standard AWS variables and files when none are given), so they never end up in a
URL that is logged. The query string is stripped from every file location built from the root.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import pyarrow.fs as pafs

from storage.cold.errors import ArchiveError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
# Query keys we accept, with pyarrow's own spellings as aliases (its from_uri URLs keep working).
_ALIASES = {"endpoint": "endpoint", "endpoint_override": "endpoint", "endpoint_url": "endpoint",
            "region": "region", "path_style": "path_style", "force_virtual_addressing": "virtual_addressing",
            "scheme": "scheme"}
_SECRETS = {"access_key", "secret_key", "session_token", "access_key_id", "secret_access_key"}


@dataclass(frozen=True)
class ObjectStoreOptions:
    """Endpoint, region, addressing style and credentials of an S3-protocol store (AWS, MinIO, Ceph, R2)."""

    endpoint: str | None = None  # e.g. http://127.0.0.1:9000 or https://<account>.r2.cloudflarestorage.com
    region: str | None = None
    path_style: bool | None = None  # None: path style with a custom endpoint, virtual hosts on AWS
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None

    def merged(self, other: ObjectStoreOptions | None) -> ObjectStoreOptions:
        """These options, with every value ``other`` sets taking precedence."""
        if other is None:
            return self
        changes = {k: v for k, v in vars(other).items() if v is not None}
        return replace(self, **changes)

    @property
    def uses_path_style(self) -> bool:
        return self.path_style if self.path_style is not None else self.endpoint is not None

    @property
    def allow_http(self) -> bool:
        return bool(self.endpoint and self.endpoint.lower().startswith("http://"))

    def arrow_s3(self) -> pafs.S3FileSystem:
        """A pyarrow S3 filesystem speaking to this store."""
        kwargs: dict[str, Any] = {"force_virtual_addressing": not self.uses_path_style}
        if self.endpoint:
            parts = urlsplit(self.endpoint)
            kwargs["scheme"] = parts.scheme or "https"
            kwargs["endpoint_override"] = parts.netloc + parts.path.rstrip("/") if parts.netloc else self.endpoint
        if self.region:
            kwargs["region"] = self.region
        if self.access_key_id or self.secret_access_key:
            if not (self.access_key_id and self.secret_access_key):
                raise ArchiveError("only one of archive_access_key_id and archive_secret_access_key is set; "
                                   "set both, or neither to use the standard AWS credential chain")
            kwargs.update(access_key=self.access_key_id, secret_key=self.secret_access_key,
                          session_token=self.session_token)
        return pafs.S3FileSystem(**kwargs)

    def polars(self) -> dict[str, str]:
        """The same settings as Polars' (object_store's) ``storage_options``."""
        options: dict[str, str] = {}
        if self.endpoint:
            options["aws_endpoint_url"] = self.endpoint
        if self.allow_http:
            options["aws_allow_http"] = "true"
        if self.region:
            options["aws_region"] = self.region
        options["aws_virtual_hosted_style_request"] = "false" if self.uses_path_style else "true"
        if self.access_key_id:
            options["aws_access_key_id"] = self.access_key_id
        if self.secret_access_key:
            options["aws_secret_access_key"] = self.secret_access_key
        if self.session_token:
            options["aws_session_token"] = self.session_token
        return options

    def public(self) -> dict[str, str]:
        """What may be shown or logged (no credentials)."""
        shown = {"endpoint": self.endpoint, "region": self.region,
                 "path_style": None if self.path_style is None else str(self.path_style).lower()}
        return {k: v for k, v in shown.items() if v is not None}


def _flag(key: str, value: str) -> bool:
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ArchiveError(f"archive URL option {key}={value!r} is not a boolean; write true or false")


def split_url(url: str) -> tuple[str, ObjectStoreOptions]:
    """The URL without its query string, and the options the query string gave."""
    parts = urlsplit(url)
    if not parts.query:
        return url, ObjectStoreOptions()
    found: dict[str, Any] = {}
    scheme = None
    for raw_key, value in parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False):
        key = raw_key.lower()
        if key in _SECRETS:
            raise ArchiveError(f"the archive URL carries a credential ({raw_key}); remove it and set "
                               "AUDITWATCH_ARCHIVE_ACCESS_KEY_ID / AUDITWATCH_ARCHIVE_SECRET_ACCESS_KEY instead, "
                               "so that it is never logged")
        name = _ALIASES.get(key)
        if name is None:
            raise ArchiveError(f"unknown archive URL option {raw_key!r}; the options are endpoint, region, "
                               "path_style (e.g. s3://bucket/prefix?endpoint=http://127.0.0.1:9000&path_style=true)")
        if name == "path_style":
            found["path_style"] = _flag(raw_key, value)
        elif name == "virtual_addressing":
            found["path_style"] = not _flag(raw_key, value)
        elif name == "scheme":
            scheme = value
        else:
            found[name] = value
    endpoint = found.get("endpoint")
    if endpoint and "://" not in endpoint:
        found["endpoint"] = f"{scheme or 'https'}://{endpoint}"
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")), ObjectStoreOptions(**found)


def options_from(values: Mapping[str, Any] | ObjectStoreOptions | None) -> ObjectStoreOptions | None:
    """Options from a plain mapping (a job's keyword arguments), ignoring empty values."""
    if values is None or isinstance(values, ObjectStoreOptions):
        return values
    known = set(ObjectStoreOptions.__dataclass_fields__)
    unknown = set(values) - known
    if unknown:
        raise ArchiveError(f"unknown archive storage options {sorted(unknown)}; known: {sorted(known)}")
    return ObjectStoreOptions(**{k: v for k, v in values.items() if v not in (None, "")})
