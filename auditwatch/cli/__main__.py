"""``python -m auditwatch.cli``: what ``auditwatch up`` and the tests start."""

from __future__ import annotations

from auditwatch.cli.main import main

main()
