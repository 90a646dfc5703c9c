"""Arch-free surgery (``rehead --head NAME``): resize named head modules of any checkpoint.

For each ``NAME``, ``NAME.weight`` of shape ``[C, ...]`` and ``NAME.bias`` of shape ``[C]`` (when
present) become ``[N, ...]`` and ``[N]``. Everything else is carried over bit for bit. Without an
architecture the output can only be verified by shape, and the report says so.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from modelsurgeon.config import ReheadConfig
from modelsurgeon.errors import InputError, UsageError

if TYPE_CHECKING:  # pragma: no cover
    from modelsurgeon.surgery import Report

__all__ = ["rehead_named"]


def _head_keys(name: str, keys: set[str]) -> tuple[str, str | None]:
    module = name[: -len(".weight")] if name.endswith(".weight") else name
    weight = f"{module}.weight"
    if weight not in keys:
        near = sorted(k for k in keys if k.endswith(".weight") and module.split(".")[-1] in k)[:3]
        hint = (
            f"did you mean {', '.join(k[: -len('.weight')] for k in near)}?"
            if near
            else "see `modelsurgeon inspect`"
        )
        raise UsageError(f"--head {name}: the checkpoint has no tensor {weight}", hint)
    bias = f"{module}.bias"
    return weight, bias if bias in keys else None


def _shape_check(expected: dict[str, tuple[int, ...]]) -> Callable[[Path], None]:
    """A ``write_checkpoint`` check hook: the written keys and shapes must be the planned ones."""

    def check(path: Path) -> None:
        from modelsurgeon.checkpoint import read_checkpoint
        from modelsurgeon.errors import ModelSurgeonError

        with read_checkpoint(path) as written:
            got = {k: tuple(v.shape) for k, v in written.infos.items()}
        if got != expected:
            raise ModelSurgeonError("verification failed: written keys or shapes differ from the plan; a bug")

    return check


def rehead_named(config: ReheadConfig, *, progress: Callable[[int, int], None] | None = None) -> Report:
    """Run the arch-free surgery described by ``config.head``.

    Args:
        config: The recipe; ``config.head`` names the modules, ``config.arch`` is ignored.
        progress: Byte-progress callback for the write.

    Returns:
        The surgery report; ``verified`` says the check was shape-only.
    """
    from modelsurgeon import surgery
    from modelsurgeon.checkpoint import OutTensor, read_checkpoint
    from modelsurgeon.heads import HeadTensor

    init, warnings = surgery.plan_init(config)
    labels = surgery.read_labels(config.labels) if config.labels else None
    classes = surgery._classes_from(config, labels)
    if not config.checkpoint:
        raise UsageError("--head needs --checkpoint", "pass --checkpoint PATH (or - for stdin)")
    source, out = config.checkpoint, config.out
    if not out:
        stem = source.rsplit("/", 1)[-1].split(".")[0] if source != "-" else "checkpoint"
        out = f"{stem}-{classes}cls.safetensors"
    if surgery._same_file(source, out) and not config.force:
        raise UsageError(
            f"--out {out} is the input checkpoint", "pick another --out, or pass --force to replace it"
        )
    seed = config.seed if config.seed is not None else secrets.randbits(63)
    with read_checkpoint(source, ema=config.ema) as ckpt:
        keys = set(ckpt.infos)
        tensors: list[HeadTensor] = []
        removed: list[str] = []
        old_classes: int | None = None
        for name in config.head:
            weight, bias = _head_keys(name, keys)
            wshape = tuple(ckpt.infos[weight].shape)
            if len(wshape) < 1:
                raise InputError(f"--head {name}: {weight} is a scalar; expected shape [C, ...]")
            c = wshape[0]
            if bias is not None and tuple(ckpt.infos[bias].shape) != (c,):
                raise InputError(
                    f"--head {name}: {bias} has shape {list(ckpt.infos[bias].shape)}, "
                    f"expected [{c}] like {weight}"
                )
            if old_classes is not None and c != old_classes:
                raise InputError(f"--head {name}: {c} classes, but an earlier --head has {old_classes}")
            old_classes = c
            module = weight[: -len(".weight")]
            removed += [weight] + ([bias] if bias else [])
            if classes > 0:
                tensors.append(
                    HeadTensor(name=weight, shape=(classes, *wshape[1:]), role="weight", module=module)
                )
                if bias is not None:
                    tensors.append(HeadTensor(name=bias, shape=(classes,), role="bias", module=module))
        rows = (
            surgery._resolve_copies(labels, surgery._old_labels(ckpt), old_classes)
            if labels is not None
            else None
        )
        heads = surgery._sample_heads(tensors, ckpt, init, seed, config.device, rows)
        kept = {i: r for i, r in enumerate(rows or []) if r is not None}
        entries = [
            OutTensor(k, ckpt.infos[k].dtype, tuple(ckpt.infos[k].shape), surgery._getter(ckpt, k), origin=k)
            for k in sorted(keys - set(removed))
        ]
        entries += [OutTensor(k, v.dtype, tuple(v.shape), surgery._const(v)) for k, v in heads.items()]
        entries.sort(key=lambda e: e.name)
        metadata = surgery._metadata(ckpt, None, classes, list(heads), init, seed, labels, kept)
        expected = {e.name: tuple(e.shape) for e in entries}
        check = _shape_check(expected) if config.verify and out != "-" else None
        result = surgery._write(out, entries, metadata, config, ckpt, progress, check, warnings)
        notes = list(ckpt.notes)
        source_sha, source_format = ckpt.sha256, ckpt.format
    if check is not None:
        verified = "shape-only (no --arch): every key and shape of the written file checked before the rename"
    else:
        verified = "skipped (--no-verify)" if not config.verify else "shape-only plan check (stdout)"
    return surgery.Report(
        output=result.path,
        arch=None,
        classes=classes,
        head=sorted(heads),
        dropped=sorted(removed),
        seed=seed,
        init=init.to_dict(),
        source=source,
        source_sha256=source_sha,
        source_format=source_format,
        output_format=result.format,
        output_bytes=result.nbytes,
        head_type=f"named ({', '.join(config.head)})",
        default_classes=old_classes,
        verified=verified,
        tensors=len(entries),
        kept_rows=len(kept),
        labels=[label.name for label in labels] if labels is not None else None,
        notes=notes,
        warnings=warnings,
    )
