"""The cold tier: day-partitioned Parquet files under an archive root (a directory or a filesystem URL)."""
