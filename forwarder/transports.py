"""Where forwarded events go: a syslog receiver over TCP (optionally TLS), or an HTTP endpoint taking NDJSON.

A transport sends one batch and returns only when the receiver has it (TCP: every byte written and
flushed; HTTP: a 2xx answer); any failure raises ForwardError and the outbox retries the whole batch.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Sequence
from urllib.parse import urlsplit

import requests

from forwarder.errors import ForwardError


class SyslogTcp:
    """RFC 5424 messages, octet-counted (RFC 6587), over one kept-open TCP or TLS connection."""

    def __init__(self, url: str, *, tls: ssl.SSLContext | None = None, timeout: float = 10.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("tcp", "tls") or not parts.hostname or not parts.port:
            raise ForwardError(f"syslog destination {url!r} must be tcp://host:port or tls://host:port")
        self.host, self.port, self.timeout = parts.hostname, parts.port, timeout
        self.tls = tls if tls is not None else (ssl.create_default_context() if parts.scheme == "tls" else None)
        self._sock: socket.socket | None = None

    def _connect(self) -> socket.socket:
        if self._sock is None:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
            self._sock = self.tls.wrap_socket(sock, server_hostname=self.host) if self.tls else sock
        return self._sock

    def send(self, frames: Sequence[bytes]) -> None:
        try:
            self._connect().sendall(b"".join(frames))
        except OSError as exc:
            self.close()
            raise ForwardError(f"syslog send to {self.host}:{self.port} failed: {exc}") from None

    def close(self) -> None:
        """Close gracefully: a bare close with unread bytes waiting (a TLS 1.3 session ticket) makes the kernel
        send a reset, and the receiver then drops what it had not read yet, although every send succeeded."""
        if self._sock is not None:
            try:
                sock = self._sock.unwrap() if isinstance(self._sock, ssl.SSLSocket) else self._sock  # close_notify
                sock.shutdown(socket.SHUT_WR)
                while sock.recv(4096):  # until the receiver has read everything and closed its side
                    pass
            except OSError:
                pass  # the receiver is gone already: nothing more to hand over
            finally:
                self._sock.close()
                self._sock = None


class HttpNdjson:
    """POST each batch as application/x-ndjson; 2xx is delivered, anything else is retried."""

    def __init__(self, url: str, *, headers: dict[str, str] | None = None, timeout: float = 10.0,
                 session: requests.Session | None = None) -> None:
        if urlsplit(url).scheme not in ("http", "https"):
            raise ForwardError(f"HTTP destination {url!r} must be an http(s) URL")
        self.url, self.timeout = url, timeout
        self.headers = {"Content-Type": "application/x-ndjson", **(headers or {})}
        self.session = session or requests.Session()

    def send(self, lines: Sequence[bytes]) -> None:
        try:
            response = self.session.post(self.url, data=b"".join(lines), headers=self.headers, timeout=self.timeout)
        except requests.RequestException as exc:
            raise ForwardError(f"POST {self.url} failed: {exc}") from None
        if not 200 <= response.status_code < 300:
            raise ForwardError(f"POST {self.url} answered {response.status_code}: {response.text[:200]}")

    def close(self) -> None:
        self.session.close()
