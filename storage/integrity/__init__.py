"""Tamper evidence in pure Python: the canonical row encoding, Merkle roots, the chain, signed checkpoints.

Nothing here touches a database, so the same code checks rows read from PostgreSQL and rows read
back from the Parquet cold tier.
"""
