"""Event metadata as a real application would write it: rows exported, bytes moved, who was granted what."""

from __future__ import annotations

import numpy as np

DATASETS = {"engineering": "telemetry", "sales": "crm_accounts", "support": "tickets", "finance": "general_ledger",
            "hr": "employees", "it_admin": "directory", "contractor": "telemetry"}
OBJECTS = {"engineering": "issue", "sales": "opportunity", "support": "ticket", "finance": "invoice",
           "hr": "employee_record", "it_admin": "asset", "contractor": "issue"}
REPORTS = ("pipeline_weekly", "ar_aging", "headcount", "sla_breaches", "churn_forecast", "budget_vs_actual")
# Median rows of an ordinary export, by department (log-normal around it).
EXPORT_ROWS = {"finance": 6000, "sales": 2500, "hr": 1200, "engineering": 15000}
SETTINGS = ("sso.session_timeout", "feature.flags", "mail.relay", "vpn.split_tunnel", "backup.window",
            "ci.runner_pool")
ROLES = ("viewer", "editor", "report_reader", "project_member", "billing_reader")
SCOPES = ("read:reports", "write:tickets", "read:crm", "ci:deploy")


def metadata(rng: np.random.Generator, types: np.ndarray, dept: np.ndarray,
             user_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """JSON metadata and resource ids for events of these types by people of these departments."""
    n = types.size
    meta = np.full(n, "{}", dtype=object)
    resource = np.full(n, None, dtype=object)
    for kind in ("data_export", "export_requested"):
        sel = np.flatnonzero(types == kind)
        med = np.array([EXPORT_ROWS.get(d, 1500) for d in dept[sel]], dtype=float)
        rows = (med * rng.lognormal(0, 0.9, sel.size)).astype(np.int64) + 1
        meta[sel] = [f'{{"rows":{r},"dataset":"{DATASETS[d]}","format":"csv"}}' for r, d in zip(rows, dept[sel],
                                                                                               strict=True)]
    sel = np.flatnonzero(types == "query_executed")
    rows = rng.lognormal(np.log(40), 1.4, sel.size).astype(np.int64)
    meta[sel] = [f'{{"rows":{r},"dataset":"{DATASETS[d]}"}}' for r, d in zip(rows, dept[sel], strict=True)]
    for kind in ("file_download", "file_upload"):
        sel = np.flatnonzero(types == kind)
        size = rng.lognormal(np.log(350_000), 1.3, sel.size).astype(np.int64)
        meta[sel] = [f'{{"bytes":{b},"path":"/shares/{d}/doc-{int(x)}.pdf"}}'
                     for b, d, x in zip(size, dept[sel], rng.integers(1, 5000, sel.size), strict=True)]
    sel = np.flatnonzero(types == "record_updated")
    meta[sel] = [f'{{"object":"{OBJECTS[d]}","id":{int(x)}}}' for d, x in zip(dept[sel], rng.integers(1, 10**6, sel.size),
                                                                            strict=True)]
    sel = np.flatnonzero(types == "report_viewed")
    meta[sel] = [f'{{"report":"{REPORTS[int(x)]}"}}' for x in rng.integers(0, len(REPORTS), sel.size)]
    sel = np.flatnonzero(types == "config_change")
    meta[sel] = [f'{{"setting":"{SETTINGS[int(x)]}","before":"v{int(v)}","after":"v{int(v) + 1}"}}'
                 for x, v in zip(rng.integers(0, len(SETTINGS), sel.size), rng.integers(1, 40, sel.size), strict=True)]
    sel = np.flatnonzero(types == "api_key_created")
    meta[sel] = [f'{{"scope":"{SCOPES[int(x)]}","key_id":"k_{int(k):08x}","ttl_days":90}}'
                 for x, k in zip(rng.integers(0, len(SCOPES), sel.size), rng.integers(0, 2**31, sel.size), strict=True)]
    for kind in ("permission_change", "password_change", "user_created"):
        sel = np.flatnonzero(types == kind)
        target = user_ids[rng.integers(0, user_ids.size, sel.size)]
        if kind == "user_created":
            target = np.array([f"e{int(x)}" for x in rng.integers(1_000_000, 1_100_000, sel.size)], dtype=object)
        resource[sel] = target
        if kind == "permission_change":
            meta[sel] = [f'{{"granted":"{ROLES[int(x)]}","target_user":"{t}"}}'
                         for x, t in zip(rng.integers(0, len(ROLES), sel.size), target, strict=True)]
        else:
            meta[sel] = [f'{{"target_user":"{t}"}}' for t in target]
    return meta, resource
