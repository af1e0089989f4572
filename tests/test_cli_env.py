"""Settings errors name where the bad value came from: the environment variable that supplied it
(also when a command's option read the variable, not only :meth:`Settings.from_env`), or the
option typed on the command line. The ``lowtide`` script runs as a process; errors go to stderr
with exit code 2, and a password in a URL is never shown.

Every option of every command that reads an environment variable is covered: the last test
fails when an option gains a variable no case here sets.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer.main

from lowtide.cli.main import app

GOOD_URL = "redis://127.0.0.1:1"  # valid; never reached: every case fails before connecting


def run(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    """``lowtide ARGS`` with only ``env`` among lowtide's and Redis's variables."""
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith("LOWTIDE_") and k != "REDIS_URL"
    }
    done = subprocess.run(
        [sys.executable, "-m", "lowtide.cli.main", *args],
        env={**clean, "COLUMNS": "200", **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, done.stdout, " ".join(done.stderr.split())


@dataclass(frozen=True)
class Case:
    variable: str  # the variable the case is about
    args: list[str]
    env: dict[str, str]
    says: str  # what stderr starts with
    hidden: tuple[str, ...] = ()  # what stderr must not show

    def __str__(self) -> str:
        return f"{self.variable}-{self.args[0]}"


CASES = [
    Case(
        "LOWTIDE_REDIS_URL",
        ["doctor", "--seconds", "1"],
        {"LOWTIDE_REDIS_URL": "http://admin:pw123@db.example:6379", "REDIS_URL": GOOD_URL},
        "LOWTIDE_REDIS_URL: url: unsupported scheme 'http'",
        ("pw123", GOOD_URL),
    ),
    Case(
        "LOWTIDE_REDIS_URL",
        ["suspend"],
        {"LOWTIDE_REDIS_URL": "redis://h/abc"},
        "LOWTIDE_REDIS_URL: url: database must be a number in 'redis://h/abc'",
    ),
    Case(
        "REDIS_URL",
        ["top", "--once"],
        {"REDIS_URL": "redis://h/abc"},
        "REDIS_URL: url: database must be a number",
        ("LOWTIDE_REDIS_URL",),
    ),
    Case(  # an empty LOWTIDE_REDIS_URL is unset: REDIS_URL supplied the value
        "REDIS_URL",
        ["resume"],
        {"LOWTIDE_REDIS_URL": "", "REDIS_URL": "valkey://:sekrit@h:6379/x"},
        "REDIS_URL: url: database must be a number in 'valkey://:***@h:6379/x'",
        ("sekrit", "LOWTIDE_REDIS_URL"),
    ),
    Case(
        "LOWTIDE_NAMESPACE",
        ["resume"],
        {"LOWTIDE_NAMESPACE": "bad ns", "LOWTIDE_REDIS_URL": GOOD_URL},
        "LOWTIDE_NAMESPACE: namespace: 1-64 characters",
    ),
    Case(
        "LOWTIDE_NAMESPACE",
        ["top", "--once"],
        {"LOWTIDE_NAMESPACE": "x" * 65, "LOWTIDE_REDIS_URL": GOOD_URL},
        "LOWTIDE_NAMESPACE: namespace: 1-64 characters",
    ),
    Case(
        "LOWTIDE_PROVIDER",
        ["doctor", "--monitor-log", "monitor.log"],
        {"LOWTIDE_PROVIDER": "aws"},
        "LOWTIDE_PROVIDER: provider: unknown provider 'aws'; expected one of redis, valkey,",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_an_error_names_the_environment_variable_that_supplied_the_value(
    case: Case, tmp_path: Path
) -> None:
    (tmp_path / "monitor.log").write_text("")
    rc, out, err = run(case.args, case.env, tmp_path)
    assert rc == 2, err
    assert err.startswith(case.says), err
    for text in case.hidden:
        assert text not in err
    assert "Traceback" not in err
    assert out == ""  # errors go to stderr only


@pytest.mark.parametrize(
    ("args", "env", "says", "variable"),
    [
        (
            ["top", "--once", "--url", "http://x"],
            {"REDIS_URL": GOOD_URL},
            "--url: unsupported",
            "REDIS_URL",
        ),
        (
            ["suspend", "--url", GOOD_URL, "--namespace", "a b"],
            {"LOWTIDE_NAMESPACE": "fine"},
            "--namespace: 1-64 characters",
            "LOWTIDE_NAMESPACE",
        ),
        (
            ["doctor", "--monitor-log", "monitor.log", "--provider", "aws"],
            {"LOWTIDE_PROVIDER": "upstash"},
            "--provider: unknown provider 'aws'",
            "LOWTIDE_PROVIDER",
        ),
    ],
    ids=["url", "namespace", "provider"],
)
def test_a_value_typed_on_the_command_line_is_named_by_its_option(
    args: list[str], env: dict[str, str], says: str, variable: str, tmp_path: Path
) -> None:
    (tmp_path / "monitor.log").write_text("")
    rc, out, err = run(args, env, tmp_path)
    assert rc == 2, err
    assert err.startswith(says), err
    assert variable not in err  # the variable was set, but the option supplied the value
    assert out == ""


def test_the_command_line_wins_over_a_bad_variable(tmp_path: Path) -> None:
    (tmp_path / "monitor.log").write_text("")
    rc, out, err = run(
        ["doctor", "--monitor-log", "monitor.log", "--provider", "redis"],
        {"LOWTIDE_PROVIDER": "aws"},
        tmp_path,
    )
    assert rc == 0, err
    assert "0 commands" in out


def test_every_option_variable_has_a_case() -> None:
    command = typer.main.get_command(app)
    read: set[str] = set()
    for sub in getattr(command, "commands", {}).values():
        for param in sub.params:
            envvar = getattr(param, "envvar", None)
            read.update([envvar] if isinstance(envvar, str) else envvar or [])
    assert read == {case.variable for case in CASES}
