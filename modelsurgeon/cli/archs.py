"""``modelsurgeon archs``: list timm and torchvision architectures with their classification heads.

Finding a head builds the arch on the meta device a few times (about 0.1–1 s per arch), so head
information is computed only for the archs a PATTERN selects, or for every arch with ``--heads``.
Without a PATTERN the names are listed at once.

Nothing here imports torch or timm at module level.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from modelsurgeon.cli._output import emit_json, err_console, progress_enabled, real_console
from modelsurgeon.errors import UsageError

__all__ = ["archs"]

_SOURCES = {"timm": "timm", "torchvision": "torchvision", "tv": "torchvision"}


def _head_info(ref: Any) -> dict[str, Any]:
    """Head tensors, head type and default class count of one arch; an ``error`` instead if undetectable."""
    from modelsurgeon.archs import default_num_classes
    from modelsurgeon.heads import find_heads

    try:
        default = default_num_classes(ref)
        spec = find_heads(ref, default or 1)
    except UsageError as exc:  # HeadDetectionError, or an arch without a classifier
        return {"head": None, "head_type": None, "default_classes": None, "error": str(exc)}
    return {"head": list(spec.names), "head_type": spec.head_type, "default_classes": default}


def _rows(refs: list[Any], with_heads: bool) -> list[dict[str, Any]]:
    empty = {"head": None, "head_type": None, "default_classes": None}
    if not with_heads:
        return [{"name": r.name, "source": r.source, **empty} for r in refs]
    if progress_enabled() and len(refs) > 5:
        from rich.progress import track

        refs_iter: Any = track(refs, description="finding heads", console=real_console(), transient=True)
    else:
        refs_iter = refs
    return [{"name": r.name, "source": r.source, **_head_info(r)} for r in refs_iter]


def _compact(names: list[str]) -> str:
    """``["fc.weight", "fc.bias"]`` → ``"fc.{weight,bias}"``."""
    groups: dict[str, list[str]] = {}
    for name in names:
        owner, _, attr = name.rpartition(".")
        groups.setdefault(owner, []).append(attr)
    parts = [
        (f"{owner}." if owner else "") + (attrs[0] if len(attrs) == 1 else "{" + ",".join(attrs) + "}")
        for owner, attrs in groups.items()
    ]
    return " ".join(parts)


def _print_table(rows: list[dict[str, Any]], with_heads: bool) -> None:
    names = [f"{row['source']}:{row['name']}" for row in rows]
    if not with_heads:
        for name in names:
            err_console.print(name, markup=False, soft_wrap=True)
        return
    cells = [("arch", "classes", "head type", "head tensors")]
    for name, row in zip(names, rows, strict=True):
        if row.get("error"):
            cells.append((name, "?", "?", f"error: {row['error']}"))
        else:
            cells.append((name, str(row["default_classes"]), row["head_type"], _compact(row["head"])))
    widths = [max(len(c[i]) for c in cells) for i in range(3)]
    for i, c in enumerate(cells):
        line = f"{c[0]:<{widths[0]}}  {c[1]:>{widths[1]}}  {c[2]:<{widths[2]}}  {c[3]}"
        err_console.print(line, markup=False, soft_wrap=True, style="bold" if i == 0 else None)


def archs(
    pattern: Annotated[
        str | None,
        typer.Argument(
            metavar="PATTERN",
            help="Glob on the name, e.g. 'vit_*' or 'tv:*resnet*'. Selects archs to inspect.",
        ),
    ] = None,
    source: Annotated[
        str | None, typer.Option("--source", help="Only list this source: timm or torchvision (tv).")
    ] = None,
    heads: Annotated[
        bool | None,
        typer.Option(
            "--heads/--no-heads",
            help="Find head tensors, head type and default class count (slow for many archs). "
            "Default: on with a PATTERN, off without.",
        ),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON list on stdout.")] = False,
) -> None:
    """List architectures with their classification head tensors, head type and default class count."""
    from modelsurgeon.archs import list_archs

    if source is not None and source.lower() not in _SOURCES:
        raise UsageError(f"unknown --source {source!r}", "use --source timm or --source torchvision (tv)")
    refs = list_archs(pattern, _SOURCES[source.lower()] if source else None)  # type: ignore[arg-type]
    if not refs:
        raise UsageError(
            f"no architecture matches {pattern!r}" + (f" in {source}" if source else ""),
            "patterns are globs: try '*resnet*' (run `modelsurgeon archs` for all names)",
        )
    with_heads = heads if heads is not None else bool(pattern)
    rows = _rows(refs, with_heads)
    if json_out:
        emit_json(rows)
    else:
        _print_table(rows, with_heads)
    if not with_heads:
        err_console.print(
            f"{len(rows)} architectures; pass a PATTERN or --heads to show their head tensors",
            markup=False,
        )
