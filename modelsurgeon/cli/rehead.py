"""``modelsurgeon rehead``: replace the classification head of a checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelsurgeon.cli._output import emit_json, err_console, set_quiet

__all__ = ["rehead"]

_IN = "Input"
_OUT = "Output"
_INIT = "Head init"
_RUN = "Run"


def rehead(
    arch: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="timm model name (also timm:NAME), or torchvision:NAME / tv:NAME.",
            rich_help_panel=_IN,
        ),
    ] = None,
    classes: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            help="Outputs of the new head; 0 removes the head (feature extractor).",
            rich_help_panel=_IN,
        ),
    ] = None,
    checkpoint: Annotated[
        str | None,
        typer.Option(
            metavar="PATH|-",
            help="Checkpoint to read (.safetensors, torch .pth/.pt/.bin/.ckpt/.pth.tar, sharded index), "
            "or - for stdin. Default: timm's pretrained weights from the Hugging Face cache.",
            rich_help_panel=_IN,
        ),
    ] = None,
    ema: Annotated[
        bool | None,
        typer.Option("--ema", help="Use the EMA weights of a training checkpoint.", rich_help_panel=_IN),
    ] = None,
    labels: Annotated[
        str | None,
        typer.Option(
            metavar="FILE",
            help="Class names, one per line; 'name=K' copies row K (index or old label) of the old head.",
            rich_help_panel=_IN,
        ),
    ] = None,
    head: Annotated[
        list[str] | None,
        typer.Option(
            metavar="NAME",
            help="Arch-free surgery: module whose weight [C, ...] and bias [C] become [N, ...]/[N]. "
            "Repeatable.",
            rich_help_panel=_IN,
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            metavar="YAML",
            help="YAML recipe; keys are these options in snake_case. Flags override it.",
            rich_help_panel=_IN,
        ),
    ] = None,
    out: Annotated[
        str | None,
        typer.Option(
            metavar="PATH|-",
            help="Output path (.safetensors or .pth/.pt/.bin), a directory for sharded output, or - for "
            "stdout. Default: <arch>-<N>cls.safetensors.",
            rich_help_panel=_OUT,
        ),
    ] = None,
    force: Annotated[
        bool | None, typer.Option("--force", help="Overwrite an existing output.", rich_help_panel=_OUT)
    ] = None,
    link: Annotated[
        bool | None,
        typer.Option(
            "--link",
            help="Sharded output: hard-link untouched shards instead of copying.",
            rich_help_panel=_OUT,
        ),
    ] = None,
    mean: Annotated[
        float | None,
        typer.Option(
            metavar="FLOAT", help="Mean of the truncated normal. [default: 0]", rich_help_panel=_INIT
        ),
    ] = None,
    std: Annotated[
        float | None,
        typer.Option(
            metavar="FLOAT", help="Std of the truncated normal. [default: 0.02]", rich_help_panel=_INIT
        ),
    ] = None,
    a: Annotated[
        float | None,
        typer.Option(
            "--a",
            metavar="FLOAT",
            help="Lower bound (absolute unless --bounds std). [default: -2]",
            rich_help_panel=_INIT,
        ),
    ] = None,
    b: Annotated[
        float | None,
        typer.Option(
            "--b",
            metavar="FLOAT",
            help="Upper bound (absolute unless --bounds std). [default: 2]",
            rich_help_panel=_INIT,
        ),
    ] = None,
    bounds: Annotated[
        str | None,
        typer.Option(
            metavar="abs|std",
            help="abs: a/b are values; std: a/b are multiples of std around the mean. [default: abs]",
            rich_help_panel=_INIT,
        ),
    ] = None,
    bias: Annotated[
        str | None,
        typer.Option(
            metavar="zeros|FLOAT",
            help="Head bias: zeros or a number. [default: zeros]",
            rich_help_panel=_INIT,
        ),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(
            metavar="INT",
            help="Seed for the head init; drawn and reported when omitted.",
            rich_help_panel=_INIT,
        ),
    ] = None,
    verify: Annotated[
        bool | None,
        typer.Option(
            "--verify/--no-verify",
            help="Reload the output strictly and run one forward pass. [default: verify]",
            rich_help_panel=_RUN,
        ),
    ] = None,
    device: Annotated[
        str | None,
        typer.Option(
            metavar="DEVICE", help="Device for sampling the head. [default: cpu]", rich_help_panel=_RUN
        ),
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print one JSON report on stdout.", rich_help_panel=_RUN)
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print nothing on success.", rich_help_panel=_RUN)
    ] = False,
) -> None:
    """Replace the classification head of a checkpoint with a new, truncated-normal one."""
    from modelsurgeon.cli._render import rehead_summary, write_progress
    from modelsurgeon.config import ReheadConfig, load_config_file

    set_quiet(quiet)
    flags = dict(
        arch=arch, classes=classes, checkpoint=checkpoint, ema=ema, labels=labels, head=head or None,
        out=out, force=force, link=link, mean=mean, std=std, a=a, b=b, bounds=bounds, bias=bias,
        seed=seed, verify=verify, device=device,
    )  # fmt: skip
    recipe = load_config_file(config) if config is not None else None
    cfg = ReheadConfig.from_sources(recipe, flags, file_origin=str(config) if config else "flags")

    from modelsurgeon.surgery import rehead as run_rehead

    with write_progress() as progress:
        report = run_rehead(cfg, progress=progress)
    for warning in report.warnings:
        err_console.print(f"warning: {warning}", markup=False, soft_wrap=True)
    if json_out:
        emit_json(report.to_json())
    rehead_summary(report)
