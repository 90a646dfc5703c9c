"""The one exception family of modelsurgeon, and its exit codes.

Every error a person can cause is a :class:`ModelSurgeonError`. The CLI turns it into one line on
stderr, ``error: <what> — <what to do>``, and exits with its ``exit_code``. Anything else that
escapes is a bug (exit 1).
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "EXIT_BUG",
    "EXIT_INPUT",
    "EXIT_OK",
    "EXIT_OUTPUT",
    "EXIT_USAGE",
    "InputError",
    "ModelSurgeonError",
    "OutputError",
    "UsageError",
]

EXIT_OK = 0
EXIT_BUG = 1
EXIT_USAGE = 2
EXIT_INPUT = 3
EXIT_OUTPUT = 4


class ModelSurgeonError(Exception):
    """Base of every error a person can cause; carries an exit code.

    Args:
        message: What went wrong, naming the object (a key, a path, an option).
        hint: What to do about it. Rendered after an em dash.
    """

    exit_code: ClassVar[int] = EXIT_BUG

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} — {self.hint}" if self.hint else self.message


class UsageError(ModelSurgeonError):
    """Bad option values, unknown architecture, bad config (exit 2)."""

    exit_code = EXIT_USAGE


class InputError(ModelSurgeonError):
    """Unreadable, corrupt, unsafe or mismatched checkpoint (exit 3)."""

    exit_code = EXIT_INPUT


class OutputError(ModelSurgeonError):
    """Output exists, is unwritable, or the disk is full (exit 4)."""

    exit_code = EXIT_OUTPUT
