"""reports/ depends on storage/ and analytics/ only, and only the composition root imports it."""

from __future__ import annotations

from tests.test_import_cycles import cycles, imports, modules

PRODUCT = ("ingest", "storage", "analytics", "alerts", "dashboard", "auditwatch", "reports")


def test_reports_point_into_storage_and_nothing_but_the_root_imports_them():
    known = modules(PRODUCT)
    graph = {m: imports(m, p, known) for m, p in known.items()}
    for module, deps in graph.items():
        top = module.split(".")[0]
        if top == "reports":
            outside = {d for d in deps if d.split(".")[0] not in ("reports", "storage", "analytics")}
            assert not outside, f"{module} imports {sorted(outside)}"
        elif top != "auditwatch":
            assert not {d for d in deps if d.startswith("reports")}, f"{module} imports reports"
    assert not [c for c in cycles(graph) if any(m.startswith("reports") for m in c)]
