/*
 * aw_components.Tree: a static piece of a widget (a table, a list, a KPI tile) drawn by ONE Dash component.
 *
 * Why: Dash's renderer runs a selector for every mounted Dash component on every store update, and it sends
 * one update per component it mounts, so the overview's cost grew with the square of its components
 * (443 components, ~900 updates, ~350 ms of selectors per view). React elements cost nothing of the sort.
 *
 * The server (dashboard/tree.py) sends `tree`: a node is a string, or [tag, attributes, children]. Only the
 * tags, attributes and style keys listed here are drawn; text is always text (React escapes it); a link is
 * kept only if it is an in-app path or http(s). A node's `act` makes it clickable: a click sets this
 * component's `click` prop to {value: act, n}, which the callback named by the component's id reads.
 * `nav` links move within the app without a reload, as dcc.Link does.
 */
(function () {
    "use strict";
    var React = window.React;
    var TAGS = {
        div: 1, span: 1, p: 1, strong: 1, em: 1, small: 1, code: 1, h3: 1, h4: 1, ul: 1, ol: 1, li: 1,
        table: 1, thead: 1, tbody: 1, tr: 1, th: 1, td: 1, a: 1, button: 1, br: 1
    };
    var ATTRS = {className: 1, title: 1, colSpan: 1, "aria-label": 1};
    var STYLE = {width: 1, background: 1, color: 1, display: 1};

    function safeHref(href) {
        if (typeof href !== "string") return undefined;
        if (/^\/(?![\/\\])/.test(href) || /^https?:\/\//i.test(href)) return href;
        return undefined;
    }

    function Tree(props) {
        var count = React.useRef(0);
        var setProps = props.setProps;

        function fire(value) {
            if (!setProps) return;
            count.current += 1;
            setProps({click: {value: value, n: count.current}});
        }

        function navigate(event, href) {
            if (event.metaKey || event.shiftKey || event.altKey || event.ctrlKey || event.button !== 0) return;
            event.preventDefault();
            window.history.pushState({}, "", href);
            window.dispatchEvent(new CustomEvent("_dashprivate_pushstate"));
            window.scrollTo(0, 0);
        }

        function draw(node, key, root) {
            if (node === null || node === undefined || node === false) return null;
            if (typeof node === "string" || typeof node === "number") return String(node);
            if (!Array.isArray(node) || !TAGS[node[0]]) return null;
            var tag = node[0], attrs = node[1] || {}, children = node[2] || [];
            var out = {key: key};
            Object.keys(attrs).forEach(function (name) {
                if (ATTRS[name]) out[name] = String(attrs[name]);
            });
            if (attrs.style && typeof attrs.style === "object") {
                var style = {};
                Object.keys(attrs.style).forEach(function (name) {
                    if (STYLE[name]) style[name] = String(attrs.style[name]);
                });
                out.style = style;
            }
            if (tag === "a") {
                var href = safeHref(attrs.href);
                if (href) out.href = href;
                if (attrs.target === "_blank") { out.target = "_blank"; out.rel = "noopener noreferrer"; }
                if (href && attrs.nav && href.charAt(0) === "/") {
                    out.onClick = function (event) { navigate(event, href); };
                }
            }
            if (tag === "button") out.type = "button";
            if (attrs.act !== undefined && props.id) {
                var act = attrs.act;
                out.onClick = function () { fire(act); };
            }
            if (root && props.id) out.id = props.id;
            var drawn = children.map(function (child, index) { return draw(child, index, false); });
            return React.createElement.apply(null, [tag, out].concat(tag === "br" ? [] : drawn));
        }

        return draw(props.tree, "root", true);
    }

    window.aw_components = Object.assign(window.aw_components || {}, {Tree: Tree});
})();
