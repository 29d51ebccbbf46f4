"""The ``auditwatch`` command line: ``main.py`` holds the root group, one module per command group."""
