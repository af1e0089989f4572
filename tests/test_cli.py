"""The CLI on real servers: the self-test reconciles (embedded server or URL), help is plain
text and names both URL variables, an unreachable server is named with its reason, settings
errors name their variable, and ``lowtide server`` runs a server until a signal stops it."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lowtide.cli.demo import CHART_HINT
from lowtide.cli.main import app
from lowtide.settings import URL_SCHEMES, validate_url
from lowtide.testing import ValkeyServer, raw_command
from tests.terminal import run_in_terminal

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]


def test_selftest_against_a_url_reconciles(
    lowtide_fresh_server: ValkeyServer, tmp_path: Path
) -> None:
    out = tmp_path / "selftest.json"
    result = runner.invoke(app, ["selftest", "--url", lowtide_fresh_server.url, "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "reconciled" in result.output
    data = json.loads(out.read_text())
    assert data["reconciled"] is True
    assert data["ledger"] == data["server"]
    assert data["ledger"]["get"] > 100
    assert data["billed_upstash"] > 0


def test_selftest_starts_an_embedded_server() -> None:
    result = runner.invoke(app, ["selftest"])
    assert result.exit_code == 0, result.output
    assert "started embedded Valkey" in result.output


def test_selftest_reports_unreachable_server() -> None:
    server = ValkeyServer().start()
    url = server.url
    server.stop()
    result = runner.invoke(app, ["selftest", "--url", url])
    assert result.exit_code == 2
    assert "cannot reach" in result.output


def test_selftest_rejects_bad_url() -> None:
    result = runner.invoke(app, ["selftest", "--url", "http://user:pw123@nope"])
    assert result.exit_code == 2
    assert "unsupported scheme" in result.output
    assert "pw123" not in result.output


COMMANDS = ["selftest", "demo", "top", "doctor", "suspend", "resume", "server", "version"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_is_plain_text_and_names_every_url_variable(command: str) -> None:
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "``" not in result.output
    assert ":func:" not in result.output
    if "--url" in result.output and command not in ("selftest", "demo"):  # those start a server
        assert "LOWTIDE_REDIS_URL" in result.output
        assert "REDIS_URL" in result.output.replace("LOWTIDE_REDIS_URL", "")
        for scheme in URL_SCHEMES:  # every form the settings accept, valkey:// included
            assert f"{scheme}://" in result.output
            validate_url(f"{scheme}://h" if scheme != "unix" else "unix:///tmp/s.sock")


def test_every_command_is_listed() -> None:
    result = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for command in COMMANDS:
        assert re.search(rf"\b{command}\b", result.output), command


@pytest.mark.parametrize("args", [["top", "--once"], ["suspend"], ["resume"], ["doctor"]])
def test_an_unreachable_server_is_named_with_the_reason_and_nothing_else(args: list[str]) -> None:
    server = ValkeyServer().start()
    url = server.url
    server.stop()
    seconds = ["--seconds", "1"] if args == ["doctor"] else []
    rc, shown = run_in_terminal([*args, "--url", url, *seconds], 100)
    assert rc == 2, shown
    assert f"cannot reach {url}" in shown
    assert "error 111 connecting" in shown.lower()  # the reason
    assert "suspended" not in shown
    assert "Traceback" not in shown


def test_a_url_from_redis_url_is_used(lowtide_fresh_server: ValkeyServer) -> None:
    result = runner.invoke(
        app, ["top", "--once"], env={"REDIS_URL": lowtide_fresh_server.url, "LOWTIDE_REDIS_URL": ""}
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["top", "--once"], env={"REDIS_URL": "", "LOWTIDE_REDIS_URL": ""})
    assert result.exit_code == 2
    assert "LOWTIDE_REDIS_URL / REDIS_URL" in result.output
    assert "lowtide server" in result.output


def test_a_bad_setting_names_its_environment_variable(lowtide_fresh_server: ValkeyServer) -> None:
    result = runner.invoke(
        app,
        ["top", "--once", "--url", lowtide_fresh_server.url],
        env={"LOWTIDE_CONNECT_TIMEOUT": "-1"},
    )
    assert result.exit_code == 2
    assert "LOWTIDE_CONNECT_TIMEOUT" in result.output


_OUTPUT: dict[int, str] = {}


def read_until(proc: subprocess.Popen[str], pattern: str, within: float = 20.0) -> re.Match[str]:
    """Read the program's output until ``pattern`` matches a line (with a deadline). Reads the
    pipe's descriptor directly: a buffered reader may hold a line select() cannot see."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + within
    while True:
        for line in _OUTPUT.get(proc.pid, "").splitlines():
            m = re.search(pattern, line)
            if m:
                return m
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        chunk = os.read(fd, 65536) if ready else b""
        if not chunk:
            raise AssertionError(f"no {pattern!r} in {_OUTPUT.get(proc.pid, '')!r}")
        _OUTPUT[proc.pid] = _OUTPUT.get(proc.pid, "") + chunk.decode()


def process_gone(pid: int, within: float) -> bool:
    """True once no process ``pid`` exists: a pidfd becomes readable when it exits (an exited
    child may take a moment to be reaped by its parent)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([fd], [], [], within)
        return bool(readable)
    finally:
        os.close(fd)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_lowtide_server_prints_a_url_that_answers_and_stops_on_a_signal(
    stop: signal.Signals,
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "lowtide.cli.main", "server", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # as from a terminal: a shell without job control starts background commands with
        # SIGINT ignored, and the child would inherit that (then Ctrl-C cannot reach it)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        m = read_until(proc, r"running at (redis://(127\.0\.0\.1):(\d+))")
        url, host, port = m.group(1), m.group(2), int(m.group(3))
        read_until(proc, rf"export LOWTIDE_REDIS_URL={re.escape(url)}")
        assert raw_command(host, port, "PING") == "PONG"
        info = raw_command(host, port, "INFO", "server")
        found = re.search(rb"process_id:(\d+)", info)
        assert found is not None
        pid = int(found.group(1))
        proc.send_signal(stop)
        assert proc.wait(timeout=20) == 0
        assert proc.stdout is not None
        assert "stopped" in proc.stdout.read()
        with pytest.raises(ConnectionRefusedError):
            raw_command(host, port, "PING", timeout=1.0)
        assert process_gone(pid, within=10.0)  # the valkey-server process is gone too
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_lowtide_server_on_a_taken_port_says_so(lowtide_fresh_server: ValkeyServer) -> None:
    result = runner.invoke(app, ["server", "--port", str(lowtide_fresh_server.port)])
    assert result.exit_code == 2
    assert "is taken" in result.output
    assert lowtide_fresh_server.command("PING") == "PONG"  # and left alone


def test_verbose_shows_the_first_mode_as_itself_not_as_a_change_from_suspended() -> None:
    server = ValkeyServer().start()
    url = server.url
    server.stop()
    rc, shown = run_in_terminal(["--verbose", "top", "--once", "--url", url], 200)
    assert rc == 2, shown
    assert re.search(r"WARNING lowtide: lowtide mode degraded \(start\)", shown), shown
    assert "->" not in shown  # nothing was suspended, and nothing changed mode


def extra_closure(name: str) -> set[str]:
    """The distribution names pyproject.toml's extra ``name`` installs (extras of lowtide
    itself followed)."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    out: set[str] = set()
    for req in extras[name]:
        inner = re.fullmatch(r"lowtide\[([\w,]+)\]", req)
        if inner:
            for sub in inner.group(1).split(","):
                out |= extra_closure(sub)
        else:
            out.add(re.split(r"[<>=!~\[ ;]", req, maxsplit=1)[0].lower())
    return out


def test_demo_chart_without_matplotlib_names_the_extra_that_brings_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    chart = tmp_path / "demo.png"
    # said at once, before any run (an unreachable URL: nothing was started)
    result = runner.invoke(app, ["demo", "--chart", str(chart), "--url", "redis://127.0.0.1:1"])
    assert result.exit_code == 2, result.output
    assert " ".join(CHART_HINT.split()) in " ".join(result.output.split())
    assert not chart.exists()
    named = re.findall(r"lowtide\[(\w+)\]", CHART_HINT)
    assert named == ["chart", "demo"]
    for extra in named:  # each extra the hint names installs matplotlib
        assert "matplotlib" in extra_closure(extra)
    # the cli extra (doctor, top, suspend) brings no plotting stack
    assert "matplotlib" not in extra_closure("cli")
    assert {"typer", "rich"} <= extra_closure("cli")


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP])
def test_a_stopped_demo_stops_its_embedded_server_and_machines(stop: signal.Signals) -> None:
    """`lowtide demo` stopped by SIGTERM (a `timeout`, a container stop) or SIGHUP mid-run
    leaves no valkey-server and no machine behind (the server used to outlive it)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "lowtide.cli.main", "demo", "--invalidation", "tracking"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        m = read_until(proc, r"started embedded Valkey at (redis://(127\.0\.0\.1):(\d+))")
        host, port = m.group(2), int(m.group(3))
        read_until(proc, r"naive: warm-up \(not measured\)")  # the machines are replaying
        found = re.search(rb"process_id:(\d+)", raw_command(host, port, "INFO", "server"))
        assert found is not None
        pid = int(found.group(1))
        machines = machine_pids(port)
        assert len(machines) == 4
        proc.send_signal(stop)
        assert proc.wait(timeout=30) == 128 + stop
        with pytest.raises(ConnectionRefusedError):
            raw_command(host, port, "PING", timeout=1.0)
        assert process_gone(pid, within=10.0)
        assert all(process_gone(m, within=10.0) for m in machines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def machine_pids(port: int) -> list[int]:
    """The demo's machine processes (``lowtide.demo.worker``) replaying against ``port``."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"lowtide.demo.worker" in argv and any(f":{port}".encode() in a for a in argv):
            out.append(int(entry.name))
    return out
