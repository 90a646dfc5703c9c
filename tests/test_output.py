"""Streams: progress bars only on a terminal and never with --quiet; NO_COLOR honoured."""

from __future__ import annotations

import io
import sys

import pytest

from modelsurgeon.cli import _output
from modelsurgeon.cli._render import write_progress


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _not_quiet() -> None:
    _output.set_quiet(False)
    yield
    _output.set_quiet(False)


def test_progress_only_when_stderr_is_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    with write_progress() as progress:
        assert progress is None
    tty = _Tty()
    monkeypatch.setattr(sys, "stderr", tty)
    with write_progress() as progress:
        assert callable(progress)
        progress(50, 100)


def test_quiet_disables_progress_and_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    tty = _Tty()
    monkeypatch.setattr(sys, "stderr", tty)
    _output.set_quiet(True)
    with write_progress() as progress:
        assert progress is None
    _output.err_console.print("hello")
    assert tty.getvalue() == ""


def test_no_color_means_no_escape_codes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    console = _output._make_console()
    buf = _Tty()
    console.file = buf
    console.print("[bold red]x[/bold red]")
    assert "\x1b[3" not in buf.getvalue() and console.no_color
    monkeypatch.delenv("NO_COLOR")
    assert not _output._make_console().no_color


def test_emit_json_writes_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    _output.emit_json({"b": 1, "a": [1, 2]})
    out = capsys.readouterr()
    assert out.out == '{"a": [1, 2], "b": 1}\n' and out.err == ""
