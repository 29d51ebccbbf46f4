"""R9: sensitive keys and payment card numbers never leave the redactor."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storage.redaction import DEFAULT_SENSITIVE_KEYS, REDACTED, REDACTED_CARD, Redactor, card_like, luhn_ok

redactor = Redactor()

def with_check_digit(body: str) -> str:
    """``body`` followed by the digit that makes it pass Luhn."""
    return next(body + d for d in "0123456789" if luhn_ok(body + d))


# Well-known test numbers of each scheme, all passing Luhn.
CARDS = {
    "visa16": "4111111111111111",
    "visa13": "4222222222222",
    "mastercard": "5555555555554444",
    "amex15": "378282246310005",
    "discover": "6011111111111117",
    "diners14": "30569309025904",
    "jcb": "3530111333300000",
    "nineteen": with_check_digit("621234567890123200"),
}


def test_test_cards_pass_luhn_and_neighbours_do_not():
    for number in CARDS.values():
        assert luhn_ok(number), number
        last = int(number[-1])
        assert not luhn_ok(number[:-1] + str((last + 1) % 10))
    assert len(CARDS["nineteen"]) == 19


# -- sensitive keys -----------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [
    "password", "Password", "PASSWORD", "new_password", "old-password", "passwordHash", "db_Password",
    "passwd", "pwd", "secret", "client_secret", "Client-Secret", "SECRET_KEY", "token", "access_token",
    "accessToken", "refresh-token", "X-Auth-Token", "api_key", "apiKey", "API-KEY", "Api_Key", "x-api-key",
    "apikey", "authorization", "Authorization", "AUTHORIZATION", "proxy-authorization", "auth", "cookie",
    "Set-Cookie", "session", "session_id", "private_key", "privateKey", "credential", "credentials",
    "card_number", "cardNumber", "cvv", "p_a_s_s_w_o_r_d", "pass-word",
])
def test_sensitive_keys_are_redacted(key):
    assert redactor.is_sensitive(key)
    assert redactor.redact({key: "hunter2", "kept": "value"}) == {key: REDACTED, "kept": "value"}


@pytest.mark.parametrize("key", ["user", "username", "email", "action", "count", "path", "status", "ip",
                                 "pass", "key", "card", "bytes"])
def test_ordinary_keys_are_kept(key):
    assert not redactor.is_sensitive(key)
    assert redactor.redact({key: "value"}) == {key: "value"}


@pytest.mark.parametrize("value", ["hunter2", 12345, 1.5, True, None, ["a", "b"], {"nested": {"deep": 1}}, ""])
def test_the_whole_value_under_a_sensitive_key_goes(value):
    assert redactor.redact({"password": value}) == {"password": REDACTED}


def test_sensitive_keys_at_any_depth():
    metadata = {
        "request": {
            "headers": {"Authorization": "Bearer abc.def", "Accept": "text/html"},
            "body": [{"username": "alice", "password": "hunter2"}, {"items": [{"api_key": "k-1"}]}],
        },
        "deep": {"a": {"b": {"c": {"d": {"e": {"client_secret": "s3cr3t", "f": 1}}}}}},
    }
    assert redactor.redact(metadata) == {
        "request": {
            "headers": {"Authorization": REDACTED, "Accept": "text/html"},
            "body": [{"username": "alice", "password": REDACTED}, {"items": [{"api_key": REDACTED}]}],
        },
        "deep": {"a": {"b": {"c": {"d": {"e": {"client_secret": REDACTED, "f": 1}}}}}},
    }


def test_redaction_does_not_mutate_its_input():
    metadata = {"password": "x", "list": [{"token": "y"}], "card": "4111111111111111"}
    before = copy.deepcopy(metadata)
    redactor.redact(metadata)
    assert metadata == before


def test_custom_keys_replace_the_defaults():
    custom = Redactor(["ssn", "Mothers-Maiden_Name"])
    assert custom.redact({"SSN": "123-45-6789", "user_ssn": "x", "mothersMaidenName": "Smith", "password": "p"}) == {
        "SSN": REDACTED, "user_ssn": REDACTED, "mothersMaidenName": REDACTED, "password": "p",
    }


def test_defaults_plus_extra_keys():
    extended = Redactor((*DEFAULT_SENSITIVE_KEYS, "ssn"))
    assert extended.redact({"ssn": 1, "password": 2, "name": 3}) == {"ssn": REDACTED, "password": REDACTED, "name": 3}


def test_scalars_and_empty_containers_pass_through():
    for value in (None, True, False, 0, 7, 1.25, "", "plain text", [], {}):
        assert redactor.redact(value) == value


# -- payment cards --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("number", CARDS.values(), ids=CARDS.keys())
def test_card_numbers_are_masked(number):
    assert redactor.redact({"note": number}) == {"note": REDACTED_CARD}


@pytest.mark.parametrize("text", [
    "4111 1111 1111 1111", "4111-1111-1111-1111", "4111 1111-1111 1111", "3782 822463 10005",
    "4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1",
])
def test_grouped_card_numbers_are_masked(text):
    assert redactor.redact(text) == REDACTED_CARD


@pytest.mark.parametrize(("text", "expected"), [
    ("paid with 4111111111111111 yesterday", f"paid with {REDACTED_CARD} yesterday"),
    ("card=4111-1111-1111-1111;exp=12/29", f"card={REDACTED_CARD};exp=12/29"),
    ("x4111111111111111y", f"x{REDACTED_CARD}y"),
    ("two: 4111111111111111, 5555 5555 5555 4444.", f"two: {REDACTED_CARD}, {REDACTED_CARD}."),
    ("card 4111111111111111 cvv 123", f"card {REDACTED_CARD} cvv 123"),
    # digits right beside the card must not hide it
    ("4111111111111111 123", f"{REDACTED_CARD} 123"),
    ("4111 1111 1111 1111 12", f"{REDACTED_CARD} 12"),
    ("qty 1234 5678 4111 1111 1111 1111", f"qty 1234 5678 {REDACTED_CARD}"),
])
def test_cards_inside_longer_strings_are_masked(text, expected):
    assert redactor.redact(text) == expected


@pytest.mark.parametrize("number", [4111111111111111, 5555555555554444, 378282246310005, -4111111111111111,
                                    int(CARDS["nineteen"])])
def test_card_numbers_sent_as_integers_are_masked(number):
    assert redactor.redact({"pan": number}) == {"pan": REDACTED_CARD}


@pytest.mark.parametrize("value", [
    "4111111111111112",  # fails Luhn
    "4111 1111 1111 1112",
    "123456789012",  # 12 digits
    "12345678901234567890123",  # one run longer than any card
    "order 2024-06-01 12:00:00 ref 98765",
    "+1 (555) 123-4567",
    "6f1c1f2e-8a4f-4c8e-9d55-1f2f3f4f5f6f",
    "ids 1234567 7654321",
])
def test_non_card_digit_runs_are_kept(value):
    assert redactor.redact({"v": value}) == {"v": value}


@pytest.mark.parametrize("value", [4111111111111112, 123456789012, 10**19 + 7, 42, True, 1.5])
def test_non_card_numbers_are_kept(value):
    assert redactor.redact({"v": value}) == {"v": value}


def test_times_and_ids_that_pass_luhn_but_no_issuer_uses_are_kept():
    """Seen in forwarded OCSF JSON: a 13-digit epoch-milliseconds `time` passing Luhn was masked as a card."""
    millis = with_check_digit("176478120000")  # 2025-11-26, in milliseconds, made Luhn-valid
    micros = with_check_digit("176478120000000")  # the same in microseconds (16 digits)
    other = with_check_digit("8" * 15)  # no payment card starts with 8
    for value in (millis, micros, other, f"time={millis}", int(millis), int(micros)):
        assert redactor.redact({"time": value}) == {"time": value}
    assert redactor.redact_text(f"t={millis}") == f"t={millis}"


def test_uuids_are_never_taken_for_cards():
    """Seen in the forwarder's TLS test: an event id's dash-joined digits (41605-3427-4624: 13 digits, Luhn-valid,
    Visa-shaped) were masked inside the id."""
    uuid_text = "56e41605-3427-4624-82c5-24f1cc2c7ff6"
    assert card_like("4160534274624")
    for value in (uuid_text, f'{{"uid":"{uuid_text}"}}', f"id {uuid_text.upper()} paid 4111111111111111"):
        out = redactor.redact(value)
        assert uuid_text in out or uuid_text.upper() in out
        assert ("4111111111111111" in value) == (REDACTED_CARD in out)


def test_luhn_valid_but_too_short_or_long_runs_are_kept():
    short = with_check_digit("4" * 11)  # 12 digits
    long = with_check_digit("4" * 19)  # 20 digits
    assert redactor.redact([short, long]) == [short, long]
    assert redactor.redact([int(short), int(long)]) == [int(short), int(long)]


def test_lists_are_walked():
    metadata = {"cards": ["4111111111111111", "not a card", 5555555555554444, ["378282246310005"]],
                "tokens": ["a", "b"]}
    assert redactor.redact(metadata) == {
        "cards": [REDACTED_CARD, "not a card", REDACTED_CARD, [REDACTED_CARD]],
        "tokens": REDACTED,
    }


def test_a_top_level_list_is_walked():
    assert redactor.redact([{"password": 1}, "4111111111111111"]) == [{"password": REDACTED}, REDACTED_CARD]


# -- properties -------------------------------------------------------------------------------------------------

# Card-shaped: 13-19 digits starting with an issuer's 2-6 (13 digits: Visa's 4 only), Luhn-valid.
card_bodies = st.integers(13, 18).flatmap(
    lambda n: st.tuples(st.sampled_from("23456"), st.text(alphabet="0123456789", min_size=n - 1, max_size=n - 1))
).map("".join) | st.text(alphabet="0123456789", min_size=11, max_size=11).map(lambda rest: "4" + rest)
cards = card_bodies.map(with_check_digit)
words = st.text(alphabet="abcdefghij XYZ:=,;()", max_size=15)


@st.composite
def formatted_cards(draw) -> str:
    number = draw(cards)
    groups = []
    rest = number
    while rest:
        size = draw(st.integers(1, 6))
        groups.append(rest[:size])
        rest = rest[size:]
    seps = draw(st.lists(st.sampled_from(["", " ", "-"]), min_size=len(groups) - 1, max_size=len(groups) - 1))
    return groups[0] + "".join(sep + group for sep, group in zip(seps, groups[1:], strict=True))


@settings(max_examples=200, deadline=None)
@given(before=words, card=formatted_cards(), after=words)
def test_property_any_card_between_words_is_masked(before, card, after):
    assert redactor.redact(before + card + after) == before + REDACTED_CARD + after


@settings(max_examples=200, deadline=None)
@given(card=cards, cvv=st.text(alphabet="0123456789", min_size=3, max_size=4))
def test_property_a_card_beside_other_digits_never_survives(card, cvv):
    for text in (f"{card} {cvv}", f"{cvv} {card}", f"{cvv}-{card}-{cvv}"):
        out = redactor.redact(text)
        assert REDACTED_CARD in out
        assert card not in out


json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
    | cards | formatted_cards(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["password", "Api-Key", "note", "n", "items"]) | st.text(max_size=8), children,
                      max_size=4),
    max_leaves=30,
)


def _leaves(obj: Any, under_sensitive: bool = False):
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from _leaves(value, under_sensitive or redactor.is_sensitive(key))
    elif isinstance(obj, list):
        for value in obj:
            yield from _leaves(value, under_sensitive)
    else:
        yield obj, under_sensitive


@settings(max_examples=200, deadline=None)
@given(metadata=json_like)
def test_property_redaction_is_total_idempotent_and_leaves_nothing_sensitive(metadata):
    once = redactor.redact(metadata)
    assert redactor.redact(once) == once
    for leaf, sensitive in _leaves(once):
        if sensitive:
            assert leaf == REDACTED
            continue
        if isinstance(leaf, int) and not isinstance(leaf, bool) and 13 <= len(str(abs(leaf))) <= 19:
            assert not card_like(str(abs(leaf)))
        if isinstance(leaf, str):
            for run in re.findall(r"\d+", leaf):
                assert not card_like(run)


@settings(max_examples=300, deadline=None)
@given(metadata=st.dictionaries(st.sampled_from(["password", "Api-Key", "note", "n", "items"]) | st.text(max_size=8),
                                json_like, max_size=6))
def test_property_redact_object_is_redact_as_a_new_dict(metadata):
    before = copy.deepcopy(metadata)
    out = redactor.redact_object(metadata)
    assert out == redactor.redact(metadata)
    assert list(out) == list(metadata)  # key order kept: the stored jsonb and the leaf hash depend on it
    assert out is not metadata and metadata == before


def test_redact_object_decides_card_sized_integers_like_redact():
    card = int(CARDS["visa16"])
    metadata = {"n": card, "m": -card, "epoch_ms": 1_700_000_000_000, "flag": True, "ratio": 4111111111111111.0}
    assert redactor.redact_object(metadata) == redactor.redact(metadata)
    assert redactor.redact_object(metadata)["n"] == REDACTED_CARD


# -- free-text fields (issue 14 #13: user_agent, resource_id, source) ----------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("/export?id=7&token=abc123&page=2", "/export?id=7&token=[REDACTED]&page=2"),
    ("/x?Session-Id=s3cr3t;path=/", "/x?Session-Id=[REDACTED];path=/"),
    ("sync/2 Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig", "sync/2 Authorization: Bearer [REDACTED]"),
    ("probe basic dXNlcjpwYXNzd29yZA==", "probe basic [REDACTED]"),
    ("key aw_0123456789abcdef0123456789abcdef_AbC-dEf_123 leaked", "key [REDACTED] leaked"),
    ("order 4111-1111-1111-1111", "order [REDACTED:card]"),
    ("Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
     "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0"),
    ("doc:42?page=3&sort=asc", "doc:42?page=3&sort=asc"),
    ("", ""),
    (None, None),
])
def test_redact_text(text, expected):
    redactor = Redactor()
    assert redactor.redact_text(text) == expected
    assert redactor.redact_text(expected) == expected  # idempotent: the bus writer redacts again


def test_redact_text_honours_configured_keys():
    assert Redactor(("ssn",)).redact_text("/p?ssn=123-45-6789&x=1") == "/p?ssn=[REDACTED]&x=1"


# -- long digit runs: every start searched at once ------------------------------------------------------------

_run_groups = st.lists(st.text(alphabet="0123456789" * 6 + "45" * 6 + "\u0665\uff14", min_size=1, max_size=6),
                       min_size=1, max_size=120)


@settings(max_examples=300, deadline=None)
@given(groups=_run_groups, separators=st.lists(st.sampled_from(" -"), min_size=119, max_size=119))
def test_property_the_vectorised_search_of_a_long_run_masks_what_the_per_start_search_masks(
        groups, separators, monkeypatch_module):
    """``_card_ends`` (used for runs of more than ``_MANY_GROUPS`` groups) finds, for every start, the card the
    per-start loop finds: the masked texts are identical, Unicode digits and 13-digit Visas included."""
    from storage import redaction

    run = groups[0] + "".join(sep + g for sep, g in zip(separators, groups[1:], strict=False))
    monkeypatch_module.setattr(redaction, "_MANY_GROUPS", 10**9)
    per_start = redaction._mask_run(run)
    monkeypatch_module.setattr(redaction, "_MANY_GROUPS", 0)
    assert redaction._mask_run(run) == per_start


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_a_long_run_of_digit_groups_with_cards_in_it_is_masked_like_a_short_one():
    card = "5555 5555 5555 4444"
    text = " ".join(["7"] * 200) + " " + card + " " + " ".join(["5"] * 200) + " " + CARDS["visa13"]
    masked = redactor.redact_text(text)
    assert "5555 5555 5555 4444" not in masked and CARDS["visa13"] not in masked
    assert masked.count(REDACTED_CARD) >= 2
    assert masked.startswith("7 7 7 ")


@settings(max_examples=500, deadline=None)
@given(text=st.text(alphabet="0123456789 -a\u0665", max_size=200))
def test_property_only_runs_of_13_digits_are_searched_and_nothing_else_changes(text):
    """``_mask_digits`` looks only at runs of 13+ digits; masking every run of digit groups gives the same text."""
    from storage import redaction

    every_run = re.compile(r"\d+(?:[ -]\d+)*")
    assert redaction._mask_digits(text) == every_run.sub(lambda m: redaction._mask_run(m.group(0)), text)
