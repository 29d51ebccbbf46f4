"""Stored types and the storage tiers every other package reads and writes through."""
