"""The README is the manual: its command reference must match ``--help``, and it must name the set-up."""

from __future__ import annotations

import re
from pathlib import Path

from modelsurgeon.cli._docs import COMMANDS, render_help, update_readme

README = Path(__file__).resolve().parents[1] / "README.md"


def test_command_reference_matches_help() -> None:
    text = README.read_text(encoding="utf-8")
    assert update_readme(text) == text, "README command reference is stale: run `make docs`"


def test_every_command_has_a_help_block() -> None:
    text = README.read_text(encoding="utf-8")
    for name in COMMANDS:
        assert f"<!-- help:{name} -->" in text


def test_every_rehead_option_is_explained_in_prose() -> None:
    text = README.read_text(encoding="utf-8")
    prose = re.sub(r"<!-- help:rehead -->.*?<!-- /help:rehead -->", "", text, flags=re.S)
    options = set(re.findall(r"^\s+(--[a-z][a-z-]*)", render_help("rehead"), flags=re.M))
    options -= {"--help"}
    missing = sorted(o for o in options if o not in prose and o.replace("--no-", "--") not in prose)
    assert not missing, f"README prose never mentions {missing}"


def test_setup_commands_and_ci_use_make_test() -> None:
    text = README.read_text(encoding="utf-8")
    assert "make demo" in text and "make test" in text
    ci = (README.parent / ".ci" / "run").read_text()
    assert "make test" in ci
