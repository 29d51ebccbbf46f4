"""The least distance between two countries: a lower bound, so only a move no airliner could make is impossible."""

from __future__ import annotations

import pytest

from analytics import geo


@pytest.mark.parametrize("a,b", [("US", "CA"), ("US", "MX"), ("DE", "NL"), ("FR", "GB"), ("GB", "IE"), ("ES", "PT")])
def test_neighbours_and_short_hops_are_no_distance_at_all(a, b):
    assert geo.least_km(a, b) == 0.0


def test_the_same_country_is_no_distance_even_if_unknown():
    assert geo.least_km("ZZ", "ZZ") == 0.0
    assert geo.least_km("gb", "GB") == 0.0


def test_far_countries_are_far_and_the_distance_is_symmetric():
    # London to Singapore is about 10,900 km; the bound stays below it (British places nearer Asia, the slack).
    assert 7_000 < geo.least_km("GB", "SG") < 10_900
    assert geo.least_km("SG", "GB") == geo.least_km("GB", "SG")
    # Sydney to Auckland is about 2,150 km; São Paulo to Tokyo about 18,500.
    assert 1_200 < geo.least_km("AU", "NZ") < 2_150
    assert 13_000 < geo.least_km("BR", "JP") < 18_500


def test_an_unknown_code_is_no_evidence():
    assert geo.least_km("XX", "US") is None
    assert geo.least_km("US", "") is None
