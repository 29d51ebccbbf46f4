"""R11: PHI-tagged fields are tokenised (keyed hash, same value -> same token) or redacted before storage."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime

import orjson
import pytest

from ingest.phi import PHI_REDACTED, PhiKey, PhiKeyError, PhiRule, PhiTags, is_token
from ingest.validate import INGEST_KEY
from storage.events import EventRecord

T = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def record(event_type: str = "record_viewed", resource_id: str | None = "patients/p-17", **metadata) -> EventRecord:
    return EventRecord(event_id=uuid.uuid4(), timestamp=T, event_type=event_type, user_id="dr-who", received_at=T,
                       resource_id=resource_id, metadata={**metadata, INGEST_KEY: {"sender": "apikey:emr"}})


class Vault(list):
    def __call__(self, entries):
        self.extend(entries)


@pytest.fixture
def key() -> PhiKey:
    return PhiKey(os.urandom(32))


def rule(key: PhiKey, vault: Vault, **tags) -> PhiRule:
    return PhiRule(PhiTags.of(**tags), key=key, vault=vault)


def test_tagged_metadata_keys_are_tokenised_at_any_depth_and_the_rest_is_kept(key):
    vault = Vault()
    r = rule(key, vault, metadata_keys=("diagnosis", "MRN"))
    [out] = r.apply([record(resource_id="doc-1", diagnosis="J45.909", visit={"m_r_n": 4471, "ward": "3B"},
                            other="kept")])
    assert is_token(out.metadata["diagnosis"]) and is_token(out.metadata["visit"]["m_r_n"])
    assert out.metadata["visit"]["ward"] == "3B" and out.metadata["other"] == "kept"
    assert out.resource_id == "doc-1" and out.user_id == "dr-who"
    assert out.metadata[INGEST_KEY] == {"sender": "apikey:emr"}
    # Each token's value is in the vault, sealed: it opens to the original JSON value, bound to its token.
    sealed = dict(vault)
    assert orjson.loads(key.open(out.metadata["diagnosis"], sealed[out.metadata["diagnosis"]])) == "J45.909"
    assert orjson.loads(key.open(out.metadata["visit"]["m_r_n"], sealed[out.metadata["visit"]["m_r_n"]])) == 4471
    assert b"J45.909" not in b"".join(sealed.values())
    with pytest.raises(PhiKeyError, match="does not open"):
        key.open(out.metadata["visit"]["m_r_n"], sealed[out.metadata["diagnosis"]])


def test_the_same_value_gives_the_same_token_so_joins_still_work(key):
    vault = Vault()
    r = rule(key, vault, metadata_keys=("patient",), resources=("patients/*",))
    a, b = r.apply([record(patient="p-17"), record(resource_id="p-17", patient="p-17")])
    assert a.metadata["patient"] == b.metadata["patient"]
    assert b.resource_id == "p-17"  # not a tagged resource pattern
    assert a.resource_id != "patients/p-17" and is_token(a.resource_id)
    assert len(vault) == 2  # p-17 and patients/p-17, each once
    [c] = r.apply([record(patient="p-17")])
    assert c.metadata["patient"] == a.metadata["patient"] and len(vault) == 2  # known tokens are not re-sent
    other = rule(PhiKey(os.urandom(32)), Vault(), metadata_keys=("patient",))
    assert other.apply([record(patient="p-17")])[0].metadata["patient"] != a.metadata["patient"]


def test_a_tagged_event_type_tokenises_every_value_and_its_resource_but_not_the_sender(key):
    r = rule(key, Vault(), event_types=("record_viewed",))
    [out] = r.apply([record(resource_id="chart-9", note="asthma", codes=["J45", 3], flag=True, empty=None)])
    assert is_token(out.resource_id) and is_token(out.metadata["note"])
    assert all(is_token(c) for c in out.metadata["codes"])
    assert out.metadata["flag"] is True and out.metadata["empty"] is None
    assert out.metadata[INGEST_KEY] == {"sender": "apikey:emr"}
    untouched = record(event_type="user_login", resource_id="chart-9", note="asthma")
    assert r.apply([untouched])[0] is untouched


def test_redact_mode_keeps_nothing(key):
    r = PhiRule(PhiTags.of(metadata_keys=("diagnosis",), resources=("patients/*",)), mode="redact")
    [out] = r.apply([record(diagnosis="J45.909")])
    assert out.metadata["diagnosis"] == PHI_REDACTED and out.resource_id == PHI_REDACTED


def test_tokens_never_look_like_card_numbers_and_are_not_tokenised_twice(key):
    r = rule(key, Vault(), metadata_keys=("v",))
    tokens = [r.apply([record(v=str(i))])[0].metadata["v"] for i in range(200)]
    assert all(t[4:].isalpha() and len(t) == 36 for t in tokens)
    [again] = r.apply([record(v=tokens[0])])
    assert again.metadata["v"] == tokens[0]


def test_the_key_file_is_created_private_and_reused(tmp_path):
    path = tmp_path / "phi" / "phi.key"
    first = PhiKey.load_or_create(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert PhiKey.load_or_create(path).token(b'"x"') == first.token(b'"x"')
    path.chmod(0o644)
    with pytest.raises(PhiKeyError, match="chmod 600"):
        PhiKey.load_or_create(path)
    with pytest.raises(PhiKeyError, match="32 bytes"):
        PhiKey.from_base64("c2hvcnQ=")
    with pytest.raises(PhiKeyError, match="needs a key and a vault"):
        PhiRule(PhiTags.of(metadata_keys=("x",)))
