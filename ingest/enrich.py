"""R8: country and ASN from the source IP, offline.

The default database ships inside the ``geoip2fast`` package (country and ASN, IPv4 and
IPv6); a MaxMind ``.mmdb`` file (GeoLite2/GeoIP2 Country or City, optionally an ASN file)
replaces it when configured.
"""

from __future__ import annotations

import bisect
import functools
import socket
import threading
from collections.abc import Callable
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

                db = GeoIP2Fast(geoip2fast_data_file="geoip2fast-asn-ipv6.dat.gz", verbose=False)
                self._direct = direct_lookup(db)
                self._db = db
        return self._db

    def _lookup(self, ip: str) -> tuple[str | None, str | None]:
        db = self._db or self.load()
        ip = _unmapped(ip)
        try:
            return self._direct(ip)
        except Exception:  # noqa: BLE001 - anything the direct read does not expect: the library's own lookup
            return self._library_lookup(db, ip)

    @staticmethod
    def _library_lookup(db, ip: str) -> tuple[str | None, str | None]:
        result = db.lookup(ip)
        if result.is_private or not result.country_code or result.country_code.startswith("--"):
            return None, None
        return result.country_code, (result.asn_name or None)


def direct_lookup(db) -> Callable[[str], tuple[str | None, str | None]]:
    """``GeoIP2Fast.lookup`` for what R8 keeps (country, AS name), read from the same in-memory tables by the same
    steps, without the result object, the timer and the two CIDR strings it builds for every call: about half of
    its cost, paid once for each address new to the cache (a batch from many addresses misses often).
    ``tests/ingest/test_enrich.py`` holds it equal to the library's lookup; any surprise falls back to it."""
    from geoip2fast import geoip2fast as tables

    index, first_ips, netlens = tables.mainIndex, tables.mainListFirstIP, tables.mainListNetlength
    country_ids, countries = tables.mainListIDCountryCodes, tables.mainListNamesCountry
    v4_sizes, v6_sizes, max_v4 = tables.numIPsv4, tables.numIPsv6, tables.MAX_IPv4
    asn_index, asn_first_ips, asn_netlens = tables.mainIndexASN, tables.mainListFirstIPASN, tables.mainListNetlengthASN
    asn_ids, asn_names = tables.mainListIDASN, tables.mainListNamesASN
    asn_sizes = v6_sizes if db.ipv6 else v4_sizes  # the library's rule: by the database's kind, not the address's
    with_asn = db.asn is not False
    right = bisect.bisect_right
    inet_aton, inet_pton, v6 = socket.inet_aton, socket.inet_pton, socket.AF_INET6

    def lookup(ip: str) -> tuple[str | None, str | None]:
        packed = inet_pton(v6, ip) if ":" in ip else inet_aton(ip)
        iplong = int.from_bytes(packed, "big")
        root = right(index, iplong) - 1
        chunk = right(first_ips[root], iplong) - 1
        size = (v4_sizes if iplong <= max_v4 else v6_sizes)[netlens[root][chunk]]
        if iplong > first_ips[root][chunk] + size - 1:
            return None, None  # no network holds it
        code_id = country_ids[root][chunk]
        code = countries[code_id].split(":")[0]
        if code_id < 16 or not code or code.startswith("--"):
            return None, None  # private, reserved, or unknown
        if not with_asn:
            return code, None
        root = right(asn_index, iplong) - 1
        chunk = right(asn_first_ips[root], iplong) - 1
        if iplong > asn_first_ips[root][chunk] + asn_sizes[asn_netlens[root][chunk]] - 1:
            return code, None
        return code, asn_names[asn_ids[root][chunk]] or None

    return lookup


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
