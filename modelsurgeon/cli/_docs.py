"""Render every command's ``--help`` into the README, so the manual cannot drift from the CLI.

``python -m modelsurgeon.cli._docs --write README.md`` (``make docs``) replaces the text between
``<!-- help:NAME -->`` and ``<!-- /help:NAME -->`` with the help of ``modelsurgeon NAME``
(``NAME`` = ``main`` for the top level); ``--check`` exits 1 when the README is out of date.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path

__all__ = ["COMMANDS", "render_help", "update_readme"]

COMMANDS = ("main", "rehead", "inspect", "sample", "archs")
_WIDTH = 100


def render_help(name: str) -> str:
    """The ``--help`` text of ``modelsurgeon NAME`` at a fixed width of 100 columns."""
    import typer.main

    from modelsurgeon.cli.app import app

    group = typer.main.get_command(app)
    settings = {"terminal_width": _WIDTH, "max_content_width": _WIDTH}
    root = group.make_context("modelsurgeon", [], resilient_parsing=True, **settings)  # type: ignore[arg-type]
    if name == "main":
        return root.get_help().rstrip() + "\n"
    command = group.get_command(root, name)  # type: ignore[attr-defined]
    if command is None:
        raise KeyError(name)
    ctx = command.make_context(name, [], parent=root, resilient_parsing=True, **settings)
    return ctx.get_help().rstrip() + "\n"


def _replacer(block: str) -> Callable[[re.Match[str]], str]:
    return lambda m: m.group(1) + block + m.group(3)


def update_readme(text: str) -> str:
    """Return ``text`` with every help block replaced by the current ``--help`` output."""
    for name in COMMANDS:
        pattern = re.compile(rf"(<!-- help:{name} -->\n)(.*?)(<!-- /help:{name} -->)", re.S)
        block = f"```text\n{render_help(name)}```\n"
        text, count = pattern.subn(_replacer(block), text)
        if count != 1:
            raise ValueError(f"README needs exactly one <!-- help:{name} --> block, found {count}")
    return text


def _main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("readme", nargs="?", default="README.md")
    parser.add_argument("--check", action="store_true", help="exit 1 when the README is out of date")
    args = parser.parse_args()
    path = Path(args.readme)
    old = path.read_text(encoding="utf-8")
    new = update_readme(old)
    if args.check:
        sys.exit(0 if new == old else 1)
    path.write_text(new, encoding="utf-8")


if __name__ == "__main__":
    _main()
