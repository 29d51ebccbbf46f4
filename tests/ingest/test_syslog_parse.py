"""Syslog parsing as a pure function: headers, year inference, each auth parser, and two real log files."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.syslog import parse_file, parse_header, parse_line
from ingest.syslog.header import SyslogError, zone_of
from tests.conftest import shared_data

NOW = datetime(2026, 11, 28, 20, 0, tzinfo=UTC)
LOGHUB = shared_data() / "loghub"


def one(line: str, **kw):
    return parse_line(line, now=NOW, **kw)


# -- headers ----------------------------------------------------------------------------------------

def test_rfc5424_header_with_structured_data_and_bom():
    m = parse_header('<86>1 2026-11-28T19:59:58.123+01:00 web1 sshd 4242 ID47 [origin ip="10.0.0.1"][x@1 a="b\\]"] '
                     "\ufeffAccepted publickey for alice from 10.0.0.9 port 5000 ssh2", now=NOW)
    assert m.rfc == "5424" and m.facility == "authpriv" and m.severity == "info"
    assert m.timestamp == datetime(2026, 11, 28, 18, 59, 58, 123000, tzinfo=UTC)
    assert (m.hostname, m.app, m.procid, m.msgid) == ("web1", "sshd", "4242", "ID47")
    assert m.structured_data == '[origin ip="10.0.0.1"][x@1 a="b\\]"]'
    assert m.message.startswith("Accepted publickey")


def test_rfc5424_nil_fields_take_the_receive_time():
    m = parse_header("<13>1 - - - - - -", now=NOW)
    assert (m.timestamp, m.hostname, m.app, m.message) == (NOW, None, None, "")


def test_rfc3164_with_and_without_hostname():
    with_host = parse_header("<38>Nov 28 19:00:01 gw sshd[77]: hello", now=NOW)
    assert (with_host.hostname, with_host.app, with_host.procid, with_host.message) == ("gw", "sshd", "77", "hello")
    without = parse_header("<38>Nov 28 19:00:01 sshd[77]: hello", now=NOW)
    assert (without.hostname, without.app, without.message) == (None, "sshd", "hello")
    assert with_host.facility == "auth" and with_host.severity == "info"


def test_rfc3164_layout_with_an_rfc3339_timestamp_as_rsyslog_forwards_it():
    m = parse_header("<86>2026-11-28T19:00:01.250+01:00 relay sudo[5]: hi", now=NOW)
    assert (m.rfc, m.hostname, m.app, m.procid, m.message) == ("3164", "relay", "sudo", "5", "hi")
    assert m.timestamp == datetime(2026, 11, 28, 18, 0, 1, 250000, tzinfo=UTC)


def test_year_inference_never_dates_a_line_in_the_future():
    # Read on 28 Nov 2026: December is last year's, June this year's.
    assert one("Dec 10 06:55:46 h sshd[1]: x")["timestamp"].startswith("2025-12-10T06:55:46")
    assert one("Jun 14 15:16:01 h sshd[1]: x")["timestamp"].startswith("2026-06-14")
    new_year = datetime(2027, 1, 1, 0, 0, 30, tzinfo=UTC)
    late = parse_line("Dec 31 23:59:59 h app: x", now=new_year)
    assert late["timestamp"].startswith("2026-12-31T23:59:59")
    # A sender whose clock is two minutes ahead across New Year: next year's date, clamped to now.
    ahead = parse_line("Jan  1 00:02:30 h app: x", now=datetime(2026, 12, 31, 23, 59, 0, tzinfo=UTC))
    assert ahead["timestamp"] == "2026-12-31T23:59:00+00:00"
    assert ahead["metadata"]["sender_timestamp"] == "Jan  1 00:02:30"
    # 29 February in a year without one falls back to the last leap year.
    assert parse_line("Feb 29 10:00:00 h app: x", now=datetime(2027, 3, 1, tzinfo=UTC))["timestamp"].startswith(
        "2024-02-29")
    future = one("<13>1 2030-01-01T00:00:00Z h app - - - x")
    assert datetime.fromisoformat(future["timestamp"]) == NOW


def test_zone_from_settings_and_per_source():
    line = "Nov 28 10:00:00 berlin-host app: x"
    assert one(line)["timestamp"] == "2026-11-28T10:00:00+00:00"
    assert one(line, zone="Asia/Shanghai")["timestamp"] == "2026-11-28T02:00:00+00:00"
    assert one(line, zones={"berlin-host": "Europe/Berlin"})["timestamp"] == "2026-11-28T09:00:00+00:00"
    with pytest.raises(SyslogError, match="IANA"):
        zone_of("Mars/Olympus")


# -- the parsers ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("line", "event_type", "outcome", "user", "ip", "extra"), [
    ("Dec 10 06:55:48 LabSZ sshd[24200]: Failed password for invalid user webmaster from 173.234.31.186 port 38926 ssh2",
     "user_login", "failure", "webmaster", "173.234.31.186", {"method": "password", "invalid_user": True, "port": 38926}),
    ("Dec 10 07:07:38 LabSZ sshd[24206]: Failed password for root from 112.95.230.3 port 41220 ssh2",
     "user_login", "failure", "root", "112.95.230.3", {"invalid_user": False}),
    ("Dec 10 09:32:20 LabSZ sshd[24680]: Accepted password for fztu from 119.137.62.142 port 49116 ssh2",
     "user_login", "success", "fztu", "119.137.62.142", {"method": "password"}),
    ("Nov 28 10:00:00 h sshd[5]: Accepted publickey for deploy from 2001:db8::7 port 5022 ssh2: ED25519 SHA256:abc",
     "user_login", "success", "deploy", "2001:db8::7", {"method": "publickey", "key": "ED25519 SHA256:abc"}),
    ("Dec 10 06:55:46 LabSZ sshd[24200]: Invalid user webmaster from 173.234.31.186",
     "ssh_invalid_user", "failure", "webmaster", "173.234.31.186", {}),
    ("Nov 28 10:00:00 h sshd[5]: Connection closed by authenticating user root 10.1.2.3 port 52116 [preauth]",
     "ssh_connection_closed", "failure", "root", "10.1.2.3", {"preauth": True}),
    ("Dec 10 06:55:46 LabSZ sshd[24200]: reverse mapping checking getaddrinfo for ns.marryaldkfaczcz.com "
     "[173.234.31.186] failed - POSSIBLE BREAK-IN ATTEMPT!",
     "ssh_break_in_attempt", "unknown", "host:LabSZ", "173.234.31.186", {"reverse_name": "ns.marryaldkfaczcz.com"}),
    ("Dec 10 07:13:56 LabSZ sshd[24227]: message repeated 5 times: [ Failed password for root from 5.36.59.76 "
     "port 42393 ssh2]", "user_login", "failure", "root", "5.36.59.76", {"repeated": 5}),
    ("Dec 10 06:55:46 LabSZ sshd[24200]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 "
     "tty=ssh ruser= rhost=173.234.31.186  user=root", "auth_failure", "failure", "root", "173.234.31.186",
     {"pam_service": "sshd", "rhost": "173.234.31.186"}),
    ("Jun 15 02:04:59 combo sshd(pam_unix)[20882]: authentication failure; logname= uid=0 euid=0 tty=NODEVssh "
     "ruser= rhost=220-135-151-1.hinet-ip.hinet.net  user=root", "auth_failure", "failure", "root", None,
     {"rhost": "220-135-151-1.hinet-ip.hinet.net", "pam_module": "pam_unix"}),
    ("Nov 28 10:00:00 h sudo[9]:    alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/id",
     "sudo", "success", "alice", None, {"target_user": "root", "cwd": "/home/alice", "command": "/usr/bin/id"}),
    ("Nov 28 10:00:00 h sudo[9]:    mallory : 3 incorrect password attempts ; TTY=pts/1 ; PWD=/tmp ; USER=root ; "
     "COMMAND=/bin/sh", "sudo", "failure", "mallory", None, {"reason": "3 incorrect password attempts"}),
    ("Nov 28 10:00:00 h sudo[9]: eve : user NOT in sudoers ; TTY=pts/2 ; PWD=/ ; USER=root ; COMMAND=/bin/ls",
     "sudo", "failure", "eve", None, {"target_user": "root"}),
    ("Nov 28 10:00:00 h sudo[9]: pam_unix(sudo:auth): authentication failure; logname=bob uid=1000 euid=0 "
     "tty=/dev/pts/0 ruser=bob rhost=  user=bob", "sudo", "failure", "bob", None, {"target_user": "bob"}),
    ("Nov 28 10:00:00 h su[9]: FAILED su for root by alice", "su", "failure", "alice", None, {"target_user": "root"}),
    ("Nov 28 10:00:00 h su[9]: Successful su for root by alice", "su", "success", "alice", None, {}),
    ("Nov 28 10:00:00 h su[9]: (to root) alice on pts/3", "su", "success", "alice", None, {"tty": "pts/3"}),
    ("Nov 28 10:00:00 h su[9]: FAILED SU (to root) alice on pts/3", "su", "failure", "alice", None, {}),
    ("Nov 28 10:00:00 h su[9]: pam_unix(su:auth): authentication failure; logname=alice uid=1000 euid=0 "
     "tty=/dev/pts/3 ruser=alice rhost=  user=root", "su", "failure", "alice", None, {"target_user": "root"}),
    ("Jun 15 04:06:18 combo su(pam_unix)[21416]: session opened for user cyrus by (uid=0)",
     "su", "success", "root", None, {"target_user": "cyrus"}),
    ("Jun 15 04:06:19 combo su(pam_unix)[21416]: session closed for user cyrus",
     "syslog_message", "unknown", "host:combo", None, {}),
    ("Jun 14 15:16:02 combo kernel: Linux version 2.6.5-1.358", "syslog_message", "unknown", "host:combo", None, {}),
])
def test_each_parser(line, event_type, outcome, user, ip, extra):
    event = one(line)
    assert (event["event_type"], event["outcome"], event["user_id"]) == (event_type, outcome, user)
    assert event.get("source_ip") == ip
    for key, value in extra.items():
        assert event["metadata"][key] == value, key
    assert event["metadata"]["message"] in line


def test_hostile_lines_become_storable_events():
    nasty = "<13>Nov 28 10:00:00 h\x00st app\x07: \x1b[31mred\x00 " + "é" * 5000
    event = one(nasty)
    assert event["event_type"] == "syslog_message"
    text = str(event)
    assert "\x00" not in text and "\x1b" not in text and "#033[31mred#000" in event["metadata"]["message"]
    assert len(event["metadata"]["message"].encode()) <= 4096
    for garbage in ["", "<999>", "<13>1", "no header at all", "<13>Foo 99 99:99:99 x", "\ufeff" * 3, "[" * 1000]:
        e = one(garbage)
        assert e["event_type"] == "syslog_message" and e["timestamp"] == NOW.isoformat()
    hostile_user = one("Nov 28 10:00:00 h sshd[1]: Failed password for a\tb from 1.2.3.4 port 1 ssh2")
    assert hostile_user["user_id"] == "a#011b"
    # A name typed at the login prompt cannot pose as one of our principals (host:..., apikey:...).
    for name in ("host:web1", "apikey:deploy"):
        posing = one(f"Nov 28 10:00:00 h sshd[1]: Invalid user {name} from 1.2.3.4 port 1")
        assert posing["user_id"] == name.replace(":", "#072")


# Lines that used to raise out of parse_line (and so stalled the listener's batch for good).
POISON = [
    "<38>1 0001-01-01T00:00:00+01:00 h a 1 - - x",  # astimezone: OverflowError
    "<38>Jan  1 00:00:00 0001 h a: x",
    "Nov 28 10:00:00 h sshd[1]: Failed password for root from 1.2.3.4 port " + "9" * 5000 + " ssh2",
    "Nov 28 10:00:00 h sshd[1]: Accepted password for root from 1.2.3.4 port " + "7" * 5000,
    "Nov 28 10:00:00 h sshd[1]: message repeated " + "3" * 5000 + " times: [ Failed password for x from "
    "1.2.3.4 port 22 ssh2]",
    "Nov 28 10:00:00 h sshd(pam_unix)[1]: PAM " + "5" * 5000 + " more authentication failures; logname= uid=0 "
    "euid=0 tty=ssh ruser= rhost=1.2.3.4  user=root",
]


@pytest.mark.parametrize("line", POISON)
def test_lines_that_used_to_raise_become_events(line):
    event = one(line)
    assert event["event_type"] in {"syslog_message", "user_login", "auth_failure"}
    assert event["metadata"]["message"]


def test_an_out_of_range_date_is_received_now_and_keeps_its_text():
    event = one(POISON[0])
    assert event["timestamp"] == NOW.isoformat() and event["event_type"] == "syslog_message"


def test_an_absurd_port_is_dropped_but_the_login_failure_is_kept():
    event = one(POISON[2])
    assert (event["event_type"], event["outcome"], event["user_id"]) == ("user_login", "failure", "root")
    assert event["metadata"].get("port") is None
    assert one(POISON[2].replace("9" * 5000, "70000"))["metadata"].get("port") is None
    assert one(POISON[2].replace("9" * 5000, "2222"))["metadata"]["port"] == 2222


def test_a_parser_bug_keeps_the_line_as_a_raw_message_with_the_reason(monkeypatch):
    from ingest.syslog import events

    def broken(app, message):
        raise RuntimeError("parser bug")

    monkeypatch.setattr(events, "PARSERS", (broken,))
    line = "Nov 28 10:00:00 h sshd[1]: Failed password for root from 1.2.3.4 port 1 ssh2"
    event = one(line)
    assert event["event_type"] == "syslog_message" and event["timestamp"] == NOW.isoformat()
    assert event["metadata"]["parse_error"] == "RuntimeError: parser bug"
    assert event["metadata"]["message"] == line
    assert event["event_id"] == one(line)["event_id"]  # a resent copy is still stored once


def test_occurrence_counting_holds_digests_not_lines():
    import tracemalloc

    from ingest.syslog.events import Occurrences

    seen = Occurrences(1_000)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(5_000):  # 5,000 distinct 16 KB lines: 80 MB if the lines were kept
        seen.next(f"{i:08d}" + "x" * 16_000, "tcp/peer/1")
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert len(seen) == 1_000
    assert grown < 1_000_000, grown
    assert seen.next("00004999" + "x" * 16_000, "tcp/peer/1") == 1  # still counted
    assert seen.next("00004999" + "x" * 16_000, "tcp/peer/2") == 0  # per session


def test_event_ids_are_deterministic_and_count_identical_lines():
    line = "Dec 10 07:13:56 LabSZ sshd[24227]: Failed password for root from 5.36.59.76 port 42393 ssh2"
    first, again = one(line), one(line)
    assert first["event_id"] == again["event_id"]
    assert one(line, occurrence=1)["event_id"] != first["event_id"]
    assert one(line.replace("LabSZ", "other"))["event_id"] != first["event_id"]


# -- real logs nobody here wrote -----------------------------------------------------------------------

def counts(name: str) -> Counter:
    events = list(parse_file(LOGHUB / name, now=NOW))
    assert len(events) == 2000 and len({e["event_id"] for e in events}) == 2000
    return Counter((e["event_type"], e["outcome"]) for e in events)


def test_openssh_2k_counts():
    c = counts("OpenSSH_2k.log")
    # 518 "Failed password" lines (2 of them "message repeated 5 times") + 4 "Failed none".
    assert c[("user_login", "failure")] == 524
    assert c[("user_login", "success")] == 1
    assert c[("ssh_invalid_user", "failure")] == 113
    assert c[("ssh_break_in_attempt", "unknown")] == 85
    assert c[("auth_failure", "failure")] == 504
    assert sum(c.values()) - c[("syslog_message", "unknown")] == 1227


def test_linux_2k_counts():
    c = counts("Linux_2k.log")
    assert c[("auth_failure", "failure")] == 490
    assert c[("su", "success")] == 86
    assert c[("user_login", "failure")] == 0 and c[("user_login", "success")] == 0
    assert c[("syslog_message", "unknown")] == 1424


def test_an_app_named_like_the_platform_is_kept_as_coming_through_syslog():
    """Auditwatch's own logs forwarded to syslog must be stored, not refused as posing as its records."""
    from storage.platform import is_platform_source

    for app, source in [("auditwatch", "syslog:auditwatch"), ("AuditWatch-worker", "syslog:AuditWatch-worker"),
                        ("sshd", "sshd"), (None, "syslog")]:
        header = f"<38>1 2026-11-28T19:59:58Z web1 {app or '-'} 1 - - started"
        event = one(header)
        assert event["source"] == source and not is_platform_source(event["source"])


@given(sender=st.text(max_size=40), raw=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300),
       occurrence=st.integers(min_value=0, max_value=10_000))
@settings(max_examples=300, deadline=None)
def test_the_fast_event_id_is_the_uuid5_every_stored_syslog_event_already_has(sender, raw, occurrence):
    """Ids are fixed for ever (a resent line must map to the id stored years ago): the string built without a
    UUID object is exactly uuid5's, for any sender, line and occurrence."""
    from ingest.syslog.events import _event_id_text, derive_event_id

    assert _event_id_text(sender, raw, occurrence) == str(derive_event_id(sender, raw, occurrence))


@given(text=st.text(max_size=200))
@settings(max_examples=300, deadline=None)
def test_escaping_control_characters_is_unchanged_by_its_fast_path(text):
    import re

    from ingest.syslog.events import _escape

    assert _escape(text) == re.sub(r"[\x00-\x1f\x7f]", lambda m: f"#{ord(m.group(0)):03o}", text)
