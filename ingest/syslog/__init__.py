"""Syslog in: RFC 5424/3164 parsing, auth-line parsers, and the UDP/TCP/TLS listener.

``parse_line`` and ``parse_file`` are pure and need no database: feed a log file through them
in a notebook and get the same events the listener stores.
"""

from __future__ import annotations

from ingest.syslog.events import derive_event_id, host_principal, parse_file, parse_line, parse_lines
from ingest.syslog.header import SyslogMessage, parse_header

__all__ = ["SyslogMessage", "derive_event_id", "host_principal", "parse_file", "parse_header", "parse_line",
           "parse_lines"]
