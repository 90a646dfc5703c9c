"""``modelsurgeon inspect``: what a checkpoint holds, where its head is, and how the head was initialised.

The report goes to stderr; ``--json`` prints one JSON object on stdout instead, so
``... --out - | modelsurgeon inspect - --json`` pipelines work. Nothing here imports torch or timm at
module level.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from modelsurgeon.cli._output import emit_json, err_console

if TYPE_CHECKING:  # pragma: no cover
    from modelsurgeon.inspection import Histogram, InspectReport

__all__ = ["inspect"]

_SOURCES = {
    "arch": "found with --arch",
    "metadata": "from modelsurgeon metadata",
    "heuristic": "guessed from names and shapes",
}
_PLOT_HEIGHT = 8
_EIGHTHS = " ▁▂▃▄▅▆▇█"


def inspect(
    checkpoint: Annotated[
        str,
        typer.Argument(
            metavar="PATH|-",
            help="Checkpoint (.safetensors, torch .pth/.pt/.bin/.ckpt, sharded index or its directory), "
            "or - for stdin.",
            show_default=False,
        ),
    ],
    arch: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="Find the head with this arch (as for rehead) and compare the checkpoint's keys with it. "
            "Default: the modelsurgeon metadata, else a guess from names and shapes.",
        ),
    ] = None,
    ema: Annotated[
        bool, typer.Option("--ema", help="Inspect the EMA weights of a training checkpoint.")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON report on stdout.")] = False,
) -> None:
    """Show a checkpoint's head, classes, provenance, labels and weights.

    The head and class count come from --arch when given, else from the metadata `modelsurgeon rehead`
    writes, else from a guess on names and shapes (the report says which). The head weights are shown
    as a histogram beside the density of the truncated normal they were drawn from.
    """
    from modelsurgeon.inspection import inspect_checkpoint

    report = inspect_checkpoint(checkpoint, arch=arch, ema=ema)
    if json_out:
        emit_json(report.to_json())
    else:
        _render(report)
    for warning in report.warnings:
        err_console.print(f"warning: {warning}", markup=False, soft_wrap=True)


def _render(report: InspectReport) -> None:
    """The human report on stderr."""
    out = err_console
    for note in report.notes:
        out.print(f"note: {note}", markup=False, soft_wrap=True)
    dtypes = ", ".join(f"{name} {count:,}" for name, count in report.dtypes.items())
    rows = [
        (report.source, f"{report.format}, {report.tensors} tensors, {report.parameters:,} parameters"),
        ("sha256", report.sha256),
        ("dtypes", f"{dtypes} ({report.bytes / 2**20:.1f} MiB)"),
    ]
    if report.arch:
        rows.append(("arch", report.arch))
    if report.classes is None:
        rows.append(("classes", "no head found (a backbone checkpoint?); pass --arch to look for one"))
    else:
        rows.append(("classes", f"{report.classes} ({_SOURCES[report.head_source]})"))
        heads = ", ".join(f"{n} {t['shape']} {t['dtype']}" for n, t in report.head_tensors.items())
        kind = f"  [{report.head_type}]" if report.head_type else ""
        rows.append(("head", (heads or "none") + kind))
    if report.labels is not None:
        rows.append(("labels", _shorten(", ".join(report.labels))))
    rows += _provenance(report.metadata)
    if report.other_metadata:
        rows.append(("metadata", _shorten(", ".join(f"{k}={v}" for k, v in report.other_metadata.items()))))
    if report.head_stats is not None:
        s = report.head_stats
        text = (
            f"n={s['count']:,} mean={s['mean']:.4g} std={s['std']:.4g} min={s['min']:.4g} max={s['max']:.4g}"
        )
        if "expected_mean" in s:
            text += (
                f"\n(init: mean={s['expected_mean']:.4g} std={s['expected_std']:.4g}; "
                f"{s['outside_bounds']} outside the bounds)"
            )
        rows.append(("weights", text))
    width = max(len(label) for label, _ in rows[1:])
    out.print(f"{rows[0][0]}  {rows[0][1]}", markup=False, soft_wrap=True, highlight=False)
    for label, value in rows[1:]:
        for i, line in enumerate(value.split("\n")):
            out.print(f"  {label if i == 0 else '':<{width}}  {line}", markup=False, soft_wrap=True)
    if report.histogram is not None:
        out.print()
        for line in _plot(report.histogram):
            out.print("  " + line, markup=False, soft_wrap=True)


def _provenance(meta: dict[str, object]) -> list[tuple[str, str]]:
    if not meta:
        return []
    rows = []
    made = f"modelsurgeon {meta.get('version', '?')}"
    if "seed" in meta:
        made += f", seed {meta['seed']}"
    if "source_sha256" in meta:
        made += f", from sha256 {str(meta['source_sha256'])[:12]}…"
    rows.append(("made by", made))
    init = meta.get("init")
    if isinstance(init, dict):
        g = {k: f"{v:g}" if isinstance(v, float | int) else str(v) for k, v in init.items()}
        desc = f"trunc normal mean={g.get('mean')} std={g.get('std')} in [{g.get('a_abs')}, {g.get('b_abs')}]"
        if init.get("bounds") == "std":
            desc += f" (= mean {g.get('a')}/{g.get('b')} std)"
        rows.append(("init", f"{desc}, bias={g.get('bias')}"))
    if "kept_rows" in meta and isinstance(meta["kept_rows"], dict):
        kept = len(meta["kept_rows"])
        rows.append(("kept rows", f"{kept} row{'s' if kept != 1 else ''} copied from the old head"))
    known = {"version", "seed", "source_sha256", "init", "kept_rows", "arch", "classes", "head"}
    rows += [(f"{k}", str(v)) for k, v in meta.items() if k not in known]
    return rows


def _shorten(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _plot(hist: Histogram) -> list[str]:
    """Columns of block characters, one per bin; ``•`` marks the count the init's density predicts."""
    n = sum(hist.counts)
    expected = (
        [d * (hi - lo) * n for d, lo, hi in zip(hist.density, hist.edges, hist.edges[1:], strict=False)]
        if hist.density is not None
        else None
    )
    top = max([*hist.counts, *(expected or []), 1])
    scale = _PLOT_HEIGHT / top
    lines = []
    for row in range(_PLOT_HEIGHT - 1, -1, -1):
        cells = []
        for i, count in enumerate(hist.counts):
            eighths = round(min(max(count * scale - row, 0), 1) * 8)
            cell = _EIGHTHS[eighths]
            if expected is not None and max(row, 1 / 16) <= expected[i] * scale < row + 1 and eighths < 8:
                cell = "•"
            cells.append(cell)
        label = f"{top:>7.4g}" if row == _PLOT_HEIGHT - 1 else " " * 7
        lines.append(f"{label} │{''.join(cells)}")
    span = len(hist.counts)
    lo, hi = f"{hist.edges[0]:.4g}", f"{hist.edges[-1]:.4g}"
    lines.append(f"{0:>7} └" + "─" * span)
    lines.append(" " * 9 + lo + " " * max(1, span - len(lo) - len(hi)) + hi)
    legend = "█ head weights per bin"
    if hist.excluded_rows:
        legend += f" ({hist.excluded_rows} copied rows left out)"
    if expected is not None:
        legend += "   • expected from the init's truncated normal"
    lines.append(legend)
    return lines
