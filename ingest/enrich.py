"""R8: country and ASN from the source IP, offline.

The default database ships inside the ``geoip2fast`` package (country and ASN, IPv4 and
IPv6); a MaxMind ``.mmdb`` file (GeoLite2/GeoIP2 Country or City, optionally an ASN file)
replaces it when configured.
"""

from __future__ import annotations

import functools
import socket
import threading
from pathlib import Path
from typing import Protocol

_MAPPED_PREFIX = bytes(10) + b"\xff\xff"


def _unmapped(ip: str) -> str:
    """A dual-stack server reports IPv4 clients as ::ffff:a.b.c.d; the databases file them under IPv4."""
    if ":" not in ip:
        return ip
    try:
        packed = socket.inet_pton(socket.AF_INET6, ip)
    except OSError:
        return ip
    return socket.inet_ntop(socket.AF_INET, packed[12:]) if packed[:12] == _MAPPED_PREFIX else ip


class GeoLookup(Protocol):
    def lookup(self, ip: str) -> tuple[str | None, str | None]:
        """(ISO country code, AS organisation) for an address; None where unknown."""
        ...


class NoGeo:
    def lookup(self, ip: str) -> tuple[str | None, str | None]:
        return None, None


class Geoip2FastLookup:
    """The offline database that the geoip2fast package ships (loaded once, on first use)."""

    def __init__(self) -> None:
        self._db = None
        self._lock = threading.Lock()
        self.lookup = functools.lru_cache(maxsize=65536)(self._lookup)  # type: ignore[method-assign]

    def load(self):
        """The database, loaded now if it is not yet (a server worker loads it before freezing its start-up heap)."""
        with self._lock:
            if self._db is None:
                from geoip2fast import GeoIP2Fast

                self._db = GeoIP2Fast(geoip2fast_data_file="geoip2fast-asn-ipv6.dat.gz", verbose=False)
        return self._db

    def _lookup(self, ip: str) -> tuple[str | None, str | None]:
        result = (self._db or self.load()).lookup(_unmapped(ip))
        if result.is_private or not result.country_code or result.country_code.startswith("--"):
            return None, None
        return result.country_code, (result.asn_name or None)


class MaxMindLookup:
    """A MaxMind ``.mmdb`` country/city database, with an optional ASN database beside it."""

    def __init__(self, country_db: Path, asn_db: Path | None = None) -> None:
        import maxminddb

        self._country = maxminddb.open_database(str(country_db))
        self._asn = maxminddb.open_database(str(asn_db)) if asn_db else None
        self.lookup = functools.lru_cache(maxsize=65536)(self._lookup)  # type: ignore[method-assign]

    def _lookup(self, ip: str) -> tuple[str | None, str | None]:
        ip = _unmapped(ip)
        record = self._country.get(ip) or {}
        country = (record.get("country") or record.get("registered_country") or {}).get("iso_code")
        asn = None
        if self._asn is not None:
            asn_record = self._asn.get(ip) or {}
            asn = asn_record.get("autonomous_system_organization")
        return country, asn


def preload(geo: GeoLookup) -> None:
    """Load a lazily loaded database now instead of at the first event."""
    if isinstance(geo, Geoip2FastLookup):
        geo.load()


def geo_lookup(mmdb: str | None, asn_mmdb: str | None = None, *, enabled: bool = True) -> GeoLookup:
    """The lookup the settings ask for."""
    if not enabled:
        return NoGeo()
    if mmdb:
        return MaxMindLookup(Path(mmdb), Path(asn_mmdb) if asn_mmdb else None)
    return Geoip2FastLookup()
