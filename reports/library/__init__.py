"""The shipped reports, one module each: a ``DEFINITION`` and its builder."""
