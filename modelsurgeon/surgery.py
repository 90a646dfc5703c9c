"""Plan and apply the rehead: the one function the CLI calls. Prints nothing; returns a Report.

The surgery never builds real weights: the architecture is built on the meta device to learn which
tensors depend on the class count (:mod:`modelsurgeon.heads`), the checkpoint's keys and shapes are
matched strictly against it, the new head tensors are sampled (:mod:`modelsurgeon.sampler`) and every
other tensor is streamed from the checkpoint to the output bit for bit, with its dtype.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelsurgeon import __version__
from modelsurgeon.config import ReheadConfig
from modelsurgeon.errors import InputError, ModelSurgeonError, UsageError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from modelsurgeon.archs import ArchRef
    from modelsurgeon.checkpoint import Checkpoint, OutTensor, WriteResult
    from modelsurgeon.heads import HeadSpec, HeadTensor

__all__ = [
    "FULL_VERIFY_MAX_BYTES",
    "META_PREFIX",
    "InitSpec",
    "Label",
    "Report",
    "describe_mismatch",
    "format_examples",
    "plan_init",
    "read_labels",
    "rehead",
]

META_PREFIX = "modelsurgeon."
# Bounds further than this many std from the mean cut a fraction below 2e-9 of the mass: "nothing".
_CUTS_NOTHING_SIGMA = 6.0
# Outputs whose float32 size is larger than this are verified on the meta device instead of by a real
# forward pass (which runs in float32: a float16/bfloat16/float64 model is copied to float32 for it).
FULL_VERIFY_MAX_BYTES = 256 * 2**20
_EXAMPLES = 3

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class InitSpec:
    """How the new head is initialised. ``a_abs``/``b_abs`` are the absolute bounds actually used."""

    mean: float
    std: float
    a: float
    b: float
    bounds: str
    bias: float
    a_abs: float
    b_abs: float

    def to_dict(self) -> dict[str, Any]:
        """Plain mapping; the bias is ``"zeros"`` when it is 0."""
        d = asdict(self)
        d["bias"] = "zeros" if self.bias == 0.0 else self.bias
        return d


@dataclass(frozen=True)
class Label:
    """One line of a labels file: a class name, and the old head row to copy (``None`` = sample)."""

    name: str
    copy_from: int | str | None = None


@dataclass
class Report:
    """What ``rehead`` did. Serialised by the CLI with ``--json``."""

    output: str
    arch: str | None
    classes: int
    head: list[str]
    dropped: list[str]
    seed: int
    init: dict[str, Any]
    source: str
    source_sha256: str
    source_format: str
    output_format: str
    output_bytes: int
    head_type: str
    default_classes: int | None
    verified: str
    tensors: int
    kept_rows: int = 0
    labels: list[str] | None = None
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` object."""
        return asdict(self)


def plan_init(config: ReheadConfig) -> tuple[InitSpec, list[str]]:
    """Resolve the init parameters to absolute bounds and collect warnings.

    Args:
        config: The validated config.

    Returns:
        The init spec and warnings: bounds further than 6 std from the mean on both sides cut nothing
        and are warned about, except timm's own untouched default (std 0.02 within ±2), which is
        documented as effectively untruncated.

    Raises:
        UsageError: Bounds that make no sense after resolution.
    """
    from modelsurgeon.sampler import std_bounds

    if config.bounds == "std":
        a_abs, b_abs = std_bounds(config.mean, config.std, config.a, config.b)
    else:
        a_abs, b_abs = config.a, config.b
    if not a_abs < b_abs or math.isnan(a_abs) or math.isnan(b_abs):
        raise UsageError(f"the bounds resolve to an empty interval [{a_abs}, {b_abs}]")
    init = InitSpec(config.mean, config.std, config.a, config.b, config.bounds, config.bias, a_abs, b_abs)
    warnings: list[str] = []
    lo = (a_abs - config.mean) / config.std
    hi = (b_abs - config.mean) / config.std
    defaults = ReheadConfig()
    untouched = (config.std, config.a, config.b, config.bounds) == (
        defaults.std,
        defaults.a,
        defaults.b,
        "abs",
    )
    if lo < -_CUTS_NOTHING_SIGMA and hi > _CUTS_NOTHING_SIGMA and not untouched:
        warnings.append(
            f"the bounds [{a_abs:g}, {b_abs:g}] are {min(-lo, hi):.3g} std from the mean and cut nothing; "
            "a and b are absolute values — pass --bounds std to give them in units of std "
            "(e.g. --a -2 --b 2 --bounds std)"
        )
    return init, warnings


def read_labels(path: str | os.PathLike[str]) -> list[Label]:
    """Read a labels file: one class name per line; ``name=K`` copies old head row ``K``.

    ``K`` is an index into the old head, or an old label name when the source checkpoint carries
    labels. The text is split at the last ``=``. Blank lines at the end are ignored.

    Args:
        path: The labels file (UTF-8).

    Returns:
        One :class:`Label` per class.

    Raises:
        UsageError: Unreadable file, empty or duplicate names, blank lines inside.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read labels file {path}: {exc}") from exc
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise UsageError(f"labels file {path} is empty", "write one class name per line")
    labels: list[Label] = []
    seen: dict[str, int] = {}
    for lineno, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line:
            raise UsageError(f"labels file {path}:{lineno} is blank", "write one class name per line")
        copy_from: int | str | None = None
        name = line
        if "=" in line:
            name, _, ref = line.rpartition("=")
            name, ref = name.strip(), ref.strip()
            if not ref:
                raise UsageError(f"labels file {path}:{lineno}: nothing after '='", "write name=K")
            copy_from = int(ref) if ref.lstrip("-").isdigit() else ref
        if not name:
            raise UsageError(f"labels file {path}:{lineno}: empty class name")
        if name in seen:
            raise UsageError(
                f"labels file {path}:{lineno}: duplicate class name {name!r} (line {seen[name]})"
            )
        seen[name] = lineno
        labels.append(Label(name, copy_from))
    return labels


def format_examples(items: Sequence[str]) -> str:
    """The first few items, comma-separated, with an ellipsis when there are more."""
    shown = ", ".join(items[:_EXAMPLES])
    return shown + (", …" if len(items) > _EXAMPLES else "")


def describe_mismatch(missing: Sequence[str], unexpected: Sequence[str], mismatched: Sequence[str]) -> str:
    """One line summing up how a checkpoint's keys differ from an arch's (empty when they agree).

    Args:
        missing: Keys the arch has and the checkpoint lacks.
        unexpected: Keys the checkpoint has and the arch lacks.
        mismatched: ``"key: ... vs ..."`` descriptions of keys present in both with other shapes.

    Returns:
        e.g. ``"2 missing (e.g. a, b); 1 unexpected (e.g. c)"``; each list is sorted first.
    """
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing (e.g. {format_examples(sorted(missing))})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (e.g. {format_examples(sorted(unexpected))})")
    if mismatched:
        parts.append(f"{len(mismatched)} with other shapes (e.g. {format_examples(sorted(mismatched))})")
    return "; ".join(parts)


def _match(spec: HeadSpec, ckpt: Checkpoint, arch_label: str) -> list[str]:
    """Check the checkpoint against the arch strictly; return notes. Raises InputError on mismatch."""
    head_names = {t.name for t in spec.tensors}
    dropped = set(spec.dropped)
    missing: list[str] = []
    mismatched: list[str] = []
    filled: list[str] = []
    for key, shape in spec.body.items():
        info = ckpt.infos.get(key)
        if info is None:
            if key.endswith("num_batches_tracked"):
                filled.append(key)
                continue
            missing.append(key)
        elif tuple(info.shape) != tuple(shape):
            mismatched.append(f"{key}: checkpoint {list(info.shape)} vs arch {list(shape)}")
    unexpected = sorted(
        k for k in ckpt.infos if k not in spec.body and k not in head_names and k not in dropped
    )
    if missing or mismatched or unexpected:
        hint = "did you pick the right --arch? (prefixes module./_orig_mod. are stripped automatically)"
        prefix = _common_prefix(unexpected) if unexpected else ""
        if prefix:
            hint = f"the unexpected keys share the prefix '{prefix}' — is it a wrapper model? " + hint
        summary = describe_mismatch(missing, unexpected, mismatched)
        raise InputError(f"checkpoint does not match {arch_label}: {summary}", hint)
    wrong = [
        f"{key}: {info.dtype}, arch {'integer' if key in spec.integer else 'floating point'}"
        for key in spec.body
        if (info := ckpt.infos.get(key)) is not None and info.dtype.is_floating_point == (key in spec.integer)
    ]
    if wrong:  # an integer tensor where the arch has a float one (or the reverse): a corrupt file
        raise _dtype_kind_error(wrong)
    notes = []
    if filled:
        notes.append(
            f"{len(filled)} BatchNorm num_batches_tracked buffers missing from the checkpoint; set to 0"
        )
    return notes


def _drop_missing_aux(
    arch: ArchRef, spec: HeadSpec, ckpt: Checkpoint, notes: list[str]
) -> tuple[ArchRef, HeadSpec]:
    """torchvision googlenet / inception_v3 without any auxiliary-classifier key in the checkpoint (a
    state dict of a model built with ``aux_logits=False``): plan the ``noaux`` variant instead."""
    from modelsurgeon.archs import TV_AUX_PREFIXES, fit_aux
    from modelsurgeon.heads import find_heads

    variant = fit_aux(arch, ckpt.infos)
    if variant == arch:
        return arch, spec
    prefixes = ", ".join(p + "*" for p in TV_AUX_PREFIXES[arch.name])
    notes.append(
        f"the checkpoint has no auxiliary classifiers ({prefixes}): planned as {variant}, aux_logits=False"
    )
    return variant, find_heads(variant, spec.num_classes)


def _common_prefix(keys: Sequence[str]) -> str:
    firsts = {k.split(".", 1)[0] for k in keys}
    if len(keys) >= 2 and len(firsts) == 1:
        return next(iter(firsts)) + "."
    return ""


def _float_dtype(ckpt: Checkpoint) -> torch.dtype:
    """The checkpoint's dominant floating dtype (by element count); float32 when there is none."""
    import torch

    counts: dict[torch.dtype, int] = {}
    for info in ckpt.infos.values():
        if info.dtype.is_floating_point:
            counts[info.dtype] = counts.get(info.dtype, 0) + math.prod(info.shape)
    return max(counts, key=lambda d: counts[d]) if counts else torch.float32


def _resolve_copies(
    labels: Sequence[Label], old_labels: list[str] | None, old_classes: int | None
) -> list[int | None]:
    rows: list[int | None] = []
    for i, label in enumerate(labels):
        ref = label.copy_from
        if ref is None:
            rows.append(None)
            continue
        if old_classes is None:
            raise UsageError(
                f"label {i} ({label.name}={ref}) copies a row of the old head, "
                "but the checkpoint has no head",
                "remove '=K' from the labels file",
            )
        if isinstance(ref, str):
            if not old_labels or ref not in old_labels:
                raise UsageError(
                    f"label {i} ({label.name}={ref}): the checkpoint has no old label named {ref!r}",
                    "use a row index, or a checkpoint made by modelsurgeon with --labels",
                )
            rows.append(old_labels.index(ref))
            continue
        if not 0 <= ref < old_classes:
            raise UsageError(
                f"label {i} ({label.name}={ref}): row {ref} is outside the old head's {old_classes} classes",
                f"use an index from 0 to {old_classes - 1}",
            )
        rows.append(ref)
    return rows


def _sample_heads(
    tensors: Sequence[HeadTensor],
    ckpt: Checkpoint,
    init: InitSpec,
    seed: int,
    device: str,
    rows: list[int | None] | None,
) -> dict[str, torch.Tensor]:
    """Make every new head tensor, in name order, from one generator seeded with ``seed``."""
    import torch

    from modelsurgeon.sampler import trunc_normal_

    try:
        generator = torch.Generator(device=device)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UsageError(f"--device {device!r} is not available: {first}", "use --device cpu") from exc
    generator.manual_seed(seed)
    default_dtype = _float_dtype(ckpt)
    out: dict[str, torch.Tensor] = {}
    for spec in sorted(tensors, key=lambda t: t.name):
        old = ckpt.infos.get(spec.name)
        dtype = old.dtype if old is not None and old.dtype.is_floating_point else default_dtype
        value = torch.empty(spec.shape, dtype=dtype, device=device)
        if spec.role == "weight":
            trunc_normal_(value, init.mean, init.std, init.a_abs, init.b_abs, generator=generator)
        elif spec.role == "bias":
            value.fill_(init.bias)
        elif spec.role == "ones":
            value.fill_(1.0)
        else:
            value.zero_()
        value = value.cpu()
        if rows is not None and old is not None and any(r is not None for r in rows):
            if tuple(old.shape[1:]) != tuple(spec.shape[1:]):
                raise InputError(
                    f"cannot copy rows of {spec.name}: old shape {list(old.shape)} vs new {list(spec.shape)}"
                )
            source = ckpt.tensor(spec.name)
            for new_row, old_row in enumerate(rows):
                if old_row is not None:
                    value[new_row] = source[old_row].to(dtype)
        out[spec.name] = value
    return out


def _metadata(
    ckpt: Checkpoint,
    arch_label: str | None,
    classes: int,
    head: Sequence[str],
    init: InitSpec,
    seed: int,
    labels: Sequence[Label] | None,
    kept: Mapping[int, int],
) -> dict[str, str]:
    meta = {k: v for k, v in ckpt.metadata.items() if not k.startswith(META_PREFIX)}
    meta.setdefault("format", "pt")
    meta.update(
        {
            f"{META_PREFIX}version": __version__,
            f"{META_PREFIX}arch": arch_label or "",
            f"{META_PREFIX}classes": str(classes),
            f"{META_PREFIX}head": json.dumps(sorted(head)),
            f"{META_PREFIX}init": json.dumps(init.to_dict(), sort_keys=True),
            f"{META_PREFIX}seed": str(seed),
            f"{META_PREFIX}source_sha256": ckpt.sha256,
        }
    )
    if labels is not None:
        meta[f"{META_PREFIX}labels"] = json.dumps([label.name for label in labels], ensure_ascii=False)
    if kept:
        meta[f"{META_PREFIX}kept_rows"] = json.dumps({str(k): v for k, v in sorted(kept.items())})
    return meta


def _old_labels(ckpt: Checkpoint) -> list[str] | None:
    raw = ckpt.metadata.get(f"{META_PREFIX}labels")
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        return None
    return [str(v) for v in value] if isinstance(value, list) else None


def _same_file(a: str, b: str) -> bool:
    if a == "-" or b == "-":
        return False
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _classes_from(config: ReheadConfig, labels: list[Label] | None) -> int:
    if labels is not None:
        if config.classes is not None and config.classes != len(labels):
            raise UsageError(
                f"--classes {config.classes} disagrees with the {len(labels)} lines of {config.labels}",
                "omit --classes when --labels is given",
            )
        return len(labels)
    if config.classes is None:
        raise UsageError("--classes is required", "pass --classes N (0 removes the head), or --labels FILE")
    return config.classes


def rehead(config: ReheadConfig, *, progress: Progress | None = None) -> Report:
    """Replace the classification head of a checkpoint, as ``config`` says.

    Args:
        config: The validated recipe.
        progress: Called with ``(bytes_done, bytes_total)`` while the output is written.

    Returns:
        A :class:`Report` of what was done.

    Raises:
        UsageError: Bad options (unknown arch, bad labels, bad init parameters).
        InputError: Unreadable, unsafe or mismatched checkpoint.
        OutputError: The output exists, is unwritable, or the disk is full.
    """
    start = time.perf_counter()
    if config.head:
        from modelsurgeon._headless import rehead_named

        report = rehead_named(config, progress=progress)
        report.seconds = round(time.perf_counter() - start, 3)
        return report
    if not config.arch:
        raise UsageError("--arch is required", "pass --arch NAME (see `modelsurgeon archs`), or --head NAME")
    init, warnings = plan_init(config)
    labels = read_labels(config.labels) if config.labels else None
    classes = _classes_from(config, labels)

    from modelsurgeon.archs import pretrained_hub_id, resolve_arch
    from modelsurgeon.checkpoint import read_checkpoint
    from modelsurgeon.heads import find_heads

    # Hash the source while timm is imported and the arch is planned (the hash is ~1.5 s per GB).
    prefetch = _Prefetch(config.checkpoint, ema=config.ema)
    try:
        arch = resolve_arch(config.arch)
        spec = find_heads(arch, classes)
        if config.checkpoint:
            source = config.checkpoint
        else:
            from modelsurgeon.hub import locate_pretrained

            source = str(locate_pretrained(pretrained_hub_id(arch), arch_label=str(arch)))
        out = config.out or f"{arch.name}-{classes}cls.safetensors"
        if _same_file(source, out) and not config.force:
            raise UsageError(
                f"--out {out} is the input checkpoint", "pick another --out, or pass --force to replace it"
            )
    except BaseException:
        prefetch.close()
        raise
    seed = config.seed if config.seed is not None else secrets.randbits(63)

    with prefetch.take() or read_checkpoint(source, ema=config.ema) as ckpt:
        notes = list(ckpt.notes)
        arch, spec = _drop_missing_aux(arch, spec, ckpt, notes)
        notes += _match(spec, ckpt, str(arch))
        old_head = next((t for t in spec.tensors if t.role == "weight" and t.name in ckpt.infos), None)
        old_classes = ckpt.infos[old_head.name].shape[0] if old_head is not None else None
        rows = _resolve_copies(labels, _old_labels(ckpt), old_classes) if labels is not None else None
        heads = _sample_heads(spec.tensors, ckpt, init, seed, config.device, rows)
        kept = {i: r for i, r in enumerate(rows or []) if r is not None}
        entries = _entries(spec, ckpt, heads)
        metadata = _metadata(
            ckpt, str(arch), classes, [t.name for t in spec.tensors], init, seed, labels, kept
        )
        verifier = _Verifier(spec, entries) if config.verify and out != "-" else None
        if out == "-" and config.verify:
            verified = _verify_entries(spec, entries)
        result = _write(out, entries, metadata, config, ckpt, progress, verifier, warnings)
        source_sha, source_format = ckpt.sha256, ckpt.format
    if verifier is not None:
        verified = verifier.result
    elif not config.verify:
        verified = "skipped (--no-verify)"
    return Report(
        output=result.path,
        arch=str(arch),
        classes=classes,
        head=sorted(t.name for t in spec.tensors),
        dropped=sorted(spec.dropped),
        seed=seed,
        init=init.to_dict(),
        source=source,
        source_sha256=source_sha,
        source_format=source_format,
        output_format=result.format,
        output_bytes=result.nbytes,
        head_type=spec.head_type,
        default_classes=spec.default_classes,
        verified=verified,
        tensors=len(entries),
        kept_rows=len(kept),
        labels=[label.name for label in labels] if labels is not None else None,
        notes=notes,
        warnings=warnings,
        seconds=round(time.perf_counter() - start, 3),
    )


def _write(
    out: str,
    entries: Sequence[OutTensor],
    metadata: Mapping[str, str],
    config: ReheadConfig,
    ckpt: Checkpoint,
    progress: Progress | None,
    check: Callable[[Path], None] | None,
    warnings: list[str],
) -> WriteResult:
    """Write the output as the config says; warn when its format cannot hold the metadata."""
    from modelsurgeon.checkpoint import write_checkpoint

    result = write_checkpoint(
        out,
        entries,
        metadata=metadata,
        force=config.force,
        source=ckpt,
        link=config.link,
        progress=progress,
        check=check,
    )
    if result.format not in ("safetensors", "safetensors-sharded"):
        warnings.append(f"{result.format} output cannot hold metadata; provenance and labels are not stored")
    return result


class _Prefetch:
    """The source checkpoint, opened early, its sha256 computed in a background thread.

    ``hashlib`` and file reads release the GIL, so the hash runs on another core while the main thread
    imports timm and builds the arch on meta. Errors are not raised here: when opening fails, the
    checkpoint is opened again later, in the usual order (usage errors about the arch come first).
    stdin (hashed while it is spooled) and hub checkpoints (located from the arch) are not prefetched.
    """

    def __init__(self, source: str | None, *, ema: bool) -> None:
        self._ckpt: Checkpoint | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._hashed = self._abandoned = False
        if not source or source == "-":
            return
        from modelsurgeon.checkpoint import read_checkpoint

        try:
            self._ckpt = read_checkpoint(source, ema=ema)
        except InputError:
            return
        self._thread = threading.Thread(target=self._hash, name="modelsurgeon-sha256", daemon=True)
        self._thread.start()

    def _hash(self) -> None:
        if self._ckpt is None:  # pragma: no cover - the thread only starts with a checkpoint
            return
        with contextlib.suppress(ModelSurgeonError):  # raised again when the main thread asks for it
            _ = self._ckpt.sha256
        with self._lock:
            self._hashed = True
            abandoned = self._abandoned
        if abandoned:
            self._ckpt.close()

    def take(self) -> Checkpoint | None:
        """The opened checkpoint once its hash is done, or None when it could not be opened early."""
        if self._thread is not None:
            self._thread.join()
        return self._ckpt

    def close(self) -> None:
        """Close the checkpoint now, or (while it is being hashed) as soon as the hash is done."""
        with self._lock:
            self._abandoned = True
            now = self._hashed or self._thread is None
        if now and self._ckpt is not None:
            self._ckpt.close()


def _entries(spec: HeadSpec, ckpt: Checkpoint, heads: Mapping[str, torch.Tensor]) -> list[OutTensor]:
    """Every output tensor in name order: body tensors streamed from the checkpoint, new heads."""
    import torch

    from modelsurgeon.checkpoint import OutTensor

    entries: list[OutTensor] = []
    for key in spec.body:
        info = ckpt.infos.get(key)
        if info is None:  # a num_batches_tracked buffer the checkpoint lacks
            entries.append(OutTensor(key, torch.int64, (), lambda: torch.zeros((), dtype=torch.int64)))
            continue
        entries.append(OutTensor(key, info.dtype, tuple(info.shape), _getter(ckpt, key), origin=key))
    for key, value in heads.items():
        entries.append(OutTensor(key, value.dtype, tuple(value.shape), _const(value)))
    entries.sort(key=lambda e: e.name)
    return entries


def _getter(ckpt: Checkpoint, key: str) -> Callable[[], torch.Tensor]:
    return lambda: ckpt.tensor(key)


def _const(value: torch.Tensor) -> Callable[[], torch.Tensor]:
    return lambda: value


def _verify_entries(spec: HeadSpec, entries: Sequence[OutTensor]) -> str:
    """Shape-check the planned output against the N-class arch (used when writing to stdout)."""
    expected = dict(spec.body)
    expected.update({t.name: tuple(t.shape) for t in spec.tensors})
    got = {e.name: tuple(e.shape) for e in entries}
    if got != {k: tuple(v) for k, v in expected.items()}:
        bad = sorted(set(got) ^ set(expected))
        raise ModelSurgeonError(
            f"planned output does not match the arch (e.g. {format_examples(bad)}); this is a bug"
        )
    return "keys and shapes match the arch (stdout output is not re-read)"


class _Verifier:
    """The ``check`` hook of :func:`write_checkpoint`: verifies the temporary output before rename.

    Outputs up to :data:`FULL_VERIFY_MAX_BYTES`, counting floating tensors at their float32 size (the
    forward runs in float32, so that is what a half-precision model costs it), get a strict load and a
    real forward pass from the written file. Larger ones are checked on the meta device: the planned
    keys, shapes and dtypes are loaded strictly into the arch in a background thread while the file is
    being written (the copy runs in the kernel, so the two overlap), then the written header is read
    back and must equal the plan.
    """

    def __init__(self, spec: HeadSpec, entries: Sequence[OutTensor]) -> None:
        self.spec = spec
        self.result = "not run"
        self._planned = {e.name: (e.dtype, tuple(e.shape)) for e in entries}
        self._nbytes = sum(_float32_nbytes(e) for e in entries)
        self._meta: _Background | None = None
        if self._nbytes > FULL_VERIFY_MAX_BYTES:
            self._meta = _Background(_verify_on_meta, spec, self._planned)

    def __call__(self, path: Path) -> None:
        try:
            if self._meta is None:
                self.result = _verify_load_forward(self.spec, str(path))
                return
            meta_result = self._meta.result()
            _check_header(str(path), self._planned)
            size = f"{self._nbytes / 2**20:.0f} MiB in float32 > {FULL_VERIFY_MAX_BYTES // 2**20} MiB"
            self.result = f"{meta_result} (no numeric forward: {size})"
        except ModelSurgeonError:
            raise
        except (RuntimeError, ValueError, TypeError, KeyError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else ""
            raise ModelSurgeonError(
                f"verification failed: {type(exc).__name__}: {first}",
                "nothing was written; this is a bug — rerun with --debug and report it "
                "(--no-verify skips the check)",
            ) from exc


def _float32_nbytes(e: OutTensor) -> int:
    """Bytes of ``e`` in the verification forward: floating tensors count at their float32 size."""
    return math.prod(e.shape) * 4 if e.dtype.is_floating_point else e.nbytes


class _Background:
    """Run ``fn(*args)`` in a daemon thread; :meth:`result` joins it and returns or re-raises."""

    def __init__(self, fn: Callable[..., str], *args: Any) -> None:
        self._value: str | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn, args), name="modelsurgeon-verify")
        self._thread.daemon = True
        self._thread.start()

    def _run(self, fn: Callable[..., str], args: tuple[Any, ...]) -> None:
        try:
            self._value = fn(*args)
        except BaseException as exc:  # handed to the main thread by result()
            self._error = exc

    def result(self) -> str:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._value is not None
        return self._value


def _check_header(path: str, planned: Mapping[str, tuple[torch.dtype, tuple[int, ...]]]) -> None:
    """Raise unless the written file's keys, dtypes and shapes are exactly the planned ones."""
    from modelsurgeon.checkpoint import read_checkpoint

    with read_checkpoint(path) as written:
        got = {k: (i.dtype, tuple(i.shape)) for k, i in written.infos.items()}
    if got != planned:
        bad = sorted(k for k in set(got) | set(planned) if got.get(k) != planned.get(k))
        raise ModelSurgeonError(
            f"the written file differs from the plan (e.g. {format_examples(bad)}); this is a bug"
        )


def _dtype_kind_error(wrong: Sequence[str]) -> InputError:
    return InputError(
        f"{len(wrong)} checkpoint tensors have a dtype the arch cannot take "
        f"(e.g. {format_examples(sorted(wrong))})",
        "is the checkpoint corrupt or quantized? re-export it from the model (nothing was written)",
    )


def _loadable(model: torch.nn.Module, state: Mapping[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
    """``state`` sorted, carrying the arch's own ``_metadata``; refuses float/int dtype swaps."""
    arch_state = model.state_dict()
    wrong = sorted(
        f"{key}: {t.dtype}, arch {arch_state[key].dtype}"
        for key, t in state.items()
        if key in arch_state and t.is_floating_point() != arch_state[key].is_floating_point()
    )
    if wrong:
        raise _dtype_kind_error(wrong)
    ordered = OrderedDict(sorted(state.items()))
    # Some modules (torchvision's MNASNet, BatchNorm) read their version from the metadata that a
    # real state_dict() carries; give the loaded dict the same metadata as the arch's own.
    ordered._metadata = getattr(arch_state, "_metadata", None)  # type: ignore[attr-defined]
    return ordered


def _check_logits(spec: HeadSpec, y: Any) -> torch.Tensor:
    if isinstance(y, (tuple, list)):
        y = y[0]
    if spec.num_classes > 0 and tuple(y.shape) != (1, spec.num_classes):
        raise ModelSurgeonError(
            f"verification: logits have shape {list(y.shape)}, "
            f"expected [1, {spec.num_classes}]; this is a bug"
        )
    return y


def _verify_load_forward(spec: HeadSpec, path: str) -> str:
    """Verify the written file: strict load into the N-class arch, then a forward pass on the CPU.

    The parameters are memory-mapped from the file; half-precision models run in float32.
    """
    import torch

    from modelsurgeon.archs import build_model
    from modelsurgeon.checkpoint import read_checkpoint

    with read_checkpoint(path) as written:
        model = build_model(spec.arch, spec.num_classes, buffers="cpu")
        state = {key: written.tensor(key) for key in written.infos}
        model.load_state_dict(_loadable(model, state), strict=True, assign=True)
        left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
        if left:
            raise ModelSurgeonError(
                f"{len(left)} tensors were not loaded (e.g. {format_examples(left)}); this is a bug"
            )
        dtypes = {p.dtype for p in model.parameters()}
        if dtypes - {torch.float32}:
            model = model.float()
        x = torch.randn((1, *spec.input_size), generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            y = _check_logits(spec, model.eval()(x))
        if not bool(torch.isfinite(y).all()):
            raise InputError(
                "verification: the forward pass gave non-finite outputs",
                "the checkpoint holds NaN/inf or huge weights; check it (nothing was written), "
                "or pass --no-verify to write it anyway",
            )
    shape = f"(1, {spec.num_classes})" if spec.num_classes > 0 else f"features {tuple(y.shape)}"
    return f"strict load into the arch + forward pass: finite {shape}"


def _verify_on_meta(spec: HeadSpec, planned: Mapping[str, tuple[torch.dtype, tuple[int, ...]]]) -> str:
    """Load the planned keys, shapes and dtypes strictly into the N-class arch built on meta.

    No meta forward: with every shape equal to what the arch's own builder made, it could only fail on
    a bug in timm or torchvision, and it costs 0.15 s (ViT-B) to 0.5 s (ViT-L) of CPU (measured).
    """
    import torch

    from modelsurgeon.archs import build_model

    model = build_model(spec.arch, spec.num_classes, buffers="meta")
    state = {k: torch.empty(shape, dtype=dtype, device="meta") for k, (dtype, shape) in planned.items()}
    model.load_state_dict(_loadable(model, state), strict=True, assign=True)
    return "strict load of every key, shape and dtype of the written file into the arch on the meta device"
