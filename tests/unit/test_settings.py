"""Settings: parsing, validation errors and secret masking."""

from __future__ import annotations

import pytest

from lowtide import ConfigError, Settings
from lowtide.settings import parse_bool, redact_url, validate_url


@pytest.mark.parametrize("text", ["true", "TRUE", "1", "yes", "Yes", "on", " y "])
def test_switches_accept_true_spellings(text: str) -> None:
    assert parse_bool(text) is True


@pytest.mark.parametrize("text", ["false", "0", "no", "off", "N", ""])
def test_switches_accept_false_spellings(text: str) -> None:
    assert parse_bool(text) is False


def test_switch_rejects_garbage_with_the_variable_name() -> None:
    with pytest.raises(ConfigError, match="SUSPEND_REDIS"):
        Settings.from_env({"SUSPEND_REDIS": "maybe"})


def test_from_env_reads_lowtide_names_first_then_seed_names() -> None:
    s = Settings.from_env(
        {
            "REDIS_URL": "redis://other:1/0",
            "LOWTIDE_REDIS_URL": "redis://main:6380/2",
            "SUSPEND_REDIS": "true",
            "TRACK_REDIS_METRICS": "1",
            "LOWTIDE_NAMESPACE": "app",
            "LOWTIDE_INSTANCE": "web-1",
            "LOWTIDE_PROVIDER": "Upstash",
            "LOWTIDE_READ_REGIONS": "2",
        }
    )
    assert s.url == "redis://main:6380/2"
    assert s.suspend is True
    assert s.track_metrics is True
    assert (s.namespace, s.instance, s.provider, s.read_regions) == ("app", "web-1", "upstash", 2)


def test_from_env_seed_names_alone() -> None:
    s = Settings.from_env({"REDIS_URL": "redis://h:1", "SUSPEND_REDIS": "no"})
    assert s.url == "redis://h:1"
    assert s.suspend is False


def test_lowtide_switch_wins_over_seed_switch() -> None:
    s = Settings.from_env({"LOWTIDE_SUSPEND": "false", "SUSPEND_REDIS": "true"})
    assert s.suspend is False


def test_overrides_win_over_env() -> None:
    s = Settings.from_env({"LOWTIDE_NAMESPACE": "a"}, namespace="b")
    assert s.namespace == "b"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://h:1", "unsupported scheme"),
        ("redis://", "no host"),
        ("redis://h:99999", "(?i)port"),
        ("redis://h:1/abc", "database must be a number"),
        ("", "empty"),
        ("unix://", "socket path"),
    ],
)
def test_bad_urls_are_config_errors(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings(url=url)


def test_bad_url_error_masks_the_password() -> None:
    with pytest.raises(ConfigError) as info:
        Settings(url="http://user:hunter2@h:1")
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("valkey://:hunter2@h:99999", "port must be a number"),
        ("redis://user:hunter2@h:abc", "port must be a number"),
        ("redis://:hun/ter2@h:6379", "percent-encoded"),  # the parser cannot find the host
    ],
)
def test_a_bad_port_after_a_password_is_named_and_the_password_masked(
    url: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        Settings(url=url)
    assert "hunter2" not in str(info.value)
    assert "hun/" not in str(info.value)


def test_valkey_scheme_is_accepted() -> None:
    assert validate_url("valkey://h:1/0") == "redis://h:1/0"
    assert validate_url("valkeys://h:1") == "rediss://h:1"


def test_unknown_provider() -> None:
    with pytest.raises(ConfigError, match="unknown provider"):
        Settings(provider="memcached")  # type: ignore[arg-type]


@pytest.mark.parametrize("field", ["default_ttl", "max_staleness", "op_timeout", "reconnect_min"])
def test_negative_durations_are_rejected(field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        Settings(**{field: -1})


def test_non_numeric_env_duration() -> None:
    with pytest.raises(ConfigError, match="LOWTIDE_DEFAULT_TTL"):
        Settings.from_env({"LOWTIDE_DEFAULT_TTL": "five"})


def test_nan_duration_rejected() -> None:
    with pytest.raises(ConfigError):
        Settings(max_staleness=float("nan"))


@pytest.mark.parametrize("ns", ["", "a:b", "x" * 65, "with space", "{tag}"])
def test_bad_namespace(ns: str) -> None:
    with pytest.raises(ConfigError, match="namespace"):
        Settings(namespace=ns)


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(AttributeError):
        s.namespace = "other"  # type: ignore[misc]
    assert s.with_(namespace="other").namespace == "other"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://user:hunter2@h:1/0", "redis://user:***@h:1/0"),
        ("redis://:hunter2@h:1", "redis://:***@h:1"),
        ("rediss://hunter2@h:1", "rediss://***@h:1"),
        ("redis://h:1", "redis://h:1"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_repr_never_shows_password() -> None:
    s = Settings(url="redis://user:hunter2@h:1/0")
    assert "hunter2" not in repr(s)
    assert "hunter2" not in str(s)
    assert s.url == "redis://user:hunter2@h:1/0"  # the real URL is still usable
