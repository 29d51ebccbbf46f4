"""The signed erasure certificate (GDPR Art. 17): what was erased, what was kept and why, signed with the
integrity signing key (Ed25519) and checkable with its public key alone.

``certificate.json`` is ``{"certificate": {...}, "signature": {"algorithm", "public_key", "signature"}}``; the
signature is over the canonical JSON of ``certificate`` (keys sorted, no spaces, UTF-8), so any change to it,
even one character, fails ``verify``. The PDF shows the same content, with the JSON attached.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from reports import render
from reports.library.gdpr_access import ENV
from storage import subjects
from storage.events import EventRecord
from storage.integrity import checkpoints
from storage.timescale.gdpr import ErasureRequest

KIND = "auditwatch.gdpr.erasure_certificate"
ALGORITHM = "Ed25519"


class CertificateInvalid(ValueError):
    """A certificate whose signature does not verify, or that is not a certificate at all."""


def canonical(certificate: dict[str, Any]) -> bytes:
    return json.dumps(certificate, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def build(req: ErasureRequest, records: Iterable[EventRecord], kept: Iterable[subjects.Kept], *, executed_by: str,
          executed_at: datetime) -> dict[str, Any]:
    """The certificate's content, from the request, its ``event_erased`` records and what was kept."""
    erased: list[dict[str, Any]] = []
    leaves: list[str] = []
    for r in records:
        for e in r.metadata.get("erased", []):
            erased.append({"event_id": r.resource_id, "timestamp": e.get("timestamp"),
                           "event_type": e.get("event_type"), "erasure_record": str(r.event_id)})
        leaves += r.metadata.get("integrity", {}).get("erased_leaves", [])
    leaves.sort()
    kept_rows = [{"event_id": str(k.event.event_id), "timestamp": k.event.timestamp.isoformat(),
                  "event_type": k.event.event_type, "tier": k.tier, "reason": k.reason, "detail": k.detail}
                 for k in kept]
    return {
        "kind": KIND, "version": 1,
        "request": {**req.to_json(), "steps": [s for s in req.to_json()["steps"] if s["step"] in
                                               ("requested", "approved")]},
        "executed_by": executed_by, "executed_at": executed_at.isoformat(),
        "erased": {"count": len(erased), "by_event_type": dict(sorted(Counter(e["event_type"] for e in erased)
                                                                      .items())),
                   "events": erased, "leaves": leaves,
                   "leaves_sha256": hashlib.sha256("\n".join(leaves).encode()).hexdigest()},
        "kept": {"count": len(kept_rows), "by_reason": dict(sorted(Counter(k["reason"] for k in kept_rows).items())),
                 "events": kept_rows},
    }


def sign(certificate: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    return {"certificate": certificate, "signature": {
        "algorithm": ALGORITHM, "public_key": base64.b64encode(checkpoints.public_bytes(key)).decode(),
        "signature": base64.b64encode(key.sign(canonical(certificate))).decode()}}


def verify(signed: dict[str, Any], public_keys: Iterable[bytes]) -> dict[str, Any]:
    """The certificate if one of ``public_keys`` signed exactly it; raises CertificateInvalid otherwise.

    The key embedded in the file is only a hint: trust comes from the keys the verifier holds."""
    try:
        certificate, signature = signed["certificate"], base64.b64decode(signed["signature"]["signature"])
        if signed["signature"]["algorithm"] != ALGORITHM or certificate.get("kind") != KIND:
            raise CertificateInvalid("this is not an Auditwatch erasure certificate (kind or algorithm differ)")
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        if isinstance(exc, CertificateInvalid):
            raise
        raise CertificateInvalid("this is not an Auditwatch erasure certificate: it needs `certificate` and "
                                 "`signature` as `auditwatch gdpr certificate` writes them") from None
    payload = canonical(certificate)
    for raw in public_keys:
        try:
            Ed25519PublicKey.from_public_bytes(raw).verify(signature, payload)
            return certificate
        except InvalidSignature:
            continue
    raise CertificateInvalid("the signature does not verify with the given public key(s): the certificate was "
                             "altered, or signed by another key (pass the signer's .pub with --public-key)")


def html(signed: dict[str, Any]) -> str:
    return ENV.get_template("gdpr_certificate.html.j2").render(c=signed["certificate"], s=signed["signature"])


def write(signed: dict[str, Any], out_dir: str | Path) -> dict[str, str]:
    """``certificate.json``, ``certificate.html`` and ``certificate.pdf`` (the JSON attached); name -> SHA-256."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    body = json.dumps(signed, indent=1, sort_keys=True, ensure_ascii=False)
    (out / "certificate.json").write_text(body + "\n")
    document = html(signed)
    (out / "certificate.html").write_text(document)
    render.pdf(document, out / "certificate.pdf", {"certificate.json": body})
    return {name: hashlib.sha256((out / name).read_bytes()).hexdigest()
            for name in ("certificate.json", "certificate.html", "certificate.pdf")}
