"""How far apart two countries are at the least: the evidence behind "could not have travelled that fast".

A country is the set of places people live in it (``data/country_points.csv``, GeoNames, one point per 150 km of
populated land; rebuilt by ``scripts/country_points.py``). The distance between two countries is the shortest
distance between their points, less ``SLACK_KM`` for a town between two listed points or a village beyond them.
It is a lower bound on purpose: neighbours come out at 0, so only a move no airliner could make counts
(London to Singapore in three hours), never a drive across a border.
"""

from __future__ import annotations

import csv
from functools import cache, lru_cache
from importlib import resources

import numpy as np

EARTH_KM = 6371.0
SPACING_KM = 150.0  # the table's thinning: every listed town is within this of a kept point
SLACK_KM = SPACING_KM + 100.0  # and a margin for places smaller than the table's 1,000 people


@cache
def _points() -> dict[str, np.ndarray]:
    """Country code → (n, 3) unit vectors of its places."""
    rows: dict[str, list[tuple[float, float]]] = {}
    text = resources.files("analytics").joinpath("data/country_points.csv").read_text(encoding="utf-8")
    for row in csv.DictReader(line for line in text.splitlines() if not line.startswith("#")):
        rows.setdefault(row["country"], []).append((float(row["lat"]), float(row["lon"])))
    out = {}
    for code, places in rows.items():
        lat, lon = np.radians(np.array(places)).T
        out[code] = np.column_stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)])
    return out


@lru_cache(maxsize=65_536)  # bounded: a file may name any strings as countries
def least_km(a: str, b: str) -> float | None:
    """The least distance anyone in country ``a`` could be from anyone in ``b`` (ISO 3166 alpha-2; 0 for the
    same country or neighbours); ``None`` when either code is unknown, which is no evidence either way."""
    if a == b:
        return 0.0
    points = _points()
    pa, pb = points.get(a.upper()), points.get(b.upper())
    if pa is None or pb is None:
        return None
    cosine = np.clip(pa @ pb.T, -1.0, 1.0).max()
    return max(0.0, float(np.arccos(cosine)) * EARTH_KM - SLACK_KM)
