"""The command-line interface: one module per command, wired together in :mod:`.app`."""

from __future__ import annotations

import sys

__all__ = ["main"]


def main() -> None:
    """Console-script entry point; ``--version`` answers without importing typer or rich."""
    if sys.argv[1:] == ["--version"]:
        from modelsurgeon import __version__

        sys.stdout.write(f"modelsurgeon {__version__}\n")
        return
    from modelsurgeon.cli.app import main as app_main

    app_main()
