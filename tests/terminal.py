"""Running the real ``lowtide`` command in a real (pseudo-)terminal of a given width.

What a user sees: the program finds a terminal on stdout and stderr, asks it for its size, and
draws colours and tables for it. The escape sequences are taken out of what it printed, and
:func:`column` reads one column of a table back, whatever lines its cells wrapped over.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time

__all__ = ["column", "run_in_terminal"]

_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\x1b[()][A-Z0-9]")


def run_in_terminal(
    args: list[str], columns: int, *, env: dict[str, str] | None = None, timeout: float = 60.0
) -> tuple[int, str]:
    """Run ``python -m lowtide.cli.main *args`` in a ``columns``-wide terminal: (rc, text)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    environ = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
    environ.update(TERM="xterm-256color", **(env or {}))
    proc = subprocess.Popen(
        [sys.executable, "-m", "lowtide.cli.main", *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=environ,
        close_fds=True,
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"lowtide {' '.join(args)} did not finish in {timeout}s")
            ready, _, _ = select.select([master], [], [], left)
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the program closed the terminal (it exited)
                break
            if not data:
                break
            chunks.append(data)
        rc = proc.wait(timeout=max(deadline - time.monotonic(), 1.0))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    text = b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")
    return rc, _ESCAPES.sub("", text)


def column(text: str, title: str, index: int, *, starts: int = -1) -> list[str]:
    """The cells of column ``index`` of the table titled ``title`` in ``text``, each cell's
    wrapped lines joined: a row starts where column ``starts`` (one that never wraps, such as a
    number) has text."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if title in line)
    cells: list[str] = []
    header_done = False
    for line in lines[start + 1 :]:
        if line.strip().startswith(("└", "╰")):
            break
        if line.strip().startswith(("┡", "├", "╞")):
            header_done = True
            continue
        if not header_done or "│" not in line:
            continue
        parts = [p.strip() for p in line.strip().strip("│").split("│")]
        if parts[starts]:
            cells.append(parts[index])
        elif cells:
            cells[-1] += parts[index]
    return cells
