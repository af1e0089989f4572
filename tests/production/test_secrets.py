"""No secret in any output, whatever form the URL gives it in (real servers)."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import pytest

from lowtide import ConfigError, Lowtide, Mode, Settings
from lowtide.settings import redact_url
from lowtide.testing import ValkeyServer

SECRET = "Zq9-s3cr3t"


def leaks(texts: list[str]) -> list[str]:
    # the whole secret, and any 4-character piece of it (a parser quoting part of it)
    pieces = {SECRET[i : i + 4] for i in range(len(SECRET) - 3)}
    return [t for t in texts if SECRET in t or any(p in t for p in pieces)]


async def test_a_password_in_the_query_or_on_a_unix_socket_never_shows(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="lowtide")
    sock = Path(tempfile.mkdtemp(prefix="lowtide-sock-")) / "valkey.sock"
    args = ["--unixsocket", str(sock), "--unixsocketperm", "700"]
    texts: list[str] = []
    with ValkeyServer(password=SECRET, args=args) as server:
        for url in (
            f"redis://{server.host}:{server.port}/0?password={SECRET}",  # query form
            f"unix://{sock}?password={SECRET}&db=0",  # redis-py's form for unix sockets
            f"redis://default:{SECRET}@{server.host}:{server.port}/0",  # ACL user form
            f"redis://:{SECRET}@{server.host}:{server.port}/0",  # password-only form
        ):
            async with Lowtide(url, fleet_switch=False) as lt:
                assert lt.mode is Mode.DISTRIBUTED, url  # the password worked ...
                texts += [repr(lt), repr(lt.settings), str(lt.health()), str(lt.status())]
        for wrong in (
            f"redis://{server.host}:{server.port}/0?password=wrong-{SECRET}",
            f"redis://{SECRET}@{server.host}:{server.port}/0",  # read as a user name: refused
        ):
            async with Lowtide(wrong, fleet_switch=False, start_wait=0) as lt:
                assert lt.mode is Mode.DEGRADED  # authentication failed
                texts += [repr(lt), str(lt.health())]
    texts.append(caplog.text)
    assert leaks(texts) == []  # ... and shows nowhere


@pytest.mark.parametrize(
    "url",
    [
        f"redis://user:{SECRET}/x@h:6379/0",  # an unescaped / in the password
        f"redis://user:{SECRET}?x@h:6379/0",  # ?
        f"redis://user:{SECRET}#x@h:6379/0",  # #
        f"redis://h:6379/0?password={SECRET}&foo=1",  # an unknown option beside it
        f"redis://h:6379/0?socket_timeout=abc&password={SECRET}",  # a malformed value
        f"redis://h:99999/0?password={SECRET}",  # a bad port
    ],
)
def test_a_url_that_cannot_work_is_a_config_error_without_the_secret(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        Lowtide(url)
    assert leaks([str(info.value), repr(info.value)]) == []
    assert "url" in str(info.value)


def test_settings_from_the_environment_name_the_variable_without_the_secret() -> None:
    with pytest.raises(ConfigError, match="LOWTIDE_REDIS_URL") as info:
        Settings.from_env({"LOWTIDE_REDIS_URL": f"redis://u:{SECRET}/x@h:1/0"})
    assert leaks([str(info.value)]) == []


@pytest.mark.parametrize(
    "url",
    [
        f"redis://:{SECRET}@@h:6379/0",
        f"redis://u:{SECRET}@x@h:6379/0",
        f"rediss://u:p@h:1/0?ssl_keyfile_password={SECRET}",
        f"unix:///s.sock?db=1&PassWord={SECRET}",
        f"redis://h:1/0?auth_token={SECRET}",
    ],
)
def test_every_form_of_secret_is_masked(url: str) -> None:
    assert leaks([redact_url(url) or "", repr(Settings(url=url))]) == []
