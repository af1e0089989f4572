"""The ``lowtide`` command line (``pip install lowtide[cli]``).

The app and what commands share live in :mod:`lowtide.cli.app`; each command is a module of its
own, imported here so that it registers on the app: ``selftest``, ``doctor``, ``top``,
``suspend``/``resume`` (:mod:`~lowtide.cli.switch`), ``server``, ``version``, and ``demo``
(:mod:`~lowtide.cli.demo`).
"""

from __future__ import annotations

from lowtide.cli import doctor, selftest, server, switch, top, version
from lowtide.cli.app import app, configure_logging
from lowtide.cli.demo import add_demo_command

__all__ = ["app", "main"]
#: the command modules (imported for their registration on ``app``)
COMMANDS = (selftest, doctor, top, switch, server, version)


add_demo_command(app)


def main() -> None:
    """Entry point of the ``lowtide`` script."""
    configure_logging()
    app()


if __name__ == "__main__":
    main()
