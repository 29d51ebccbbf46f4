from datetime import UTC, datetime

from reports import engine, registry
from tests.reports.conftest import END, SPRAY_FP, START


def test_all(seeded, tmp_path):
    for d in registry.all_reports():
        scope = f"alert:{SPRAY_FP}" if d.name == "incident-timeline" else None
        g = engine.generate(seeded.source(), d.params(START, END, scope), f"/tmp/rep_smoke/{d.name}",
                            generated_by="tests", now=datetime(2026, 1, 1, tzinfo=UTC), trusted_keys=seeded.trusted,
                            archive=seeded.store)
        print(d.name, g.proof.verdict, g.figures)
