from pathlib import Path

import pytest

from auditwatch.settings import Settings, SettingsError, load


def test_defaults_then_file_then_environment_then_overrides(tmp_path: Path):
    config = tmp_path / "auditwatch.toml"
    config.write_text('port = 9000\nrate_limit_per_minute = 50\nredact_keys = ["ssn"]\n')
    environ = {"AUDITWATCH_PORT": "9100", "AUDITWATCH_GEOIP": "false"}
    settings = load(config_file=config, environ=environ, overrides={"rate_limit_per_minute": 7})
    assert settings.port == 9100  # environment beats the file
    assert settings.rate_limit_per_minute == 7  # overrides beat everything
    assert settings.redact_keys == ("ssn",)
    assert settings.geoip is False
    assert settings.max_batch == Settings().max_batch  # untouched default


def test_environment_lists_and_paths_are_coerced():
    settings = load(config_file=None, environ={"AUDITWATCH_REDACT_KEYS": "ssn, iban", "AUDITWATCH_DATA_DIR": "/x"})
    assert settings.redact_keys == ("ssn", "iban")
    assert settings.data_dir == Path("/x")


@pytest.mark.parametrize(("environ", "message"), [
    ({"AUDITWATCH_PORT": "eighty"}, "port"),
    ({"AUDITWATCH_UNKNOWN_USERS": "maybe"}, "unknown_users"),
    ({"AUDITWATCH_DATABASE_URL": "mysql://x"}, "postgresql://"),
    ({"AUDITWATCH_GEOIP": "perhaps"}, "geoip"),
    ({"AUDITWATCH_SYSLOG_PROCESSES": "0"}, "syslog_processes` must be 1 to 64"),
    ({"AUDITWATCH_SYSLOG_PROCESSES": "65"}, "syslog_processes` must be 1 to 64"),
    ({"AUDITWATCH_WORKER_DRAIN_SECONDS": "-1"}, "worker_drain_seconds` must be 0 to 3600"),
    ({"AUDITWATCH_WORKER_DRAIN_SECONDS": "1e9"}, "worker_drain_seconds` must be 0 to 3600"),
    ({"AUDITWATCH_WORKER_DRAIN_SECONDS": "nan"}, "worker_drain_seconds` must be 0 to 3600"),
    ({"AUDITWATCH_WORKER_DRAIN_SECONDS": "soon"}, "worker_drain_seconds"),
    ({"AUDITWATCH_BUS_SIGNING_KEY": "c2hvcnQ="}, "bus_signing_key`: .* at least 32 bytes, not 5: make one with"),
    ({"AUDITWATCH_BUS_SIGNING_KEY": "A" * 44 + ",not base64!"}, "bus_signing_key`: bus signing key 2 of 2 is not base64"),
])
def test_bad_values_name_the_setting(environ, message):
    with pytest.raises(SettingsError, match=message):
        load(config_file=None, environ=environ)


def test_unknown_keys_in_a_file_are_refused(tmp_path: Path):
    config = tmp_path / "c.toml"
    config.write_text("prot = 1\n")
    with pytest.raises(SettingsError, match="unknown setting `prot`"):
        load(config_file=config, environ={})


def test_invalid_toml_is_reported_with_the_path(tmp_path: Path):
    config = tmp_path / "c.toml"
    config.write_text("port = = 1\n")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load(config_file=config, environ={})


def test_embedded_unless_a_database_url_is_set():
    assert load(config_file=None, environ={}).embedded
    assert not load(config_file=None, environ={"AUDITWATCH_DATABASE_URL": "postgresql://h/db"}).embedded
