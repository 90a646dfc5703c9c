"""Human-readable rendering on stderr: summaries and progress bars. No torch imports."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.markup import escape

from modelsurgeon.cli._output import err_console, progress_enabled, real_console

__all__ = ["rehead_summary", "write_progress"]


@contextmanager
def write_progress(label: str = "writing") -> Iterator[Callable[[int, int], None] | None]:
    """Yield a ``(done, total)`` byte-progress callback, or ``None`` when stderr is not a TTY."""
    if not progress_enabled():
        yield None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=real_console(),
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def rehead_summary(report: Any) -> None:
    """A short summary of a rehead :class:`~modelsurgeon.surgery.Report` on stderr."""
    init = report.init
    bias = init["bias"]
    bounds = f"[{init['a_abs']:g}, {init['b_abs']:g}]"
    if init["bounds"] == "std":
        bounds += f" (= mean {init['a']:+g}/{init['b']:+g} std)"
    for note in report.notes:
        err_console.print(f"note: {note}", markup=False, soft_wrap=True)
    head = ", ".join(report.head) if report.head else "(none: head removed)"
    lines = [
        f"[bold]{escape(report.output)}[/bold]  {report.arch}, {report.classes} classes "
        f"({report.output_format}, "
        f"{report.output_bytes / 2**20:.1f} MiB)",
        f"  head      {escape(head)}  \\[{escape(report.head_type)}]",
        f"  init      trunc normal mean={init['mean']:g} std={init['std']:g} bounds={bounds} bias={bias} "
        f"seed={report.seed}",
        f"  source    {escape(report.source)} ({report.source_format}, sha256 {report.source_sha256[:12]}…)",
        f"  verified  {escape(report.verified)}",
    ]
    if report.kept_rows:
        lines.insert(3, f"  labels    {report.classes} names, {report.kept_rows} rows kept from the old head")
    elif report.labels is not None:
        lines.insert(3, f"  labels    {report.classes} names, no rows kept")
    for line in lines:
        err_console.print(line, soft_wrap=True)
