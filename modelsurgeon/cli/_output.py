"""Where output goes: results to stdout, people's messages to stderr.

Nothing here imports torch.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from rich.console import Console

__all__ = ["emit_json", "err_console", "progress_enabled", "set_quiet"]

_state = {"quiet": False}


def _make_console() -> Console:
    return Console(stderr=True, no_color=bool(os.environ.get("NO_COLOR")), highlight=False)


err_console = _make_console()


def set_quiet(quiet: bool) -> None:
    """Silence (or restore) messages on stderr; errors are always printed by ``main``."""
    _state["quiet"] = quiet
    err_console.quiet = quiet


def progress_enabled() -> bool:
    """Progress bars only when stderr is a terminal and output is not quiet."""
    return not _state["quiet"] and sys.stderr.isatty()


def emit_json(obj: Any) -> None:
    """Write one JSON object on stdout, newline-terminated."""
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    sys.stdout.flush()
