"""Stream stored events to other SIEMs: syslog (RFC 5424 over TCP or TLS, CEF or OCSF JSON) and HTTP NDJSON."""
