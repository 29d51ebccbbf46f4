"""R8: country and AS organisation from the source IP, offline."""

from __future__ import annotations

from pathlib import Path

import maxminddb
import pytest

from ingest.enrich import Geoip2FastLookup, MaxMindLookup, NoGeo, geo_lookup, preload


@pytest.fixture(scope="module")
def bundled() -> Geoip2FastLookup:
    return Geoip2FastLookup()


# -- the bundled geoip2fast database ----------------------------------------------------------------


@pytest.mark.parametrize(("ip", "country", "asn_part"), [
    ("8.8.8.8", "US", "GOOGLE"),
    ("8.8.4.4", "US", "GOOGLE"),
    ("2001:4860:4860::8888", "US", "GOOGLE"),
    ("1.1.1.1", "AU", "CLOUDFLARE"),
])
def test_bundled_database_gives_country_and_asn(bundled, ip, country, asn_part):
    found_country, asn = bundled.lookup(ip)
    assert found_country == country
    assert asn is not None and asn_part in asn.upper()


def test_bundled_database_knows_other_countries(bundled):
    countries = {bundled.lookup(ip)[0] for ip in ("8.8.8.8", "1.1.1.1", "2606:4700:4700::1111")}
    assert "US" in countries and "AU" in countries
    assert all(c is None or (len(c) == 2 and c.isupper()) for c in countries)


def test_the_direct_table_read_gives_what_the_librarys_lookup_gives(bundled):
    # The direct read of geoip2fast's tables (no result object, no CIDR strings) against the library's own
    # lookup, over random addresses of the whole IPv4 space, the edges of its ranges, and IPv6.
    import ipaddress
    import random

    from ingest.enrich import direct_lookup

    db = bundled.load()
    direct = direct_lookup(db)
    rng = random.Random(8)
    addresses = [str(ipaddress.IPv4Address(rng.getrandbits(32))) for _ in range(30_000)]
    addresses += ["0.0.0.0", "0.0.0.1", "255.255.255.255", "224.0.0.1", "100.64.0.1", "1.0.0.0", "223.255.255.255"]
    addresses += [str(ipaddress.IPv6Address(rng.getrandbits(128))) for _ in range(3_000)]
    addresses += [str(ipaddress.IPv6Address((0x2001_0000 + rng.getrandbits(16)) << 96 | rng.getrandbits(96)))
                  for _ in range(3_000)]  # inside 2000::/3, where most networks are
    addresses += ["::", "::1", "2001:4860:4860::8888", "fe80::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"]
    different = [(ip, direct(ip), bundled._library_lookup(db, ip)) for ip in addresses
                 if direct(ip) != bundled._library_lookup(db, ip)]
    assert different == []
    found = [direct(ip) for ip in addresses]
    assert sum(country is not None for country, _ in found) > 20_000  # most of the space is someone's
    assert sum(asn is not None for _, asn in found) > 15_000


@pytest.mark.parametrize("ip", [
    "10.0.0.1", "172.16.5.4", "192.168.1.1", "127.0.0.1", "169.254.1.1", "100.64.0.1", "0.0.0.0",
    "255.255.255.255", "::1", "fe80::1", "fc00::1", "fd12:3456:789a::1", "2001:db8::1", "192.0.2.1",
])
def test_private_and_reserved_addresses_have_no_location(bundled, ip):
    assert bundled.lookup(ip) == (None, None)


def test_ipv4_mapped_ipv6_is_looked_up_as_ipv4(bundled):
    # What a dual-stack server reports for an IPv4 client, in the form validation normalises to.
    assert bundled.lookup("::ffff:808:808") == bundled.lookup("8.8.8.8")
    assert bundled.lookup("::ffff:8.8.8.8")[0] == "US"
    assert bundled.lookup("::ffff:10.0.0.1") == (None, None)


def test_bundled_lookups_are_cached(bundled):
    first = bundled.lookup("8.8.8.8")
    assert bundled.lookup("8.8.8.8") is first
    assert bundled.lookup.cache_info().hits >= 1


def test_unparseable_input_gives_nothing_rather_than_failing(bundled):
    assert bundled.lookup("not an ip") == (None, None)


# -- choosing a lookup ---------------------------------------------------------------------------------------


def test_geo_lookup_disabled_is_nogeo():
    geo = geo_lookup(None, enabled=False)
    assert isinstance(geo, NoGeo)
    assert geo.lookup("8.8.8.8") == (None, None)


def test_geo_lookup_disabled_wins_over_a_configured_file(tmp_path):
    assert isinstance(geo_lookup(str(tmp_path / "missing.mmdb"), enabled=False), NoGeo)


def test_geo_lookup_defaults_to_the_bundled_database():
    assert isinstance(geo_lookup(None), Geoip2FastLookup)
    assert isinstance(geo_lookup(""), Geoip2FastLookup)


# -- MaxMind .mmdb files (built here with mmdb-writer) -----------------------------------------------------------


def _write(path: Path, database_type: str, networks: dict[str, dict]) -> Path:
    mmdb_writer = pytest.importorskip("mmdb_writer")  # the dev extra brings it
    netaddr = pytest.importorskip("netaddr")
    writer = mmdb_writer.MMDBWriter(ip_version=6, database_type=database_type, ipv4_compatible=True)
    for cidr, record in networks.items():
        writer.insert_network(netaddr.IPSet([cidr]), record)
    writer.to_db_file(str(path))
    return path


@pytest.fixture(scope="module")
def mmdb_files(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("mmdb")
    country = _write(root / "country.mmdb", "GeoLite2-Country", {
        "203.0.113.0/24": {"country": {"iso_code": "NL"}, "registered_country": {"iso_code": "DE"}},
        "198.51.100.0/24": {"registered_country": {"iso_code": "FR"}},  # only the registration is known
        "2001:db8:1::/48": {"country": {"iso_code": "JP"}},
        "192.0.2.0/24": {"continent": {"code": "EU"}},  # a record without any country
    })
    asn = _write(root / "asn.mmdb", "GeoLite2-ASN", {
        "203.0.113.0/24": {"autonomous_system_number": 64500, "autonomous_system_organization": "Example Net"},
        "2001:db8:1::/48": {"autonomous_system_number": 64501, "autonomous_system_organization": "Sample Six"},
    })
    assert maxminddb.open_database(str(country)).metadata().database_type == "GeoLite2-Country"
    return country, asn


def test_maxmind_country_and_asn(mmdb_files):
    geo = MaxMindLookup(*mmdb_files)
    assert geo.lookup("203.0.113.7") == ("NL", "Example Net")
    assert geo.lookup("2001:db8:1::42") == ("JP", "Sample Six")


def test_maxmind_falls_back_to_the_registered_country(mmdb_files):
    geo = MaxMindLookup(*mmdb_files)
    assert geo.lookup("198.51.100.1") == ("FR", None)


@pytest.mark.parametrize("ip", ["192.0.2.1", "8.8.8.8", "10.0.0.1", "2001:db8:2::1", "::1"])
def test_maxmind_unknown_addresses_have_no_location(mmdb_files, ip):
    assert MaxMindLookup(*mmdb_files).lookup(ip) == (None, None)


def test_maxmind_without_an_asn_file(mmdb_files):
    geo = MaxMindLookup(mmdb_files[0])
    assert geo.lookup("203.0.113.7") == ("NL", None)


def test_maxmind_ipv4_mapped_ipv6(mmdb_files):
    assert MaxMindLookup(*mmdb_files).lookup("::ffff:cb00:7107") == ("NL", "Example Net")


def test_geo_lookup_uses_configured_mmdb_files(mmdb_files):
    country, asn = mmdb_files
    geo = geo_lookup(str(country), str(asn))
    assert isinstance(geo, MaxMindLookup)
    assert geo.lookup("203.0.113.7") == ("NL", "Example Net")
    assert geo_lookup(str(country)).lookup("203.0.113.7") == ("NL", None)


def test_geo_lookup_with_a_missing_file_fails_loudly(tmp_path):
    with pytest.raises(FileNotFoundError):
        geo_lookup(str(tmp_path / "missing.mmdb"))


def test_preload_loads_the_bundled_database_once(bundled):
    geo = Geoip2FastLookup()
    preload(geo)
    loaded = geo.load()
    preload(geo)
    assert geo.load() is loaded
    assert geo.lookup("81.2.69.160") == bundled.lookup("81.2.69.160")
    preload(NoGeo())  # nothing to load
