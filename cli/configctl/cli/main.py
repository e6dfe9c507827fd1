"""The console-script entry point.

`configctl --version` answers before Typer, Rich and the command modules are imported:
CI scripts and shell prompts call it often, and it needs none of them. Everything else
goes to the Typer app in ``configctl.cli.app``.
"""

from __future__ import annotations

import sys


def main() -> None:
    if sys.argv[1:] in (["--version"], ["-V"]):
        from configctl import __version__

        sys.stdout.write(f"configctl {__version__}\n")
        return
    from configctl.cli.app import main as run

    run()
