"""Where output goes: results to stdout, people's messages to stderr.

Nothing here imports torch.
"""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console

__all__ = ["emit_json", "err_console", "progress_enabled", "real_console", "set_quiet"]

_state = {"quiet": False}


def _make_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, no_color=bool(os.environ.get("NO_COLOR")), highlight=False)


class _LazyConsole:
    """Stands in for the stderr Console and creates it on first use (rich costs ~40 ms to import)."""

    def __init__(self) -> None:
        object.__setattr__(self, "_console", None)

    def _get(self) -> Console:
        console = object.__getattribute__(self, "_console")
        if console is None:
            console = _make_console()
            object.__setattr__(self, "_console", console)
        return cast("Console", console)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._get(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._get(), name, value)


err_console = cast("Console", _LazyConsole())


def real_console() -> Console:
    """The stderr Console itself (for rich APIs that want a real Console, such as Progress)."""
    return cast(_LazyConsole, err_console)._get()


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
