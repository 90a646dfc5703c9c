"""The ``modelsurgeon`` command: wires the commands together and maps errors to exit codes.

Importing this module must not import torch or timm: ``--help`` and ``--version`` stay fast.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
from collections.abc import Callable
from typing import Annotated, NoReturn, ParamSpec

import typer

from modelsurgeon import __version__
from modelsurgeon.errors import EXIT_BUG, ModelSurgeonError

__all__ = ["app", "main"]

P = ParamSpec("P")

EXIT_SIGINT = 128 + signal.SIGINT
EXIT_SIGTERM = 128 + signal.SIGTERM

# Every character that str.splitlines() breaks at, and the other control characters (a terminal escape
# in a tensor name from a corrupt file), shown escaped so that an error is always exactly one line.
_ESCAPES = {code: ascii(chr(code))[1:-1] for code in (*range(0x20), 0x7F, 0x85, 0x2028, 0x2029)}

app = typer.Typer(
    name="modelsurgeon",
    help="Replace the classification head of a pretrained image classifier, correctly.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"modelsurgeon {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks (same as MODELSURGEON_DEBUG=1).")
    ] = False,
) -> None:
    """Replace the classification head of a pretrained image classifier, correctly."""
    if debug:
        os.environ["MODELSURGEON_DEBUG"] = "1"


class Terminated(BaseException):
    """Raised in the main thread by the SIGTERM handler, so ``finally`` blocks clean up."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated()


def _interrupted(name: str, code: int) -> NoReturn:
    _print_error(f"interrupted by {name} — no partial output was left (the output is complete or absent)")
    raise typer.Exit(code)


def _one_line(text: str) -> str:
    """``text`` with line breaks and control characters escaped (``\\n``, ``\\x1b``): one line."""
    return text.translate(_ESCAPES)


def _print_error(text: str) -> None:
    """Print ``error: text`` on stderr as one line, even under ``--quiet``."""
    from modelsurgeon.cli._output import err_console

    err_console.quiet = False
    err_console.print(f"error: {_one_line(text)}", markup=False, emoji=False, soft_wrap=True, highlight=False)


def _report(exc: ModelSurgeonError) -> NoReturn:
    _print_error(str(exc))
    raise typer.Exit(exc.exit_code)


def _guard(command: Callable[P, None]) -> Callable[P, None]:
    """Turn a ModelSurgeonError into one line on stderr and its exit code (unless debugging)."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
        try:
            command(*args, **kwargs)
        except ModelSurgeonError as exc:
            if _debug():
                raise
            _report(exc)
        except KeyboardInterrupt:
            _interrupted("SIGINT", EXIT_SIGINT)
        except Terminated:
            _interrupted("SIGTERM", EXIT_SIGTERM)
        finally:
            signal.signal(signal.SIGTERM, previous)

    return wrapper


def _register() -> None:
    from modelsurgeon.cli import archs, inspect, rehead, sample

    app.command("rehead")(_guard(rehead.rehead))
    app.command("archs")(_guard(archs.archs))
    app.command("inspect")(_guard(inspect.inspect))
    app.command("sample")(_guard(sample.sample))


_register()


def _debug() -> bool:
    return os.environ.get("MODELSURGEON_DEBUG", "") not in ("", "0") or "--debug" in sys.argv[1:]


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app; turn errors into one line on stderr and an exit code.

    ``ModelSurgeonError`` exits with its own code; any other exception is a bug (exit 1).
    ``--debug`` or ``MODELSURGEON_DEBUG=1`` re-raises with the traceback.
    """
    try:
        app(args=argv, prog_name="modelsurgeon")
    except ModelSurgeonError as exc:
        if _debug():
            raise
        _print_error(str(exc))
        sys.exit(exc.exit_code)
    except (SystemExit, KeyboardInterrupt):
        raise
    except Exception as exc:  # an unexpected exception is a bug
        if _debug():
            raise
        _print_error(
            f"internal error ({type(exc).__name__}: {exc}) — this is a bug in modelsurgeon;"
            " rerun with --debug for the traceback and report it"
        )
        sys.exit(EXIT_BUG)
