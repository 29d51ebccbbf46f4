"""Tamper evidence in pure Python: the canonical row encoding, Merkle roots, the chain, signed checkpoints.

Nothing here touches a database, so the same code checks rows read from PostgreSQL and rows read
back from the Parquet cold tier. The SQL side is in ``storage/timescale/``: ``sealing.py`` (writes are
sealed, the head is signed), ``erasure.py`` and ``removals.py`` (lawful removals), ``verify.py``.
"""
