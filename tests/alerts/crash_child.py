"""A dispatcher in its own process, for the crash test: ``python -m tests.alerts.crash_child URL JSON NOW``."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

from alerts.dispatch import dispatch
from alerts.notifiers import ReceiverSettings, build_notifiers
from storage.timescale import db

if __name__ == "__main__":
    url, raw, now = sys.argv[1:4]
    values = json.loads(raw)
    values["sink_path"] = Path(values["sink_path"])
    pool = db.open_pool(url, min_size=1, max_size=2, name="crash-child")
    dispatch(pool, build_notifiers(ReceiverSettings(**values)), now=datetime.fromisoformat(now))
