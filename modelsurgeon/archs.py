"""Resolve timm / torchvision architecture names, build models on the meta device, list archs.

An architecture is named ``NAME`` (timm), ``timm:NAME``, ``torchvision:NAME`` or ``tv:NAME``. A timm name
may carry a pretrained tag (``vit_base_patch16_224.augreg_in21k``): the tag selects the pretrained config,
which decides the default class count, the input size and the Hugging Face Hub repo.

Models are built with every parameter on the ``meta`` device: no memory, no initialisation cost, nothing
downloaded. This is accelerate's ``init_empty_weights`` trick (``nn.Module.register_parameter`` is patched
for the duration of the build, and restored afterwards), which works where a ``torch.device("meta")``
context does not (torchvision's RegNet calls ``.tolist()`` while building).

torch, timm and torchvision are imported inside the functions that need them.
"""

from __future__ import annotations

import contextlib
import difflib
import fnmatch
import functools
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from modelsurgeon.errors import UsageError

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "NO_AUX",
    "TV_AUX_PREFIXES",
    "ArchRef",
    "Source",
    "build_model",
    "default_from_build",
    "default_num_classes",
    "fit_aux",
    "input_size",
    "list_archs",
    "pretrained_hub_id",
    "resolve_arch",
    "without_aux",
]

Source = Literal["timm", "torchvision"]

_PREFIXES: dict[str, Source] = {"timm": "timm", "torchvision": "torchvision", "tv": "torchvision"}
_LIST_HINT = "(`modelsurgeon archs PATTERN` lists them)"
_TV_INPUT_SIZE = {"inception_v3": (3, 299, 299)}
# torchvision builders that initialise weights with a FutureWarning unless told; init is moot on meta.
_TV_NO_INIT = frozenset({"googlenet", "inception_v3"})
# torchvision archs with auxiliary classifiers, and the state-dict key prefixes of those classifiers. Their
# weight files hold them, but a model built with aux_logits=False (googlenet(weights=...) drops them) saves
# a state dict without: the tag NO_AUX builds the arch that way.
TV_AUX_PREFIXES: dict[str, tuple[str, ...]] = {
    "googlenet": ("aux1.", "aux2."),
    "inception_v3": ("AuxLogits.",),
}
NO_AUX = "noaux"


@dataclass(frozen=True)
class ArchRef:
    """A resolved architecture.

    Args:
        source: ``"timm"`` or ``"torchvision"``.
        name: The architecture name without a pretrained tag (``vit_base_patch16_224``).
        tag: The timm pretrained tag (``augreg_in21k``), or None for the arch's default tag. For
            torchvision: None, or ``"noaux"`` for googlenet / inception_v3 built with
            ``aux_logits=False`` (``tv:googlenet.noaux``).
    """

    source: Source
    name: str
    tag: str | None = None

    @property
    def model_name(self) -> str:
        """The name to build: ``NAME`` or ``NAME.TAG``."""
        return f"{self.name}.{self.tag}" if self.tag else self.name

    def __str__(self) -> str:
        return f"{self.source}:{self.model_name}"


@functools.lru_cache(maxsize=1)
def _timm_names() -> frozenset[str]:
    import timm

    return frozenset(timm.list_models())


@functools.lru_cache(maxsize=1)
def _tv_names() -> tuple[str, ...]:
    import torchvision

    return tuple(sorted(torchvision.models.list_models(module=torchvision.models)))


def _unknown(spec: str, name: str, candidates: list[str], where: str) -> UsageError:
    close = difflib.get_close_matches(name, candidates, n=5, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}? {_LIST_HINT}" if close else f"{_LIST_HINT[1:-1]}"
    return UsageError(f"unknown {where}architecture {spec!r}", hint)


def _resolve_timm(spec: str, name: str) -> ArchRef:
    from timm.models import get_pretrained_cfg, split_model_name_tag

    arch, tag = split_model_name_tag(name)
    if arch not in _timm_names():
        tv = _tv_names()
        if arch in tv and ":" not in spec:
            raise UsageError(
                f"unknown timm architecture {spec!r}", f"did you mean torchvision:{arch}? {_LIST_HINT}"
            )
        raise _unknown(spec, arch, sorted(_timm_names()), "timm " if ":" in spec else "")
    if tag:
        try:
            get_pretrained_cfg(f"{arch}.{tag}", allow_unregistered=False)
        except RuntimeError as exc:
            from timm.models import get_arch_pretrained_cfgs

            tags = sorted(k.partition(".")[2] for k in get_arch_pretrained_cfgs(arch))
            raise UsageError(
                f"unknown pretrained tag {tag!r} for timm architecture {arch!r}",
                f"known tags: {', '.join(tags) or '(none)'}",
            ) from exc
    return ArchRef("timm", arch, tag or None)


def resolve_arch(spec: str | ArchRef) -> ArchRef:
    """Resolve an architecture name to an :class:`ArchRef`.

    Args:
        spec: ``NAME`` or ``NAME.TAG`` (timm), ``timm:NAME[.TAG]``, ``torchvision:NAME`` or ``tv:NAME``
            (torchvision classification models only). An :class:`ArchRef` is returned unchanged.

    Returns:
        The resolved architecture.

    Raises:
        UsageError: The name is unknown; the message suggests close matches.
    """
    if isinstance(spec, ArchRef):
        return spec
    text = spec.strip()
    if not text:
        raise UsageError("empty architecture name", f"pass e.g. resnet50 or tv:resnet50 {_LIST_HINT}")
    prefix, sep, rest = text.partition(":")
    if not sep:
        return _resolve_timm(text, text)
    source = _PREFIXES.get(prefix.lower())
    if source is None:
        raise UsageError(
            f"unknown architecture source {prefix!r} in {text!r}",
            "use NAME or timm:NAME for timm, torchvision:NAME or tv:NAME for torchvision "
            "(hf-hub: models are not supported)",
        )
    if source == "timm":
        return _resolve_timm(text, rest)
    base, dot, tag = rest.partition(".")
    if dot and tag == NO_AUX and base in TV_AUX_PREFIXES:
        return ArchRef("torchvision", base, NO_AUX)
    if dot and base in TV_AUX_PREFIXES:
        raise UsageError(
            f"unknown torchvision variant {rest!r}", f"the only variant is {base}.{NO_AUX} (aux_logits=False)"
        )
    if rest not in _tv_names():
        raise _unknown(text, rest, list(_tv_names()), "torchvision ")
    return ArchRef("torchvision", rest)


def without_aux(ref: ArchRef) -> ArchRef | None:
    """The variant of a torchvision arch built without its auxiliary classifiers, or None if it has none.

    Args:
        ref: A resolved architecture.

    Returns:
        ``tv:googlenet.noaux`` for ``tv:googlenet`` (likewise inception_v3); None for every other arch and
        for a variant already without them.
    """
    if ref.source != "torchvision" or ref.tag is not None or ref.name not in TV_AUX_PREFIXES:
        return None
    return ArchRef("torchvision", ref.name, NO_AUX)


def fit_aux(ref: ArchRef, keys: Iterable[str]) -> ArchRef:
    """``ref``, or its ``noaux`` variant when a checkpoint's ``keys`` hold none of its auxiliary classifiers.

    A state dict saved from torchvision's googlenet / inception_v3 built with ``aux_logits=False`` (what
    ``googlenet(weights=...)`` gives) has no ``aux1.``/``aux2.``/``AuxLogits.`` keys.

    Args:
        ref: A resolved architecture.
        keys: The checkpoint's (stripped) keys.

    Returns:
        :func:`without_aux` of ``ref`` when it has one and no key starts with an auxiliary prefix;
        else ``ref``.
    """
    variant = without_aux(ref)
    if variant is None or any(k.startswith(TV_AUX_PREFIXES[ref.name]) for k in keys):
        return ref
    return variant


# In-place initialisers and shape-preserving in-place math. On a meta tensor they compute nothing, but
# many meta kernels are Python decompositions (erfinv_, clamp_: ~8 ms a call), which made building a 1B
# model take a second. Skipping them on meta tensors changes nothing observable.
_META_NOOPS = frozenset(
    {
        "uniform_", "normal_", "trunc_normal_", "constant_", "zeros_", "ones_", "eye_", "dirac_",
        "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_",
        "sparse_", "erfinv_", "clamp_", "clamp_min_", "clamp_max_", "mul_", "add_", "sub_", "div_",
        "fill_", "zero_", "exponential_", "bernoulli_", "random_", "log_normal_", "abs_", "sqrt_",
        "neg_", "exp_", "log_", "pow_", "reciprocal_",
    }
)  # fmt: skip


def _skip_meta_init() -> Any:
    """A torch function mode for building on meta.

    In-place initialisers on meta tensors return unevaluated. An op that mixes meta and real tensors
    (a builder probing its backbone with ``torch.zeros(...)`` on the CPU to find a feature size, as
    timm's ``HybridEmbed`` does) runs with every tensor on meta: only shapes can come out of it anyway.
    """
    import torch
    from torch.overrides import TorchFunctionMode
    from torch.utils._pytree import tree_map_only

    def on_meta(t: torch.Tensor) -> torch.Tensor:
        return t if t.is_meta else t.to("meta")

    class _SkipMetaInit(TorchFunctionMode):
        def __torch_function__(
            self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
        ) -> Any:
            kwargs = kwargs or {}
            first = args[0] if args else None
            if (
                isinstance(first, torch.Tensor)
                and first.is_meta
                and getattr(func, "__name__", "") in _META_NOOPS
            ):
                return first
            tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
            if len({t.is_meta for t in tensors}) == 2:
                args, kwargs = tree_map_only(torch.Tensor, on_meta, (args, kwargs))
            return func(*args, **kwargs)

    return _SkipMetaInit()


@contextlib.contextmanager
def _empty_init(buffers_on_meta: bool) -> Iterator[None]:
    """Patch ``nn.Module.register_parameter`` (and ``register_buffer``) to move tensors to meta."""
    import torch
    from torch import nn

    meta = torch.device("meta")
    old_param = nn.Module.register_parameter
    old_buffer = nn.Module.register_buffer

    def register_parameter(self: nn.Module, name: str, param: nn.Parameter | None) -> None:
        old_param(self, name, param)
        if param is not None and type(param) is nn.Parameter and param.device != meta:
            self._parameters[name] = nn.Parameter(param.data.to(meta), requires_grad=param.requires_grad)

    def register_buffer(
        self: nn.Module, name: str, tensor: torch.Tensor | None, persistent: bool = True
    ) -> None:
        old_buffer(self, name, tensor, persistent=persistent)
        if tensor is not None:
            self._buffers[name] = tensor.to(meta)

    nn.Module.register_parameter = register_parameter  # type: ignore[method-assign]
    if buffers_on_meta:
        nn.Module.register_buffer = register_buffer  # type: ignore[method-assign]
    try:
        with _skip_meta_init():
            yield
    finally:
        nn.Module.register_parameter = old_param  # type: ignore[method-assign]
        nn.Module.register_buffer = old_buffer  # type: ignore[method-assign]


def _build(arch: ArchRef, num_classes: int | None) -> nn.Module:
    kwargs: dict[str, Any] = {} if num_classes is None else {"num_classes": num_classes}
    if arch.source == "timm":
        import timm

        return timm.create_model(arch.model_name, pretrained=False, **kwargs)
    import torchvision

    if arch.name in _TV_NO_INIT:
        kwargs["init_weights"] = False
    if arch.tag == NO_AUX:
        kwargs["aux_logits"] = False
    return torchvision.models.get_model(arch.name, weights=None, **kwargs)


def build_model(
    arch: str | ArchRef, num_classes: int | None = None, *, buffers: Literal["meta", "cpu"] = "meta"
) -> nn.Module:
    """Build an architecture in eval mode with every parameter on the meta device.

    Nothing is downloaded (``pretrained=False`` / ``weights=None``) and nothing is initialised: load
    real tensors with ``model.load_state_dict(state, assign=True)``. torchvision's googlenet and
    inception_v3 keep their auxiliary heads (they are part of the checkpoint) unless built as the
    ``noaux`` variant (:func:`without_aux`).

    Args:
        arch: An :class:`ArchRef` or a name for :func:`resolve_arch`.
        num_classes: Class count of the classifier; None for the arch's default, 0 for no head (timm).
        buffers: ``"meta"`` puts buffers on meta too; ``"cpu"`` keeps real CPU buffers (BatchNorm
            statistics, position indices), needed for a real forward after ``assign=True`` loading.

    Returns:
        The model, in eval mode.

    Raises:
        UsageError: Unknown arch, a negative class count, or arguments the builder rejects.
    """
    ref = resolve_arch(arch)
    if num_classes is not None and num_classes < 0:
        raise UsageError(f"num_classes must be ≥ 0, got {num_classes}", "pass the number of classes")
    if buffers not in ("meta", "cpu"):
        raise UsageError(f"buffers must be 'meta' or 'cpu', got {buffers!r}", "pass buffers='meta' or 'cpu'")
    with warnings.catch_warnings(), _empty_init(buffers_on_meta=buffers == "meta"):
        warnings.simplefilter("ignore")
        try:
            model = _build(ref, num_classes)
        except TypeError as exc:
            raise UsageError(
                f"cannot build {ref} with num_classes={num_classes}: {exc}", "check the arch and class count"
            ) from exc
    return model.eval()


def _timm_cfg(ref: ArchRef) -> Any:
    from timm.models import get_pretrained_cfg

    return get_pretrained_cfg(ref.model_name)


def default_num_classes(arch: str | ArchRef) -> int:
    """The class count an architecture is built with by default (its pretrained checkpoint's).

    Args:
        arch: An :class:`ArchRef` or a name for :func:`resolve_arch`.

    Returns:
        The default class count; 0 for timm archs whose checkpoints have no classifier (SAM2 Hiera).
    """
    ref = resolve_arch(arch)
    return _default_num_classes(ref)


@functools.lru_cache(maxsize=4096)
def _default_num_classes(ref: ArchRef) -> int:
    return default_from_build(ref, getattr(build_model(ref), "num_classes", None))


def default_from_build(ref: ArchRef, n: object) -> int:
    """The default class count of ``ref``, given the ``num_classes`` attribute of its default build.

    Args:
        ref: The architecture.
        n: ``model.num_classes`` of ``build_model(ref)`` (``None`` when it has none).

    Returns:
        ``n`` when it is an int; else the class count of the first torchvision weights, timm's
        pretrained config, or 1000.
    """
    if isinstance(n, int):
        return n
    if ref.source == "torchvision":
        from torchvision.models import get_model_weights

        with contextlib.suppress(ValueError):
            weights = get_model_weights(ref.name)
            return len(next(iter(weights)).meta["categories"])
        return 1000
    cfg = _timm_cfg(ref)
    return int(cfg.num_classes) if cfg is not None and cfg.num_classes else 1000


def input_size(arch: str | ArchRef) -> tuple[int, int, int]:
    """The input size (channels, height, width) the architecture is built for.

    Args:
        arch: An :class:`ArchRef` or a name for :func:`resolve_arch`.

    Returns:
        timm: the pretrained config's ``input_size`` (of the tag, or the default tag);
        torchvision: ``(3, 299, 299)`` for inception_v3, ``(3, 224, 224)`` otherwise (the size
        ``weights=None`` models are built for).
    """
    ref = resolve_arch(arch)
    if ref.source == "torchvision":
        return _TV_INPUT_SIZE.get(ref.name, (3, 224, 224))
    cfg = _timm_cfg(ref)
    size = getattr(cfg, "input_size", None) if cfg is not None else None
    if not size:
        return (3, 224, 224)
    c, h, w = size
    return (int(c), int(h), int(w))


def pretrained_hub_id(arch: str | ArchRef) -> str | None:
    """The Hugging Face Hub repo of the pretrained weights, e.g. ``timm/vit_base_patch16_224.augreg_in1k``.

    Args:
        arch: An :class:`ArchRef` or a name for :func:`resolve_arch`.

    Returns:
        timm: the pretrained config's ``hf_hub_id`` for the tag (or the default tag), None when the arch
        has no hub weights; torchvision: always None (its weights are not on the Hub).
    """
    ref = resolve_arch(arch)
    if ref.source == "torchvision":
        return None
    cfg = _timm_cfg(ref)
    hub_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    return str(hub_id) if hub_id else None


def list_archs(pattern: str | None = None, source: Source | None = None) -> list[ArchRef]:
    """List architectures, timm first, then torchvision, each sorted as its library sorts them.

    Args:
        pattern: A glob (``"vit_*"``, ``"*resnet*"``) matched against the name, as ``timm.list_models``
            does; a ``timm:`` / ``torchvision:`` / ``tv:`` prefix also selects the source.
        source: ``"timm"``, ``"torchvision"`` or None for both.

    Returns:
        The matching architectures (no pretrained tags).

    Raises:
        UsageError: An unknown source.
    """
    if pattern and ":" in pattern:
        prefix, _, pattern = pattern.partition(":")
        picked = _PREFIXES.get(prefix.lower())
        if picked is None or (source is not None and source != picked):
            raise UsageError(
                f"unknown or conflicting source prefix {prefix!r}", "use timm:, torchvision: or tv:"
            )
        source = picked
    if source not in (None, "timm", "torchvision"):
        raise UsageError(f"unknown source {source!r}", "use timm or torchvision")
    refs: list[ArchRef] = []
    if source in (None, "timm"):
        import timm

        refs += [ArchRef("timm", n) for n in timm.list_models(pattern or "")]
    if source in (None, "torchvision"):
        refs += [ArchRef("torchvision", n) for n in _tv_names() if not pattern or fnmatch.fnmatch(n, pattern)]
    return refs
