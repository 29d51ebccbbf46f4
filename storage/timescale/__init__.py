"""Everything that speaks SQL to TimescaleDB lives in this package."""
