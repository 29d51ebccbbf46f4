"""Local fake Slack and PagerDuty servers that speak the real endpoints' contracts.

The alerts package's testing kit (as ``flask.testing`` is Flask's): the test suite and the alert
latency bench deliver to these instead of the real services. The fake PagerDuty needs ``trustme``
(a dev dependency), imported when one is made.

Slack: ``POST /api/chat.postMessage`` (Bearer token, JSON body, ``{"ok": ...}`` answers, 429 with
Retry-After), ``GET /api/conversations.history`` (messages with metadata), incoming webhooks
``POST /services/T…/B…/…`` (plain ``ok``, or ``invalid_payload`` / ``no_service``).
PagerDuty: ``POST /v2/enqueue`` over TLS (202 ``{"status":"success","dedup_key"}``, 400 on an invalid
event, 429 and 5xx), deduplicating events into incidents by dedup_key like the real service.
Failures are scripted per path with ``fail_next``; ``hold_next`` keeps a request waiting (a client
that dies mid-delivery).
"""

from __future__ import annotations

import json
import ssl
import threading
import time
import uuid
from collections import defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Scripted:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class _Server:
    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.requests: list[dict[str, Any]] = []
        self._script: dict[str, deque[Scripted]] = defaultdict(deque)
        self._holds: dict[str, threading.Event] = {}
        self.received = threading.Condition()
        self.handled = 0
        handler = self._handler()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        for event in self._holds.values():
            event.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def fail_next(self, path: str, status: int, body: Any = None, *, times: int = 1,
                  headers: dict[str, str] | None = None) -> None:
        for _ in range(times):
            self._script[path].append(Scripted(status, body, headers or {}))

    def hold_next(self, path: str) -> threading.Event:
        """The next request to ``path`` is recorded, then left unanswered until the event is set."""
        event = threading.Event()
        self._holds[path] = event
        return event

    def wait_for(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        with self.received:
            while self.handled < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"expected {count} requests, got {self.handled}")
                self.received.wait(remaining)

    def handle(self, method: str, path: str, query: dict[str, list[str]], headers, body: bytes
               ) -> tuple[int, Any, dict[str, str]]:
        raise NotImplementedError

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _serve(self, method: str) -> None:
                parts = urlsplit(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                scripted = server._script[parts.path].popleft() if server._script[parts.path] else None
                if scripted is None:
                    status, answer, headers = server.handle(method, parts.path, parse_qs(parts.query), self.headers,
                                                            body)
                else:
                    status, answer, headers = scripted.status, scripted.body, scripted.headers
                    server._record(method, parts.path, self.headers, body, status)
                hold = server._holds.pop(parts.path, None)
                with server.received:
                    server.handled += 1
                    server.received.notify_all()
                if hold is not None:
                    hold.wait(30)
                    return  # never answered: the client is gone
                raw = answer if isinstance(answer, bytes) else (
                    answer.encode() if isinstance(answer, str) else json.dumps(answer).encode())
                self.send_response(status)
                self.send_header("Content-Type", "text/plain" if isinstance(answer, str) else "application/json")
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_POST(self) -> None:
                self._serve("POST")

            def do_GET(self) -> None:
                self._serve("GET")

        return Handler

    def _record(self, method: str, path: str, headers, body: bytes, status: int) -> dict[str, Any]:
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = parse_qs(body.decode())
        entry = {"method": method, "path": path, "headers": dict(headers), "body": parsed, "raw": body,
                 "status": status, "at": time.time()}
        with self.received:
            self.requests.append(entry)
        return entry


class FakeSlack(_Server):
    TOKEN = "xoxb-test-token-0000"
    WEBHOOK = "/services/T000/B000/XXXXXXXX"

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.webhook_messages: list[dict[str, Any]] = []
        super().__init__()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.WEBHOOK}"

    def handle(self, method, path, query, headers, body):
        self._record(method, path, headers, body, 200)
        if path.startswith("/services/"):
            if path != self.WEBHOOK:
                return 404, "no_service", {}
            data = json.loads(body or b"{}")
            if not data.get("text") and not data.get("blocks"):
                return 400, "invalid_payload", {}
            self.webhook_messages.append(data)
            return 200, "ok", {}
        if headers.get("Authorization") != f"Bearer {self.TOKEN}":
            return 200, {"ok": False, "error": "invalid_auth"}, {}
        if path == "/api/chat.postMessage":
            data = json.loads(body or b"{}")
            if not data.get("channel"):
                return 200, {"ok": False, "error": "channel_not_found"}, {}
            if not data.get("text") and not data.get("blocks"):
                return 200, {"ok": False, "error": "no_text"}, {}
            ts = f"{time.time():.6f}"
            self.messages.append({**data, "ts": ts})
            return 200, {"ok": True, "channel": data["channel"], "ts": ts, "message": {"text": data.get("text")}}, {}
        if path == "/api/conversations.history":
            # Slack takes arguments in the query string or a form-encoded body (slack_sdk sends the latter).
            form = {**parse_qs(body.decode()), **query}
            channel = (form.get("channel") or [""])[0]
            found = [{"type": "message", "ts": m["ts"], "text": m.get("text"), "metadata": m.get("metadata")}
                     for m in reversed(self.messages) if m["channel"] == channel]
            return 200, {"ok": True, "messages": found, "has_more": False}, {}
        return 200, {"ok": False, "error": "unknown_method"}, {}

    def in_channel(self, channel: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["channel"] == channel]


class FakePagerDuty(_Server):
    ROUTING_KEY = "R0UT1NGK3Y0000000000000000000000"  # 32 characters, like a real integration key

    def __init__(self, tmp: Path) -> None:
        import trustme  # dev dependency: only the fake PagerDuty's throwaway CA needs it

        self.ca = trustme.CA()
        cert = self.ca.issue_cert("127.0.0.1", "localhost")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(context)
        self.ca_path = tmp / "fake-pd-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_path))
        self.events: list[dict[str, Any]] = []
        self.incidents: dict[str, dict[str, Any]] = {}
        super().__init__(tls=context)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def handle(self, method, path, query, headers, body):
        self._record(method, path, headers, body, 202)
        if path != "/v2/enqueue" or method != "POST":
            return 404, {"status": "invalid event", "message": "not found"}, {}
        try:
            event = json.loads(body)
        except ValueError:
            return 400, {"status": "invalid event", "message": "Event object is invalid",
                         "errors": ["body is not JSON"]}, {}
        errors = []
        if event.get("routing_key") != self.ROUTING_KEY:
            errors.append("'routing_key' is invalid")
        action = event.get("event_action")
        if action not in ("trigger", "acknowledge", "resolve"):
            errors.append("'event_action' is invalid")
        if action == "trigger":
            payload = event.get("payload") or {}
            for name in ("summary", "source", "severity"):
                if not payload.get(name):
                    errors.append(f"'payload.{name}' is missing")
            if payload.get("severity") not in ("critical", "error", "warning", "info"):
                errors.append("'payload.severity' is invalid")
        elif not event.get("dedup_key"):
            errors.append("'dedup_key' is required for acknowledge and resolve")
        if errors:
            return 400, {"status": "invalid event", "message": "Event object is invalid", "errors": errors}, {}
        key = event.get("dedup_key") or uuid.uuid4().hex
        self.events.append(event)
        incident = self.incidents.get(key)
        if action == "trigger" and (incident is None or incident["status"] == "resolved"):
            self.incidents[key] = incident = {"dedup_key": key, "status": "triggered", "events": 0,
                                              "summary": event["payload"]["summary"], "opened": 1 + (
                                                  incident["opened"] if incident else 0)}
        if incident is not None:
            incident["events"] += 1
            if action == "acknowledge" and incident["status"] == "triggered":
                incident["status"] = "acknowledged"
            elif action == "resolve":
                incident["status"] = "resolved"
        return 202, {"status": "success", "message": "Event processed", "dedup_key": key}, {}

    def actions(self, dedup_key: str | None = None) -> list[str]:
        return [e["event_action"] for e in self.events if dedup_key is None or e.get("dedup_key") == dedup_key]
