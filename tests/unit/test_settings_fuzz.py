"""Settings under fuzzing: any environment or keyword value gives valid Settings or a
ConfigError, never another exception, and an error never quotes a password in a URL."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from lowtide import ConfigError, Settings

SECRET = "Pw-s3cr3t-9"

URL_NAMES = ["LOWTIDE_REDIS_URL", "REDIS_URL"]
ENV_NAMES = [
    "LOWTIDE_SUSPEND",
    "SUSPEND_REDIS",
    "LOWTIDE_TRACK_METRICS",
    "LOWTIDE_NAMESPACE",
    "LOWTIDE_INSTANCE",
    "LOWTIDE_PROVIDER",
    "LOWTIDE_READ_REGIONS",
    "LOWTIDE_DEFAULT_TTL",
    "LOWTIDE_MAX_STALENESS",
    "LOWTIDE_OP_TIMEOUT",
    "LOWTIDE_CONNECT_TIMEOUT",
    "LOWTIDE_METRICS_INTERVAL",
    "LOWTIDE_INVALIDATION",
    "LOWTIDE_MAX_VALUE_BYTES",
    "LOWTIDE_FLEET_VIEW",
    "LOWTIDE_FLEET_SWITCH",
    "LOWTIDE_LISTENER_RESP3",
    "LOWTIDE_START_WAIT",
]

plain = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["inf", "-inf", "nan", "1e300", "1e-300", "0", "-1", "true", "yes", "2"]),
)
# the secret in every position a user might put it in a URL, and bare (pasted into the wrong
# variable)
urls = st.one_of(
    st.just(SECRET),
    st.builds(
        lambda host, tail, scheme: f"{scheme}://user:{SECRET}{tail}@{host}:6379/0",
        st.sampled_from(["h", "", "[::1]", "h:x"]),
        st.sampled_from(["", "/", "?", "#", "@", "%", ":"]),
        st.sampled_from(["redis", "rediss", "http", "unix"]),
    ),
    st.builds(
        lambda extra: f"redis://h:6379/0?password={SECRET}{extra}",
        st.sampled_from(["", "&foo=1", "&db=x", "#frag"]),
    ),
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(st.sampled_from(ENV_NAMES), plain, max_size=5),
    st.dictionaries(st.sampled_from(URL_NAMES), urls, max_size=2),
)
def test_any_environment_gives_settings_or_a_config_error(
    env: dict[str, str], url_env: dict[str, str]
) -> None:
    message = ""
    try:
        Settings.from_env({**env, **url_env})
    except ConfigError as exc:
        message = str(exc)
    assert SECRET not in message
    assert SECRET[:6] not in message


numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.booleans(),
    st.none(),
    st.text(max_size=5),
)
FIELDS = [
    "default_ttl",
    "max_staleness",
    "op_timeout",
    "connect_timeout",
    "reconnect_min",
    "reconnect_max",
    "metrics_interval",
    "start_wait",
    "read_regions",
    "max_connections",
    "max_value_bytes",
]


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(FIELDS), numbers, max_size=4))
def test_any_keyword_value_gives_settings_or_a_config_error(kwargs: dict[str, Any]) -> None:
    try:
        s = Settings(**kwargs)
    except ConfigError:
        return
    for name in FIELDS:  # what was accepted is usable: finite, in range
        value = getattr(s, name)
        assert isinstance(value, int | float)
        assert math.isfinite(value)
        assert value >= 0
