/*
 * A banner when the server stops answering the dashboard's updates (a database outage answers them 503), or
 * answers that the session has ended (401: expired, or its key revoked).
 *
 * Why: Dash keeps the last drawn widgets when an update fails and says nothing, so an analyst watching a live
 * view during an outage would read stale numbers as current. Every `_dash-update-component` response is
 * watched: a 5xx or a network failure shows the banner with the time the first one happened and what the server
 * said; the next update that succeeds hides it. Nothing here changes what Dash does with the response.
 */
(function () {
    "use strict";
    if (!window.fetch || window.__awOutageWatch) return;
    window.__awOutageWatch = true;
    var original = window.fetch.bind(window);
    var since = null;

    function banner() {
        var node = document.getElementById("aw-outage");
        if (!node) {
            node = document.createElement("div");
            node.id = "aw-outage";
            node.className = "aw-outage";
            node.setAttribute("role", "alert");
            node.hidden = true;
            document.body.appendChild(node);
        }
        return node;
    }

    function show(reason) {
        if (since === null) since = new Date();
        var node = banner();
        var at = since.toISOString().slice(11, 19) + " UTC";  // the dashboard's times are UTC throughout
        // textContent: the server's words are shown as text, never as markup.
        node.textContent = "The server has not answered since " + at + " (" + reason + "). What is on screen may " +
            "be out of date; it updates by itself once the server answers again.";
        node.hidden = false;
    }

    function signedOut() {
        var node = banner();
        node.textContent = "Your session has ended (it expired, you signed out elsewhere, or its key was " +
            "revoked), so what is on screen no longer updates. ";
        var link = document.createElement("a");
        link.href = "/dashboard/login?next=" + encodeURIComponent(window.location.pathname + window.location.search);
        link.textContent = "Sign in again";
        node.appendChild(link);
        node.hidden = false;
    }

    function hide() {
        since = null;
        var node = document.getElementById("aw-outage");
        if (node) node.hidden = true;
    }

    window.fetch = function (input, init) {
        var url = typeof input === "string" ? input : (input && input.url) || "";
        var result = original(input, init);
        if (url.indexOf("_dash-update-component") === -1) return result;
        result.then(function (response) {
            if (response.status === 401) {
                signedOut();
            } else if (response.status >= 500) {
                response.clone().json().then(function (body) {
                    show("HTTP " + response.status + ": " + String((body && body.message) || response.statusText)
                        .slice(0, 200));
                }, function () { show("HTTP " + response.status); });
            } else if (response.ok) {
                hide();
            }
        }, function () { show("no connection"); });
        return result;
    };
})();
