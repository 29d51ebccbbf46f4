"""Forwarder errors, saying what to check."""

from __future__ import annotations


class ForwardError(RuntimeError):
    """A batch could not be delivered (it is retried from the same position)."""
