"""Each notifier against its fake: one attempt, failures classified for the retry stage."""

from __future__ import annotations

import json

import pytest

from alerts.errors import DeliveryError
from alerts.notifiers import PagerDuty, SlackChat, SlackWebhook, Webhook, slack_blocks, verify_signature
from alerts.testing import FakePagerDuty, FakeSlack, _Server

PAYLOAD = {"status": "firing", "group_key": "0:rule_id=r", "alerts": [{
    "fingerprint": "a" * 20, "rule_id": "r", "title": "Burst for alice", "severity": "critical", "status": "firing",
    "labels": {"user_id": "alice"}, "group_values": {"user_id": "alice"}, "count": 12, "value": 12,
    "started_at": "2024-05-01T12:00:00+00:00", "firing_at": "2024-05-01T12:00:00+00:00",
    "runbook_url": "https://runbooks.example.com/r", "dashboard_url": "https://aw.example.com/dashboard/alerts?x"}]}


def test_slack_webhook_posts_blocks_and_classifies_failures(fakes):
    slack, _ = fakes
    hook = SlackWebhook("w", url=slack.webhook_url)
    hook.send(1, PAYLOAD)
    assert slack.webhook_messages[0]["blocks"] == slack_blocks(PAYLOAD)
    slack.fail_next(FakeSlack.WEBHOOK, 429, "rate_limited", headers={"Retry-After": "30"})
    with pytest.raises(DeliveryError) as limited:
        hook.send(2, PAYLOAD)
    assert (limited.value.retryable, limited.value.retry_after, limited.value.status_code) == (True, 30.0, 429)
    slack.fail_next(FakeSlack.WEBHOOK, 503, "oops")
    with pytest.raises(DeliveryError) as down:
        hook.send(3, PAYLOAD)
    assert down.value.retryable and down.value.status_code == 503
    with pytest.raises(DeliveryError) as gone:
        SlackWebhook("w", url=slack.webhook_url.replace("XXXXXXXX", "revoked")).send(4, PAYLOAD)
    assert not gone.value.retryable and gone.value.status_code == 404


def test_slack_chat_errors(fakes):
    slack, _ = fakes
    chat = SlackChat("c", token=FakeSlack.TOKEN, channel="#x", base_url=slack.url)
    slack.fail_next("/api/chat.postMessage", 500, {"ok": False, "error": "internal_error"})
    with pytest.raises(DeliveryError) as failed:
        chat.send(1, PAYLOAD)
    assert failed.value.retryable
    with pytest.raises(DeliveryError) as no_channel:
        SlackChat("c", token=FakeSlack.TOKEN, channel="", base_url=slack.url).send(1, PAYLOAD)
    assert not no_channel.value.retryable and "channel_not_found" in str(no_channel.value)
    with pytest.raises(DeliveryError) as unreachable:
        SlackChat("c", token=FakeSlack.TOKEN, channel="#x", base_url="http://127.0.0.1:9/api/", timeout=2).send(
            1, PAYLOAD)
    assert unreachable.value.retryable


def test_pagerduty_refuses_plain_http_and_a_wrong_key(fakes):
    _, pd = fakes
    with pytest.raises(Exception, match="https"):
        PagerDuty("p", routing_key=FakePagerDuty.ROUTING_KEY, base_url=pd.url.replace("https", "http"))
    wrong = PagerDuty("p", routing_key="x" * 32, base_url=pd.url, ca_bundle=str(pd.ca_path))
    with pytest.raises(DeliveryError) as refused:
        wrong.send(1, PAYLOAD)
    assert refused.value.status_code == 400 and not refused.value.retryable and "x" * 32 not in str(refused.value)
    untrusted = PagerDuty("p", routing_key=FakePagerDuty.ROUTING_KEY, base_url=pd.url)  # the system CAs only
    with pytest.raises(DeliveryError) as tls:
        untrusted.send(1, PAYLOAD)
    assert tls.value.retryable and pd.events == []
    pd.fail_next("/v2/enqueue", 429, {"status": "throttle"}, headers={"Retry-After": "12"})
    ok = PagerDuty("p", routing_key=FakePagerDuty.ROUTING_KEY, base_url=pd.url, ca_bundle=str(pd.ca_path))
    with pytest.raises(DeliveryError) as limited:
        ok.send(1, PAYLOAD)
    assert limited.value.retry_after == 12.0  # returned at once: the dispatcher waits, not the client
    ok.send(2, PAYLOAD)
    assert pd.actions() == ["trigger"] and pd.events[0]["dedup_key"] == "a" * 20


class _Receiver(_Server):
    def handle(self, method, path, query, headers, body):
        self._record(method, path, headers, body, 204)
        return 204, b"", {}


def test_webhook_is_signed_and_idempotent_by_key():
    receiver = _Receiver()
    try:
        Webhook("h", url=f"http://127.0.0.1:{receiver.port}/hook", secret="s3cret").send(7, PAYLOAD)
        request = receiver.requests[0]
        headers = {k.lower(): v for k, v in request["headers"].items()}
        assert verify_signature("s3cret", headers["x-auditwatch-timestamp"], request["raw"],
                                headers["x-auditwatch-signature"])
        assert not verify_signature("other", headers["x-auditwatch-timestamp"], request["raw"],
                                    headers["x-auditwatch-signature"])
        assert headers["idempotency-key"] == "auditwatch-7"
        assert json.loads(request["raw"])["notification_id"] == 7
        receiver.fail_next("/hook", 429, "slow down", headers={"Retry-After": "3"})
        with pytest.raises(DeliveryError) as limited:
            Webhook("h", url=f"http://127.0.0.1:{receiver.port}/hook", secret="s3cret").send(8, PAYLOAD)
        assert limited.value.retry_after == 3.0
    finally:
        receiver.close()


def test_attacker_controlled_text_cannot_ping_the_channel_or_forge_links(fakes):
    """An sshd user name reaches the alert title and entity: `<!channel>` must stay text in Slack."""
    slack, _ = fakes
    hostile = {**PAYLOAD, "alerts": [{**PAYLOAD["alerts"][0], "title": "Burst for <!channel> & <https://evil|x>",
                                      "group_values": {"user_id": "<!here>"},
                                      "runbook_url": "https://r.example.com/a|b>c"}]}
    SlackWebhook("w", url=slack.webhook_url).send(9, hostile)
    sent = slack.webhook_messages[-1]
    every_text = json.dumps(sent)
    assert "<!channel>" not in every_text and "<!here>" not in every_text and "<https://evil" not in every_text
    assert "&lt;!channel&gt; &amp; &lt;https://evil|x&gt;" in sent["text"]
    section = next(b for b in sent["blocks"] if b["type"] == "section")
    assert section["text"]["text"] == "*Burst for &lt;!channel&gt; &amp; &lt;https://evil|x&gt;*"
    assert any(f["text"] == "*Entity*\nuser_id=&lt;!here&gt;" for f in section["fields"])
    context = next(b for b in sent["blocks"] if b["type"] == "context")["elements"][0]["text"]
    assert "<https://r.example.com/a%7Cb&gt;c|Runbook>" in context
