"""The command-line interface: one module per command, wired together in :mod:`.app`."""

from __future__ import annotations

import os
import sys

__all__ = ["main"]


def main() -> None:
    """Console-script entry point; ``--version`` answers without importing typer or rich."""
    if sys.argv[1:] == ["--version"]:
        from modelsurgeon import __version__

        sys.stdout.write(f"modelsurgeon {__version__}\n")
        return
    from modelsurgeon.cli.app import main as app_main

    try:
        app_main()
    except SystemExit as exc:
        if exc.code is not None and not isinstance(exc.code, int):
            raise
        _leave(exc.code or 0)
    _leave(0)


def _leave(code: int) -> None:
    """Exit with ``code`` now, skipping the interpreter's teardown once torch has been imported.

    Tearing down torch and timm (module cleanup and garbage collection of their objects) takes about a
    second after the work is done: 1.0 s for a bare ``import torch, timm`` on the reference machine
    (docs/performance.md). Everything modelsurgeon writes is complete and closed by now, so only the
    standard streams need flushing; if that fails (a closed pipe), the usual exit handles it.
    """
    if "torch" in sys.modules:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError):
            sys.exit(code)
        os._exit(code)
    sys.exit(code)
