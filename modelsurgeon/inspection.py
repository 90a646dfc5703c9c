"""Inspect a checkpoint: what it holds, where its head is, and how its head weights are distributed.

The one function the ``inspect`` command calls. Prints nothing; returns an :class:`InspectReport`.

The head (the class-dependent tensors) and the class count come from the first source that applies:

1. ``"arch"``: the architecture given with ``arch=`` (:func:`modelsurgeon.heads.find_heads` on the
   checkpoint's own class count); the checkpoint's keys and shapes are also compared with the arch.
2. ``"metadata"``: the provenance that ``modelsurgeon rehead`` writes (``modelsurgeon.head``,
   ``modelsurgeon.classes``).
3. ``"heuristic"``: the checkpoint's names and shapes alone. Candidates are the ≥ 2-D ``*.weight``
   tensors whose module path has a classifier-like component (``head``, ``head_*``, ``fc``, ``classifier``,
   ``logits``, ``last_linear``, ``heads``; ``pre_logits`` excluded). The last candidate in natural key
   order (``classifier.6`` after ``classifier.0``) is the head; other candidates with the same number of
   rows (DeiT's ``head_dist``) join it, each with its ``.bias`` when that is 1-D with as many entries.
4. ``"none"``: nothing found (a backbone checkpoint); ``classes`` is ``None``.

Counting conventions: ``parameters`` is the number of elements of every tensor in the checkpoint, buffers
included (a checkpoint does not tell parameters from buffers); ``dtypes`` maps a dtype name (``"float32"``)
to the number of elements stored in it, so its values sum to ``parameters``.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from modelsurgeon.surgery import META_PREFIX, describe_mismatch, format_examples

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from modelsurgeon.checkpoint import Checkpoint, TensorInfo

__all__ = ["HISTOGRAM_BINS", "HeadSource", "Histogram", "InspectReport", "inspect_checkpoint"]

HISTOGRAM_BINS = 41
"""Number of histogram bins of the head weights."""

HeadSource = Literal["arch", "metadata", "heuristic", "none"]

# Module path components that name a classifier; "fc1"/"fc2" (MLP layers) and "pre_logits" do not match.
_HEAD_PART = re.compile(r"head|head_\w+|heads|fc|classifier|logits|last_linear")
_NOT_HEAD_PART = re.compile(r"pre_logits")
_JSON_KEYS = ("head", "init", "kept_rows")
_INT_KEYS = ("classes", "seed")
# Histogram range around the init: the support clipped to this many std around the mean.
_INIT_SIGMAS = 4.0


@dataclass(frozen=True)
class Histogram:
    """A histogram of the head weights, and the density of the init they were sampled from.

    Args:
        edges: ``bins + 1`` increasing bin edges (weight units).
        counts: Values per bin.
        density: The init's truncated-normal density at each bin centre (per weight unit), or ``None``
            when the checkpoint carries no init metadata.
        excluded_rows: Head rows left out because they were copied from an old head
            (``modelsurgeon.kept_rows``), not sampled.
    """

    edges: list[float]
    counts: list[int]
    density: list[float] | None
    excluded_rows: int = 0


@dataclass
class InspectReport:
    """What :func:`inspect_checkpoint` found. ``to_json`` gives the ``--json`` object.

    Args:
        source: The source as given (``"<stdin>"`` for ``"-"``).
        format: ``"safetensors"``, ``"safetensors-sharded"``, ``"torch-zip"`` or ``"torch-legacy"``.
        sha256: Hex sha256 of the source bytes (see :attr:`modelsurgeon.checkpoint.Checkpoint.sha256`).
        tensors: Number of tensors.
        parameters: Elements of all tensors, buffers included.
        bytes: Bytes of tensor data.
        dtypes: Dtype name → elements stored in that dtype.
        classes: Rows of the head (the class count); 0 for a checkpoint the arch says is headless;
            ``None`` when no head was found.
        head: Names of the head tensors, sorted.
        head_tensors: Head tensor name → ``{"dtype", "shape"}``.
        head_source: Where ``classes`` and ``head`` came from (see the module docstring).
        head_type: The arch's head label (``"Linear"``, …) when ``arch`` was given, else ``None``.
        arch: The arch given, else the one in the metadata, else ``None``.
        metadata: The ``modelsurgeon.*`` provenance, prefix removed and decoded (``classes`` and ``seed``
            as ints; ``head``, ``init``, ``kept_rows`` as JSON), ``labels`` excluded.
        other_metadata: Every other string metadata key, as stored.
        labels: Class names (``modelsurgeon.labels``), or ``None``.
        head_stats: ``mean``, ``std`` (population), ``min``, ``max`` and ``count`` of all head weights
            (float64), plus ``expected_mean``/``expected_std`` of the init and ``outside_bounds`` (values
            outside its ``[a_abs, b_abs]``) when init metadata exists; ``None`` without head weights.
        histogram: See :class:`Histogram`; ``None`` without head weights.
        notes: What was done while reading.
        warnings: Disagreements worth a look (metadata vs tensors, checkpoint vs arch).
    """

    source: str
    format: str
    sha256: str
    tensors: int
    parameters: int
    bytes: int
    dtypes: dict[str, int]
    classes: int | None
    head: list[str]
    head_tensors: dict[str, dict[str, Any]]
    head_source: HeadSource
    head_type: str | None = None
    arch: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    other_metadata: dict[str, str] = field(default_factory=dict)
    labels: list[str] | None = None
    head_stats: dict[str, Any] | None = None
    histogram: Histogram | None = None
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` object: every field, JSON-ready."""
        return asdict(self)


@dataclass
class _Head:
    """The head found by one of the sources."""

    source: HeadSource
    classes: int | None
    names: list[str]
    weights: list[str]  # the ≥ 2-D tensors among names: the ones sampled from the init
    head_type: str | None = None
    arch: str | None = None


def inspect_checkpoint(
    source: str | os.PathLike[str], *, arch: str | None = None, ema: bool = False
) -> InspectReport:
    """Describe a checkpoint: tensors, dtypes, head, class count, provenance, labels, head weights.

    Args:
        source: Anything :func:`modelsurgeon.checkpoint.read_checkpoint` reads: a file, a sharded index
            (or its directory), or ``"-"`` for stdin.
        arch: An architecture name (as for ``rehead --arch``) to find the head with; its keys and shapes
            are compared with the checkpoint's and differences become warnings.
        ema: Inspect the EMA weights of a training checkpoint.

    Returns:
        The :class:`InspectReport`.

    Raises:
        InputError: The source is unreadable, corrupt, unsafe or not a checkpoint.
        UsageError: ``arch`` is unknown.
    """
    from modelsurgeon.checkpoint import read_checkpoint

    if arch is not None:
        from modelsurgeon.archs import resolve_arch

        resolve_arch(arch)  # an unknown arch fails before the checkpoint is read
    with read_checkpoint(source, ema=ema) as ckpt:
        warnings: list[str] = []
        metadata, other, labels = _decode_metadata(ckpt.metadata, warnings)
        if arch is not None:
            head = _head_from_arch(arch, ckpt, warnings)
            if isinstance(metadata.get("classes"), int) and metadata["classes"] != head.classes:
                warnings.append(
                    f"metadata says {metadata['classes']} classes; {head.arch} finds {head.classes}"
                )
        else:
            head = _head_from_metadata(metadata, ckpt, warnings) or _head_from_shapes(ckpt)
        if head.arch is None and isinstance(metadata.get("arch"), str) and metadata["arch"]:
            head.arch = metadata["arch"]
        _check_labels(labels, head.classes, warnings)
        stats, histogram = _head_weights(ckpt, head.weights, metadata, warnings)
        infos = ckpt.infos
        return InspectReport(
            source=ckpt.source,
            format=ckpt.format,
            sha256=ckpt.sha256,
            tensors=len(infos),
            parameters=sum(math.prod(i.shape) for i in infos.values()),
            bytes=sum(i.nbytes for i in infos.values()),
            dtypes=_dtype_counts(infos),
            classes=head.classes,
            head=sorted(head.names),
            head_tensors={
                n: {"dtype": _dtype_name(infos[n].dtype), "shape": list(infos[n].shape)}
                for n in sorted(head.names)
            },
            head_source=head.source,
            head_type=head.head_type,
            arch=head.arch,
            metadata=metadata,
            other_metadata=other,
            labels=labels,
            head_stats=stats,
            histogram=histogram,
            notes=list(ckpt.notes),
            warnings=warnings,
        )


# ------------------------------------------------------------------------------------------ metadata
def _decode_metadata(
    raw: Mapping[str, str], warnings: list[str]
) -> tuple[dict[str, Any], dict[str, str], list[str] | None]:
    """Split string metadata into decoded provenance, other keys, and labels."""
    provenance: dict[str, Any] = {}
    other: dict[str, str] = {}
    labels: list[str] | None = None
    for key, value in sorted(raw.items()):
        if not key.startswith(META_PREFIX):
            other[key] = value
            continue
        name = key[len(META_PREFIX) :]
        if name == "labels":
            labels = _decode_labels(value, key, warnings)
            continue
        provenance[name] = _decode_value(name, value, key, warnings)
    return provenance, other, labels


def _decode_value(name: str, value: str, key: str, warnings: list[str]) -> Any:
    try:
        if name in _JSON_KEYS:
            return json.loads(value)
        if name in _INT_KEYS:
            return int(value)
    except ValueError:  # json.JSONDecodeError is a ValueError
        warnings.append(f"metadata {key} is not valid ({value[:40]!r}); shown as stored")
    return value


def _decode_labels(value: str, key: str, warnings: list[str]) -> list[str] | None:
    try:
        decoded = json.loads(value)
    except ValueError:
        decoded = None
    if not isinstance(decoded, list):
        warnings.append(f"metadata {key} is not a JSON list of names; labels ignored")
        return None
    return [str(v) for v in decoded]


def _check_labels(labels: list[str] | None, classes: int | None, warnings: list[str]) -> None:
    if labels is not None and classes is not None and len(labels) != classes:
        warnings.append(f"the checkpoint has {len(labels)} labels but its head has {classes} classes")


# ------------------------------------------------------------------------------------------- the head
def _head_from_arch(arch: str, ckpt: Checkpoint, warnings: list[str]) -> _Head:
    """Name the head with ``find_heads`` at the checkpoint's class count; compare keys with the arch."""
    from modelsurgeon.archs import default_num_classes, fit_aux, resolve_arch
    from modelsurgeon.heads import find_heads

    ref = fit_aux(resolve_arch(arch), ckpt.infos)  # saved with aux_logits=False: as rehead plans it
    default = default_num_classes(ref)
    probe = find_heads(ref, default if default > 0 else 1)
    present = [t.name for t in probe.tensors if t.role == "weight" and t.name in ckpt.infos]
    if present:
        classes = (ckpt.infos[present[0]].shape or (0,))[0]
        spec = find_heads(ref, classes)
        expected = {**spec.body, **{t.name: t.shape for t in spec.tensors}}
    else:
        classes = 0
        wanted = ", ".join(t.name for t in probe.tensors if t.role == "weight")
        warnings.append(f"the checkpoint has none of the head weights of {ref} ({wanted}): no head")
        spec = find_heads(ref, 0) if ref.source == "timm" else probe
        expected = dict(spec.body)
    _compare_keys(expected, ckpt.infos, str(ref), warnings)
    names = [t.name for t in spec.tensors if t.name in ckpt.infos] if present else []
    weights = [t.name for t in spec.tensors if t.role == "weight" and t.name in names]
    head_type = spec.head_type if present else None
    return _Head("arch", classes, names, weights, head_type=head_type, arch=str(ref))


def _compare_keys(
    expected: Mapping[str, tuple[int, ...]], infos: Mapping[str, TensorInfo], label: str, warnings: list[str]
) -> None:
    missing = sorted(k for k in expected if k not in infos and not k.endswith("num_batches_tracked"))
    unexpected = sorted(k for k in infos if k not in expected)
    other = sorted(
        f"{k}: {list(infos[k].shape)} vs {list(s)}"
        for k, s in expected.items()
        if k in infos and tuple(infos[k].shape) != tuple(s)
    )
    summary = describe_mismatch(missing, unexpected, other)
    if summary:
        warnings.append(f"the checkpoint does not match {label}: {summary}")


def _head_from_metadata(metadata: Mapping[str, Any], ckpt: Checkpoint, warnings: list[str]) -> _Head | None:
    """The head named by ``modelsurgeon.head`` / ``modelsurgeon.classes``, if they are usable."""
    names, classes = metadata.get("head"), metadata.get("classes")
    if names is None and classes is None:
        return None
    if (
        not isinstance(names, list)
        or not all(isinstance(n, str) for n in names)
        or not isinstance(classes, int)
    ):
        warnings.append(
            "metadata modelsurgeon.head / modelsurgeon.classes is incomplete; head found by shapes"
        )
        return None
    missing = [n for n in names if n not in ckpt.infos]
    if missing:
        warnings.append(
            f"metadata names head tensors the checkpoint lacks (e.g. {format_examples(missing)}); "
            "head found by shapes"
        )
        return None
    weights = [n for n in names if len(ckpt.infos[n].shape) >= 2]
    rows = sorted({ckpt.infos[n].shape[0] for n in weights})
    if rows and rows != [classes]:
        warnings.append(f"metadata says {classes} classes but the head weights have {rows} rows")
    return _Head("metadata", classes, list(names), weights)


def _natural(key: str) -> list[tuple[int, int | str]]:
    return [(0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"(\d+)", key) if p]


def _looks_like_head(key: str) -> bool:
    parts = key.split(".")[:-1]
    return any(_HEAD_PART.fullmatch(p) for p in parts) and not any(_NOT_HEAD_PART.fullmatch(p) for p in parts)


def _head_from_shapes(ckpt: Checkpoint) -> _Head:
    """The heuristic of the module docstring: the last classifier-like weight, its siblings and biases."""
    infos = ckpt.infos
    candidates = sorted(
        (k for k, i in infos.items() if k.endswith(".weight") and len(i.shape) >= 2 and _looks_like_head(k)),
        key=_natural,
    )
    if not candidates:
        return _Head("none", None, [], [])
    classes = infos[candidates[-1]].shape[0]
    weights = [k for k in candidates if infos[k].shape[0] == classes]
    names = list(weights)
    for w in weights:
        bias = w[: -len("weight")] + "bias"
        if bias in infos and tuple(infos[bias].shape) == (classes,):
            names.append(bias)
    return _Head("heuristic", classes, names, weights)


# ------------------------------------------------------------------------------------ the head weights
def _head_weights(
    ckpt: Checkpoint, weights: Sequence[str], metadata: Mapping[str, Any], warnings: list[str]
) -> tuple[dict[str, Any] | None, Histogram | None]:
    """Statistics of all head weights, and a histogram of the sampled rows beside the init's density."""
    import torch

    if not weights:
        return None, None
    kept = _kept_rows(metadata)
    every: list[torch.Tensor] = []
    sampled: list[torch.Tensor] = []
    for name in sorted(weights):
        t = ckpt.tensor(name)
        if not t.dtype.is_floating_point:
            warnings.append(
                f"head tensor {name} has dtype {_dtype_name(t.dtype)}; left out of the statistics"
            )
            continue
        t = t.detach().to(torch.float64)
        every.append(t.reshape(-1))
        keep = [r for r in range(t.shape[0]) if r not in kept]
        sampled.append(t[keep].reshape(-1) if kept else t.reshape(-1))
    if not every:
        return None, None
    values = torch.cat(every)
    if values.numel() == 0:
        return None, None
    finite = values[torch.isfinite(values)]
    if finite.numel() < values.numel():
        warnings.append(f"the head weights hold {values.numel() - finite.numel()} non-finite values")
    if finite.numel() == 0:
        return None, None
    stats: dict[str, Any] = {
        "count": int(values.numel()),
        "mean": float(finite.mean()),
        "std": float(finite.std(correction=0)),
        "min": float(finite.min()),
        "max": float(finite.max()),
    }
    init = _init_params(metadata, warnings)
    if init is not None:
        from modelsurgeon.sampler import truncnorm_mean_std

        mean, std, a, b = init
        stats["expected_mean"], stats["expected_std"] = truncnorm_mean_std(mean, std, a, b)
        stats["outside_bounds"] = int(((finite < a) | (finite > b)).sum())
    data = torch.cat(sampled)
    data = data[torch.isfinite(data)]
    return stats, _histogram(data, init, excluded=len(kept) if kept else 0)


def _kept_rows(metadata: Mapping[str, Any]) -> set[int]:
    kept = metadata.get("kept_rows")
    if not isinstance(kept, dict):
        return set()
    return {int(k) for k in kept if str(k).isdigit()}


def _init_params(
    metadata: Mapping[str, Any], warnings: list[str]
) -> tuple[float, float, float, float] | None:
    """``(mean, std, a_abs, b_abs)`` from ``modelsurgeon.init``, or ``None``."""
    from modelsurgeon.sampler import truncnorm_mean_std

    init = metadata.get("init")
    if init is None:
        return None
    try:
        params = (float(init["mean"]), float(init["std"]), float(init["a_abs"]), float(init["b_abs"]))
        truncnorm_mean_std(*params)  # validates std > 0, a < b and mass in [a, b]
    except (KeyError, TypeError, ValueError) as exc:
        warnings.append(
            f"metadata modelsurgeon.init is unusable ({exc}); histogram shown without the density"
        )
        return None
    return params


def _histogram(
    data: torch.Tensor, init: tuple[float, float, float, float] | None, *, excluded: int
) -> Histogram | None:
    import torch

    if data.numel() == 0:
        return None
    lo, hi = float(data.min()), float(data.max())
    if init is not None:
        mean, std, a, b = init
        lo = min(lo, max(a, mean - _INIT_SIGMAS * std))
        hi = max(hi, min(b, mean + _INIT_SIGMAS * std))
    if not hi > lo:
        pad = abs(lo) * 1e-3 or 1e-3
        lo, hi = lo - pad, hi + pad
    edges = torch.linspace(lo, hi, HISTOGRAM_BINS + 1, dtype=torch.float64)
    counts = torch.histc(data, bins=HISTOGRAM_BINS, min=lo, max=hi)
    density = None
    if init is not None:
        from modelsurgeon.sampler import truncnorm_pdf

        centres = (edges[:-1] + edges[1:]) / 2
        density = [float(v) for v in truncnorm_pdf(centres, *init)]
    return Histogram(
        edges=[float(e) for e in edges],
        counts=[int(c) for c in counts],
        density=density,
        excluded_rows=excluded,
    )


# ------------------------------------------------------------------------------------------- counting
def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _dtype_counts(infos: Mapping[str, TensorInfo]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for info in infos.values():
        name = _dtype_name(info.dtype)
        counts[name] = counts.get(name, 0) + math.prod(info.shape)
    return dict(sorted(counts.items()))
