"""Product language: what users read (code, CLI output, docs) speaks of "the incident" in plain
words (its 2.2M GETs/day report), never of the internal name for where it came from (the plural
of "seed"; a random generator's ``--seed`` is another word). The word is built, not written, so
this file does not use it either."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
JARGON = "seed" + "s"
WORD = re.compile(rf"\b{JARGON}\b", re.IGNORECASE)


def test_the_product_describes_the_incident_in_plain_words() -> None:
    files = [
        ROOT / "README.md",
        *ROOT.glob("docs/*.md"),
        *ROOT.glob("src/**/*.py"),
        *ROOT.glob("benchmarks/*.py"),
    ]
    found = []
    for path in files:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if WORD.search(line):
                found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert found == []
