"""Examples for an imported rule, derived from its threshold: the least that fires it and one event fewer.

Our rule files must carry examples (detection-as-code); a Sigma rule has none, so the importer writes
the two that pin the threshold down, and they run through the real evaluator like every rule's.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from alerts.rule_yaml import format_duration, parse_duration
from alerts.sigma.pipeline import OUTCOMES, Catalogue

GROUP_VALUES = {"user_id": "alice", "source_ip": "203.0.113.9"}


def _values(name: str, count: int, chosen: dict[str, Any], types: list[str]) -> list[dict[str, Any]]:
    """``count`` events whose ``name`` field differs in each one."""
    if name == "event_type":
        if count > len(types):
            raise ValueError(f"needs {count} distinct event types but selects {len(types)}")
        return [{**chosen, "event_type": t} for t in types[:count]]
    if name == "outcome":
        if count > len(OUTCOMES):
            raise ValueError(f"needs {count} distinct outcomes; there are {len(OUTCOMES)}")
        return [{**chosen, "outcome": o} for o in OUTCOMES[:count]]
    pattern = {"user_id": "user{i}", "source_ip": "198.51.100.{i}" if count <= 250 else "2001:db8::{i}"}[name]
    return [{**chosen, name: pattern, "repeat": count, "spacing": "0s"}] if count else []


def examples(threshold: dict[str, Any], catalogue: Catalogue) -> list[dict[str, Any]]:
    """A firing and a quiet example for a threshold body (as written in a rule file)."""
    window = parse_duration(threshold["window"])
    at = f"-{format_duration(max(window // 2, timedelta(seconds=1)))}"
    selected = threshold.get("event_type") or []
    others = sorted(catalogue.all - set(selected))
    outcome = threshold.get("outcome")
    chosen: dict[str, Any] = {"at": at, "event_type": selected[0] if selected else "user_login",
                              "outcome": outcome or "success", "user_id": GROUP_VALUES["user_id"],
                              "source_ip": GROUP_VALUES["source_ip"]}
    at_least, distinct = threshold["at_least"], threshold.get("distinct")
    if distinct:
        fires = _values(distinct, at_least, chosen, list(selected) or sorted(catalogue.all))
        quiet = _values(distinct, at_least - 1, chosen, list(selected) or sorted(catalogue.all))
        # More events with the values already seen still do not make another distinct one.
        if quiet:
            first = {k: v.replace("{i}", "0") if isinstance(v, str) else v for k, v in quiet[0].items()}
            quiet.append({**first, "repeat": at_least + 2, "spacing": "0s"})
    else:
        fires = [{**chosen, "repeat": at_least, "spacing": "0s"}]
        quiet = [{**chosen, "repeat": at_least - 1, "spacing": "0s"}] if at_least > 1 else []
        if at_least == 1 and outcome:
            quiet = [{**chosen, "outcome": next(o for o in OUTCOMES if o != outcome)}]
        elif at_least == 1 and selected and others:
            quiet = [{**chosen, "event_type": others[0]}]
    return [{"name": f"{at_least} matching within {threshold['window']}", "fires": True, "events": fires},
            {"name": "one fewer, or events it does not select", "fires": False, "events": quiet}]
