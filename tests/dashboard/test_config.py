"""The widget registry, dashboard validation and YAML export / import (no database)."""

from __future__ import annotations

import pytest
import yaml

from dashboard import config
from dashboard.errors import DashboardConfigError
from dashboard.pages.entity import entity_document
from dashboard.pages.overview import overview_document
from dashboard.registry import HEIGHTS, WIDTHS, Registry, WidgetType, build

REGISTRY = build()


def test_every_widget_type_declares_valid_defaults():
    for widget_type in REGISTRY.types.values():
        widget = config.new_widget(REGISTRY, widget_type.name)
        assert widget["params"] == widget_type.defaults()
        assert widget["w"] in WIDTHS and widget["h"] in HEIGHTS
        for param in widget_type.params:
            if param.kind == "choice":
                assert param.default in param.choices, (widget_type.name, param.name)


def test_a_type_cannot_be_registered_twice():
    registry = Registry()
    registry.add(WidgetType("x", "X", "", render=lambda rc, p: None))
    with pytest.raises(ValueError, match="registered twice"):
        registry.add(WidgetType("x", "X", "", render=lambda rc, p: None))


def test_the_built_in_documents_are_valid():
    overview = config.validate(REGISTRY, overview_document())
    assert len(overview["widgets"]) == 15
    assert {w["type"] for w in overview["widgets"]} == set(REGISTRY.names()) - {"baseline"}
    assert sum(w["w"] for w in overview["widgets"] if w["type"] == "kpi") == 12
    entity = config.validate(REGISTRY, entity_document("ip", "203.0.113.66"))
    assert all(w["params"]["source_ip"] == "203.0.113.66" for w in entity["widgets"])
    assert len({w["id"] for w in entity["widgets"]}) == len(entity["widgets"])


def test_yaml_round_trips_exactly():
    document = config.validate(REGISTRY, overview_document())
    text = config.to_yaml(document)
    assert text.startswith("version: 1\nname: Security overview\n")
    assert config.from_yaml(REGISTRY, text) == document
    assert config.from_yaml(REGISTRY, text.encode()) == document


def test_import_fills_defaults_and_makes_ids_unique():
    document = config.from_yaml(REGISTRY, "name: Mine\nwidgets:\n  - {id: a, type: kpi}\n  - {id: a, type: top}\n")
    kpi, top = document["widgets"]
    assert kpi["params"] == {"metric": "events_per_min", "user_id": "", "source_ip": ""}
    assert top["params"]["outcome"] == "failure" and top["w"] == 4
    assert kpi["id"] == "a" and top["id"] != "a"


@pytest.mark.parametrize(("text", "message"), [
    ("", "the YAML is empty"),
    ("name: x\nwidgets: [\n", "line 3, column 1: not valid YAML"),
    ("- just\n- a list\n", "a dashboard must be a mapping"),
    ("widgets: []\n", "name: is missing"),
    ("name: '  '\n", "name: must not be empty"),
    ("name: x\nversion: 2\n", "version: this server reads version 1 dashboards, not 2"),
    ("name: x\ncolour: red\n", "unknown key 'colour'"),
    ("name: x\nwidgets: {a: 1}\n", "widgets: must be a list"),
    ("name: x\nwidgets:\n  - type: pie\n", "widgets[0].type: unknown widget type 'pie'; choose one of kpi, "),
    ("name: x\nwidgets:\n  - {type: kpi, w: 5}\n", "widgets[0].w: must be one of 2, 3, 4, 6, 8, 12"),
    ("name: x\nwidgets:\n  - {type: kpi, h: true}\n", "widgets[0].h: must be one of 1, 2, 3"),
    ("name: x\nwidgets:\n  - {type: kpi, id: 'Bad Id'}\n", "widgets[0].id: must be 1-32 lower-case"),
    ("name: x\nwidgets:\n  - {type: kpi, params: {metric: cpu}}\n", "widgets[0].params.metric: 'cpu' is not one of"),
    ("name: x\nwidgets:\n  - {type: kpi, params: {colour: 1}}\n", "kpi has no parameter 'colour'; it takes: metric"),
    ("name: x\nwidgets:\n  - {type: top, params: {limit: 0}}\n", "params.limit: must be a whole number from 1 to 50"),
    ("name: x\nwidgets:\n  - {type: top, params: {limit: '5'}}\n", "params.limit: must be a whole number"),
    ("name: x\nwidgets:\n  - {type: top, params: {event_types: [nope]}}\n", "params.event_types: must be a list"),
    ("name: x\nwidgets:\n  - {type: top, title: \"a\\x01b\"}\n", "title: contains control characters"),
    ("name: !!python/object:os.system x\n", "not valid YAML"),
])
def test_bad_yaml_gets_a_clear_error(text, message):
    with pytest.raises(DashboardConfigError) as raised:
        config.from_yaml(REGISTRY, text)
    assert message in str(raised.value)


def test_oversized_and_non_utf8_imports_are_refused():
    with pytest.raises(DashboardConfigError, match="over 256 KB"):
        config.from_yaml(REGISTRY, "name: x\n" + "#" * 300_000)
    with pytest.raises(DashboardConfigError, match="not UTF-8"):
        config.from_yaml(REGISTRY, b"name: \xff\xfe")
    too_many = yaml.safe_dump({"name": "x", "widgets": [{"type": "kpi"}] * 41})
    with pytest.raises(DashboardConfigError, match="at most 40"):
        config.from_yaml(REGISTRY, too_many)
