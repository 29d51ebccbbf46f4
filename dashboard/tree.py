"""Static parts of a widget drawn by one Dash component (``aw_components.Tree``, ``assets/tree.js``).

Dash's renderer runs a selector for every mounted Dash component on every store update, and it sends one
update for every component it mounts. The overview's cost in the browser therefore grew with the square of
its components: 443 components and ~900 updates cost ~350 ms of selectors per view (a Chromium profile with
the unminified renderer, 50,000 events). Most of those components were table cells, list items and spans that never change on their
own. ``compact`` turns each maximal such subtree into one ``Tree`` component holding it as data, which React
draws as plain elements. Renderers keep building ordinary ``html``/``dcc`` trees; what cannot be drawn that
way (a chart, an input, a component a callback names by id) stays a Dash component.

A clickable element keeps working through the ``Tree``'s ``click`` prop (``{"value", "n"}``), and the
Tree's id says which callback reads it (``ids.tree(kind, key)``): a cross-filter cell is ``xf``, an anomaly
row ``open``, an alert action ``alert``, a search result ``event``. Only a Tree with something to click has
an id, so the others are no callback's input; a subtree that mixes kinds is split.
"""

from __future__ import annotations

import uuid
from typing import Any

from dash.development.base_component import Component

from dashboard import ids

# html.* components drawn as the same element; anything else (dcc.Graph, inputs, stores) stays a Dash component.
_TAGS = {"Div", "Span", "P", "Strong", "Em", "Small", "Code", "H3", "H4", "Ul", "Ol", "Li", "Table", "Thead",
         "Tbody", "Tr", "Th", "Td", "A", "Button", "Br"}
# Props that carry over; a component with any other prop set (an id no action maps, a callback's prop) is kept.
_KEPT = {"children", "className", "title", "style", "colSpan", "aria-label", "href", "target"}
_IGNORED = {"n_clicks", "n_clicks_timestamp", "disable_n_clicks", "refresh"}
_STYLE = {"width", "background", "color", "display"}


class _Keep(Exception):
    """This subtree holds something a Tree cannot draw."""


class Tree(Component):
    """A static subtree as data (``tree``), drawn by ``window.aw_components.Tree``."""

    _children_props: list[str] = []
    _base_nodes: list[str] = []
    _namespace = "aw_components"
    _type = "Tree"

    def __init__(self, tree: Any = None, id: Any = None, **kwargs: Any) -> None:  # noqa: A002 - Dash's name
        self._prop_names = ["id", "tree", "click"]
        self._valid_wildcard_attributes: list[str] = []
        self.available_properties = list(self._prop_names)
        self.available_wildcard_properties: list[str] = []
        super().__init__(tree=tree, **({"id": id} if id is not None else {}), **kwargs)


def _act(component_id: Any, kinds: set[str]) -> Any:
    """The value a click on a known pattern-matching id stood for; its kind is added to ``kinds``."""
    if not isinstance(component_id, dict):
        raise _Keep
    kind = component_id.get("type")
    if kind == "aw-xf":
        kinds.add("xf")
        return component_id["f"]
    if kind == "aw-anomaly-row":
        kinds.add("open")
        return component_id["anomaly_id"]
    if kind == "aw-event-row":
        kinds.add("event")
        return component_id["event_id"]
    if kind == "aw-alert":
        kinds.add("alert")
        return {"action": component_id["action"], "fp": component_id["fp"]}
    raise _Keep


def _children(value: Any, kinds: set[str]) -> list[Any]:
    """The drawn children of a ``children`` prop: text, elements, and nested lists flattened."""
    if value is None or isinstance(value, bool):
        return []
    if isinstance(value, str | int | float):
        return [str(value)]
    if isinstance(value, list | tuple):
        return [node for v in value for node in _children(v, kinds)]
    return [_element(value, kinds)]


def _element(value: Any, kinds: set[str]) -> list[Any]:
    """One component as ``[tag, attributes, children]``, or ``_Keep``."""
    if not isinstance(value, Component):
        raise _Keep
    props = value.to_plotly_json()["props"]
    if value._namespace == "dash_core_components" and value._type == "Link":
        if props.get("refresh") or set(props) - {"children", "href", "className", "title", "refresh", "target"}:
            raise _Keep
        tag, attrs = "a", {"nav": True}
    elif value._namespace == "dash_html_components" and value._type in _TAGS:
        tag, attrs = value._type.lower(), {}
    else:
        raise _Keep
    for name, prop in props.items():
        if name == "id":
            attrs["act"] = _act(prop, kinds)
        elif name in _IGNORED or prop is None:
            continue
        elif name not in _KEPT:
            raise _Keep
        elif name == "style":
            if not isinstance(prop, dict) or set(prop) - _STYLE:
                raise _Keep
            attrs["style"] = {k: str(v) for k, v in prop.items()}
        elif name != "children":
            attrs[name] = prop if isinstance(prop, str | int) else str(prop)
    return [tag, attrs, _children(props.get("children"), kinds)]


def click_value(click: Any) -> Any:
    """What a Tree's ``click`` carried (``{"value", "n"}``). It is browser state, so check it like any input."""
    return click.get("value") if isinstance(click, dict) else None


def compact(body: Any) -> Any:
    """``body`` with each maximal static subtree of two or more components drawn by one ``Tree``."""
    if isinstance(body, list | tuple):
        return [compact(b) for b in body]
    if not isinstance(body, Component):
        return body
    kinds: set[str] = set()
    try:
        tree = _element(body, kinds)
        if len(kinds) > 1:
            raise _Keep
    except _Keep:
        children = getattr(body, "children", None)
        if children is not None:
            body.children = compact(children)
        return body
    if not kinds and not any(isinstance(c, list) for c in tree[2]):  # a lone element: nothing to gain
        return body
    if kinds:
        return Tree(tree=tree, id=ids.tree(kinds.pop(), uuid.uuid4().hex[:12]))
    return Tree(tree=tree)
