"""Find the class-dependent tensors of an architecture: what a rehead re-initialises.

The head is found by building the architecture on the meta device with a probe class count and with N
(or the default) and comparing state-dict shapes: a tensor whose shape changes with the class count is
class-dependent.
Tensors that exist only with a classifier (``num_classes=0`` gives ``nn.Identity`` in timm) are found by
comparing the N-class and the default-class models. The result is then cross-checked against what the
libraries say: timm's ``pretrained_cfg['classifier']`` and ``get_classifier()``, and a table of
torchvision's classifier names. A disagreement raises :class:`HeadDetectionError`; nothing is guessed.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal

from modelsurgeon.archs import ArchRef, build_model, default_from_build, input_size, resolve_arch
from modelsurgeon.errors import UsageError

if TYPE_CHECKING:
    from torch import nn

__all__ = ["HeadDetectionError", "HeadSpec", "HeadTensor", "Role", "find_heads"]

Role = Literal["weight", "bias", "ones", "zeros"]
Shape = tuple[int, ...]

_REPORT_HINT = "modelsurgeon can't rehead this arch safely; please report it with the arch name"
# Probe class counts: primes unlikely to be anyone's class count; two of them differ from N and default.
_PROBES = (997, 991, 983, 977)
# torchvision's classifiers, by module name (resnet fc, vgg classifier.6, vit heads.head, swin head,
# googlenet aux1.fc2 / aux2.fc2, inception_v3 AuxLogits.fc, squeezenet's Conv2d classifier.1, ...).
_TV_HEADS = re.compile(r"fc|head|heads\.head|classifier(\.\d+)?|aux[12]\.fc2|AuxLogits\.fc")
_TV_AUX = re.compile(r"aux[12]\.fc2|AuxLogits\.fc")
_CONTAINERS = frozenset({"Sequential", "ModuleList", "ModuleDict"})
_BUFFER_ROLES: dict[str, Role] = {
    "running_mean": "zeros",
    "running_var": "ones",
    "num_batches_tracked": "zeros",
}


class HeadDetectionError(UsageError):
    """The class-dependent tensors of an arch can't be determined unambiguously (exit 2)."""


@dataclass(frozen=True)
class HeadTensor:
    """One class-dependent tensor of the N-class model, and how a rehead initialises it.

    Args:
        name: State-dict key, e.g. ``head.fc.weight``.
        shape: Its shape in the N-class model.
        role: ``"weight"`` (≥ 2-D, sampled from the truncated normal), ``"bias"`` (1-D bias, set by
            ``--bias``), ``"ones"`` or ``"zeros"`` (norm scales / shifts and statistics that only exist
            with a classifier).
        module: Name of the module owning it, e.g. ``head.fc``.
    """

    name: str
    shape: Shape
    role: Role
    module: str


@dataclass(frozen=True)
class HeadSpec:
    """Which tensors a rehead of ``arch`` to ``num_classes`` classes re-initialises, drops and keeps.

    Args:
        arch: The architecture.
        num_classes: N, the class count of the new head (0: no head, timm only).
        default_classes: The arch's default class count (its pretrained checkpoint's).
        head_type: A short human label: ``"Linear"``, ``"Conv2d"``, ``"Linear×2 (distilled)"``,
            ``"MlpHead → Linear"``.
        modules: Names of the modules owning the arch's class-dependent tensors, e.g.
            ``("head", "head_dist")``; the same for every N (for N = 0: the modules removed).
        tensors: The class-dependent tensors of the N-class model, in state-dict order; empty when N = 0.
        dropped: Keys of the default-class model's state dict that are not carried over (its
            class-dependent tensors, and anything the N-class model lacks), sorted.
        body: Every other state-dict key of the N-class model → shape, in state-dict order; these must
            come from the checkpoint bit for bit.
        integer: The keys of :attr:`body` whose tensor in the arch is not floating point (counters such
            as BatchNorm's ``num_batches_tracked``, index buffers); the checkpoint must match that kind.
        input_size: ``(C, H, W)`` the model is built for.
    """

    arch: ArchRef
    num_classes: int
    default_classes: int
    head_type: str
    modules: tuple[str, ...]
    tensors: tuple[HeadTensor, ...]
    dropped: tuple[str, ...]
    body: Mapping[str, Shape] = field(hash=False)
    input_size: tuple[int, int, int]
    integer: frozenset[str] = frozenset()

    @property
    def names(self) -> tuple[str, ...]:
        """The state-dict keys of :attr:`tensors`."""
        return tuple(t.name for t in self.tensors)


@dataclass(frozen=True)
class _Snapshot:
    """State-dict shapes of one build, and what owns each key."""

    shapes: Mapping[str, Shape]
    types: Mapping[str, str]  # module name -> class name
    norms: frozenset[str]  # names of normalisation modules
    buffers: frozenset[str]  # state-dict keys that are buffers
    integer: frozenset[str]  # state-dict keys whose tensor is not floating point
    classifier: tuple[str, ...]  # names of the modules timm's get_classifier() returns
    num_classes: int | None  # the built model's num_classes attribute, if it has one


def _owner(key: str) -> str:
    return key.rpartition(".")[0]


def _is_norm(module: nn.Module) -> bool:
    from torch import nn

    norm_types = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)
    return isinstance(module, norm_types) or (
        "Norm" in type(module).__name__ and not any(True for _ in module.children())
    )


def _classifier_names(model: nn.Module, names: Mapping[int, str]) -> tuple[str, ...]:
    get = getattr(model, "get_classifier", None)
    if get is None:
        return ()
    try:
        found = get()
    except (AttributeError, NotImplementedError, TypeError):
        return ()
    mods = found if isinstance(found, (tuple, list)) else (found,)
    return tuple(names[id(m)] for m in mods if id(m) in names and names[id(m)])


@functools.lru_cache(maxsize=256)
def _snapshot(arch: ArchRef, num_classes: int | None) -> _Snapshot:
    model = build_model(arch, num_classes)
    names = {id(m): n for n, m in model.named_modules()}
    state = model.state_dict(keep_vars=True)
    buffer_keys = (f"{m}.{b}" if m else b for m, mod in model.named_modules() for b in mod._buffers)
    buffers = frozenset(k for k in buffer_keys if k in state)
    return _Snapshot(
        shapes=MappingProxyType({k: tuple(v.shape) for k, v in state.items()}),
        types=MappingProxyType({n: type(m).__name__ for n, m in model.named_modules()}),
        norms=frozenset(n for n, m in model.named_modules() if _is_norm(m)),
        buffers=buffers,
        integer=frozenset(k for k, v in state.items() if not v.is_floating_point()),
        classifier=_classifier_names(model, names),
        num_classes=n if isinstance(n := getattr(model, "num_classes", None), int) else None,
    )


def _fail(arch: ArchRef, what: str) -> HeadDetectionError:
    return HeadDetectionError(f"{arch}: {what}", _REPORT_HINT)


def _role(arch: ArchRef, snap: _Snapshot, key: str, shape: Shape) -> Role:
    owner, _, attr = key.rpartition(".")
    if key in snap.buffers:
        if attr in _BUFFER_ROLES:
            return _BUFFER_ROLES[attr]
        raise _fail(arch, f"class-dependent buffer {key} {list(shape)}: don't know how to initialise it")
    if owner in snap.norms:
        if attr == "weight":
            return "ones"
        if attr == "bias":
            return "zeros"
    if attr == "bias" and len(shape) == 1:
        return "bias"
    if len(shape) >= 2:
        return "weight"
    raise _fail(arch, f"class-dependent tensor {key} {list(shape)} is neither a ≥2-D weight nor a bias")


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _head_type(snap: _Snapshot, modules: tuple[str, ...]) -> str:
    if not modules:
        return "none"
    kinds = _unique(snap.types.get(m, "?") for m in modules)
    label = " + ".join(kinds)
    if len(kinds) == 1 and len(modules) > 1:
        label += f"×{len(modules)}"
    parents = _unique(snap.types.get(_owner(m), "Sequential") if _owner(m) else "" for m in modules)
    if len(parents) == 1 and parents[0] and parents[0] not in _CONTAINERS:
        label = f"{parents[0]} → {label}"
    if any("dist" in m for m in modules):
        label += " (distilled)"
    elif any("aux" in m.lower() for m in modules):
        label += " (with aux)"
    return label


def _class_keys(arch: ArchRef, a: Mapping[str, Shape], b: Mapping[str, Shape]) -> tuple[str, ...]:
    if a.keys() != b.keys():
        odd = sorted(a.keys() ^ b.keys())
        raise _fail(arch, f"state-dict keys change with the class count ({', '.join(odd[:3])})")
    return tuple(k for k, s in a.items() if s != b[k])


def _cross_check(
    arch: ArchRef, snap: _Snapshot, modules: tuple[str, ...], class_keys: tuple[str, ...]
) -> None:
    """Raise unless timm's / torchvision's own idea of the classifier agrees with the shape probe."""
    found = ", ".join(modules) or "none"
    if arch.source == "torchvision":
        odd = [m for m in modules if not _TV_HEADS.fullmatch(m)]
        if odd or all(_TV_AUX.fullmatch(m) for m in modules):
            raise _fail(arch, f"class-dependent modules ({found}) are not torchvision's known classifiers")
        return
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(arch.model_name)
    named = getattr(cfg, "classifier", None) if cfg is not None else None
    declared = (named,) if isinstance(named, str) else tuple(named or ())
    for name in declared:
        if not any(m == name or m.startswith(name + ".") for m in modules):
            raise _fail(
                arch,
                f"timm's pretrained_cfg names classifier {name!r} but the class-dependent "
                f"modules are {found}",
            )
    for name in snap.classifier:
        if not any(k.startswith(name + ".") for k in class_keys):
            raise _fail(
                arch, f"get_classifier() returns {name!r} but the class-dependent modules are {found}"
            )


def _probes(*avoid: int) -> tuple[int, int]:
    p1, p2 = [p for p in _PROBES if p not in avoid][:2]
    return p1, p2


@functools.lru_cache(maxsize=512)
def _find_heads(arch: ArchRef, num_classes: int) -> HeadSpec:
    # Three meta builds: the default (built as the user's code would, without num_classes), a probe
    # class count that differs from N and the default, and N itself.
    default_snap = _snapshot(arch, None)
    default = default_from_build(arch, default_snap.num_classes)
    p1, p2 = _probes(num_classes, default)
    probe = _snapshot(arch, p1)
    snap_n = _snapshot(arch, num_classes)
    shapes_n = snap_n.shapes
    shapes_d = default_snap.shapes
    # Class-dependent keys: those whose shape differs between the probe and another class count ≥ 1
    # (N, else the default, else a second probe when neither has a head).
    other = shapes_n if num_classes else shapes_d if default else _snapshot(arch, p2).shapes
    other_n = num_classes or default or p2
    class_keys = _class_keys(arch, probe.shapes, other)
    if not class_keys:
        if default == 0 and probe.num_classes == 0:  # the builder ignores num_classes: an encoder
            raise UsageError(
                f"{arch} has no classification head: its builder ignores num_classes (a feature encoder)",
                "pick a classifier variant of this arch (`modelsurgeon archs PATTERN` lists them)",
            )
        raise _fail(arch, f"no tensor changes shape with the class count ({p1} vs {other_n})")
    for n, shapes in ((num_classes, shapes_n), (default, shapes_d)):
        if n and shapes.keys() != probe.shapes.keys():
            odd = sorted(shapes.keys() ^ probe.shapes.keys())
            raise _fail(arch, f"state-dict keys change with the class count ({', '.join(odd[:3])})")
    heads = set(class_keys)
    tensor_keys = [k for k in shapes_n if k in heads or k not in shapes_d]
    tensors = tuple(
        HeadTensor(k, shapes_n[k], _role(arch, probe, k, shapes_n[k]), _owner(k)) for k in tensor_keys
    )
    body = {k: s for k, s in shapes_n.items() if k not in heads and k in shapes_d}
    changed = [k for k, s in body.items() if shapes_d[k] != s]
    if changed:
        raise _fail(arch, f"{changed[0]} is not class-dependent but differs from the default-class model")
    modules = _unique([*(_owner(k) for k in class_keys), *(t.module for t in tensors)])
    _cross_check(arch, probe, modules, class_keys)
    return HeadSpec(
        arch=arch,
        num_classes=num_classes,
        default_classes=default,
        head_type=_head_type(probe, _unique(_owner(k) for k in class_keys)),
        modules=modules,
        tensors=tensors,
        dropped=tuple(sorted(k for k in shapes_d if k not in body)),
        body=MappingProxyType(body),
        input_size=input_size(arch),
        integer=frozenset(k for k in body if k in snap_n.integer),
    )


def find_heads(arch: str | ArchRef, num_classes: int) -> HeadSpec:
    """Find the class-dependent tensors of ``arch`` with a ``num_classes``-class head.

    Builds the arch on the meta device three times (cheap; cached per process): with its default, with
    a probe class count that differs from N and from the default, and with N; class-dependent tensors
    are those whose shape differs between the probe and N (or the default, when N = 0). Works for
    N == default, for N = 0 (timm: the head is removed) and for archs whose default has no head
    (SAM2 Hiera: the head is added).

    Args:
        arch: An :class:`~modelsurgeon.archs.ArchRef` or a name for :func:`~modelsurgeon.archs.resolve_arch`.
        num_classes: N ≥ 0; 0 removes the head (timm archs only).

    Returns:
        The :class:`HeadSpec`.

    Raises:
        UsageError: Unknown arch, or a bad class count.
        HeadDetectionError: The probe disagrees with timm's / torchvision's metadata, or the
            class-dependent tensors can't be told apart from the body.
    """
    ref = resolve_arch(arch)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
        raise UsageError(f"number of classes must be an integer ≥ 0, got {num_classes!r}", "pass e.g. 10")
    if num_classes == 0 and ref.source == "torchvision":
        raise UsageError(
            f"{ref} can't be built without a classifier (num_classes=0)",
            "pass a class count ≥ 1, or use a timm arch",
        )
    return _find_heads(ref, num_classes)
