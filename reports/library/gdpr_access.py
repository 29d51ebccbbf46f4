"""A data subject access export (GDPR Art. 15): the subject's events as JSON, with a cover letter (HTML and PDF,
rendered like the reports) carrying who asked, when, the period, counts by type and the integrity proof.

    >>> export = build(pool, store, "p-17", requested_by="apikey:dpo", now=now, trusted_keys=keys)
    >>> files = write(export, out_dir)     # export.json, cover.html, cover.pdf, SHA256SUMS
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from psycopg_pool import ConnectionPool

from reports import render
from reports.proof import Proof, prove
from storage import subjects
from storage.cold.store import ColdStore

ENV = Environment(loader=PackageLoader("reports", "templates"), autoescape=select_autoescape(["html", "j2"]))
KIND = "auditwatch.gdpr.access_export"


@dataclass(frozen=True)
class AccessExport:
    document: dict[str, Any]  # export.json
    proof: Proof | None

    @property
    def subject(self) -> str:
        return self.document["subject"]

    @property
    def counts(self) -> dict[str, Any]:
        return self.document["counts"]


def _canonical(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False, default=str).encode()


def build(pool: ConnectionPool, store: ColdStore | None, subject: str, *, requested_by: str, now: datetime,
          trusted_keys: Iterable[bytes], start: datetime | None = None, end: datetime | None = None) -> AccessExport:
    """Find the subject's events in both tiers and prove the integrity of the period they span."""
    found = subjects.find(pool, store, subject, start=start, end=end)
    proof = None
    if found:
        low = start or found[0].event.timestamp
        high = end or found[-1].event.timestamp + timedelta(microseconds=1)
        proof = prove(pool, low, high, trusted_keys=trusted_keys, archive=store, now=now)
    by_match: Counter[str] = Counter()
    for f in found:
        by_match.update(f.matched)
    document = {
        "kind": KIND, "version": 1, "export_id": str(uuid.uuid4()), "subject": subject,
        "requested_by": requested_by, "generated_at": now.isoformat(),
        "period": {"from": start.isoformat() if start else None, "to": end.isoformat() if end else None},
        "counts": {"events": len(found),
                   "by_event_type": dict(sorted(Counter(f.event.event_type for f in found).items())),
                   "by_tier": dict(sorted(Counter(f.tier for f in found).items())),
                   "by_match": dict(sorted(by_match.items()))},
        "events": [{**f.event.to_json(), "tier": f.tier, "matched": list(f.matched)} for f in found],
        "integrity": proof.to_json() if proof else None,
    }
    return AccessExport(document, proof)


def html(export: AccessExport, export_sha256: str) -> str:
    proof = export.proof
    proof_class = "ok" if proof and proof.ok and proof.covered else ("bad" if proof and not proof.ok else "warn")
    return ENV.get_template("gdpr_access.html.j2").render(doc=export.document, proof=proof, proof_class=proof_class,
                                                          export_sha256=export_sha256)


def write(export: AccessExport, out_dir: str | Path) -> dict[str, str]:
    """``export.json``, ``cover.html``, ``cover.pdf`` (export.json attached) and ``SHA256SUMS``; name -> SHA-256."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    body = _canonical(export.document)
    (out / "export.json").write_bytes(body)
    digest = hashlib.sha256(body).hexdigest()
    document = html(export, digest)
    (out / "cover.html").write_text(document)
    render.pdf(document, out / "cover.pdf", {"export.json": body.decode()})
    files = {name: hashlib.sha256((out / name).read_bytes()).hexdigest()
             for name in ("export.json", "cover.html", "cover.pdf")}
    (out / "SHA256SUMS").write_text("".join(f"{h}  {name}\n" for name, h in sorted(files.items())))
    return files
