"""What the README and docs/*.md point to exists in the repository: every relative link (and its
``#anchor``), every path into the repo (``docs/...``, ``tests/...``, ``benchmarks/...``), every
module path inside the package (``ledger/providers.toml``) and every test file named alone
(``test_keys.py``). None points into ``shared/`` (notes kept outside the repo). And the CI
script says what the README says about how long the demo takes."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
#: a path from the top of the repo (or from docs/, as ``../src/...``)
REPO_PATH = re.compile(
    r"(?<![\w./-])(?:\.\./)?((?:docs|src|tests|benchmarks|scripts|shared|examples|\.ci)/[\w./-]*)"
)
#: a path inside the package, in backticks: ``redis/connection.py``, ``lowtide/ledger/x.toml``
PACKAGE_PATH = re.compile(r"`((?:[\w]+/)+[\w.]+\.(?:py|toml|lua|json))`")
TEST_FILE = re.compile(r"(?<![\w/])(test_\w+\.py)\b")
#: named in the docs but not files of this repo, each with the reason
ELSEWHERE = {
    "tests/test_asyncio/test_commands.py": "redis-py's own test suite (scripts/redis_py_compat.py)",
}


def slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(doc: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", doc.read_text(encoding="utf-8"), flags=re.S)
    return {slug(m.group(1)) for m in re.finditer(r"^#+\s+(.+?)\s*$", text, re.M)}


def ignored_by_git(path: str) -> bool:
    done = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT, check=False)
    return done.returncode == 0


def inside_repo(path: Path) -> bool:
    return path.resolve().is_relative_to(ROOT)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_relative_link_resolves(doc: Path) -> None:
    broken = []
    for m in LINK.finditer(doc.read_text(encoding="utf-8")):
        target = m.group(1)
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        path = (doc.parent / path_part).resolve() if path_part else doc
        if not path.exists() or not inside_repo(path) or "shared" in path.parts:
            broken.append(target)
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(f"{target} (no such heading)")
    assert broken == []


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_path_named_in_the_text_exists(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    missing = []
    for m in REPO_PATH.finditer(text):
        ref = m.group(1).rstrip(".")
        if ref.startswith("shared/"):
            missing.append(f"{ref} (shared/ is not in the repo)")
        elif ref in ELSEWHERE:
            continue
        elif not (ROOT / ref).exists() and not ignored_by_git(ref):  # benchmarks/out/: made
            missing.append(ref)
    for m in PACKAGE_PATH.finditer(text):
        ref = m.group(1)
        if REPO_PATH.fullmatch(ref):
            continue  # checked above
        if not any((base / ref).exists() for base in (ROOT / "src" / "lowtide", ROOT / "src")):
            missing.append(ref)
    tests = {p.name for p in (ROOT / "tests").rglob("test_*.py")}
    missing += [
        name
        for name in TEST_FILE.findall(text)
        if name not in tests and not any(k.endswith(f"/{name}") for k in ELSEWHERE)
    ]
    assert missing == []


def test_the_checks_find_what_they_look_for() -> None:
    """The patterns match the kinds of reference the docs hold (else the tests above pass
    vacuously)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "docs/cache.md" in [m.group(1) for m in LINK.finditer(readme)]
    assert "../src/lowtide/limiter/rates.py" in {
        m.group(1) for m in LINK.finditer((ROOT / "docs" / "limiter.md").read_text())
    }
    paths = {m.group(1) for m in REPO_PATH.finditer("see shared/design.md and `tests/x.py`")}
    assert paths == {"shared/design.md", "tests/x.py"}
    architecture = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert "redis/connection.py" in PACKAGE_PATH.findall(architecture)
    assert "copies-that-do-not-pay" in anchors(ROOT / "docs" / "cache.md")


def minutes(text: str, pattern: str) -> float:
    m = re.search(pattern, " ".join(text.split()))
    assert m, pattern
    return float(m.group(1))


def test_the_ci_script_gives_the_demo_the_readmes_duration() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    said = minutes(readme, r"`lowtide demo`.*?in about ([\d.]+) minutes")
    comment = " ".join(line.lstrip("# ") for line in ci.splitlines() if line.startswith("#"))
    assert minutes(comment, r"`lowtide demo`.*?about ([\d.]+) minutes") == said


def test_the_readmes_url_setting_lists_every_scheme_the_settings_accept() -> None:
    from lowtide.settings import URL_SCHEMES

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    (row,) = [line for line in readme.splitlines() if line.startswith("| `url` |")]
    assert re.findall(r"`(\w+)://`", row) == list(URL_SCHEMES)
