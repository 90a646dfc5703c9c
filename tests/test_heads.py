"""modelsurgeon.heads: the class-dependent tensors of timm and torchvision classifiers.

Expected heads come from the architecture definitions (module names in timm / torchvision source),
not from modelsurgeon's output.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from torch import nn

from modelsurgeon.archs import build_model
from modelsurgeon.errors import UsageError
from modelsurgeon.heads import HeadDetectionError, HeadSpec, find_heads


def _wb(*modules: str) -> set[str]:
    return {f"{m}.{p}" for m in modules for p in ("weight", "bias")}


# arch -> (head modules, a body key that must be kept from the checkpoint)
CASES = {
    "test_vit": (("head",), "norm.weight"),
    "test_convnext": (("head.fc",), "head.norm.weight"),  # norm + MLP head: only head.fc depends on N
    "test_efficientnet": (("classifier",), "conv_head.weight"),
    "resnet18": (("fc",), "layer4.1.bn2.running_var"),
    "deit_tiny_distilled_patch16_224": (("head", "head_dist"), "dist_token"),
    "convnext_atto": (("head.fc",), "head.norm.bias"),
    "resnetv2_50x1_bit": (("head.fc",), "norm.weight"),  # Conv2d head
    "levit_128s": (("head.linear", "head_dist.linear"), "head.bn.running_mean"),  # NormLinear: bn kept
    "levit_384_s8": (("head.linear", "head_dist.linear"), "head_dist.bn.weight"),  # cfg names only one
    "caformer_s18": (("head.fc.fc2",), "head.fc.fc1.weight"),  # MlpHead: fc1 and norm are class-free
    "crossvit_tiny_240": (("head.0", "head.1"), "norm.0.weight"),  # ModuleList of heads
    "volo_d1_224": (("head", "aux_head"), "norm.weight"),
    "repvit_m0_9": (("head.head.l", "head.head_dist.l"), "head.head.bn.weight"),
    "tv:googlenet": (("fc", "aux1.fc2", "aux2.fc2"), "aux1.fc1.weight"),
    "tv:inception_v3": (("fc", "AuxLogits.fc"), "AuxLogits.conv1.conv.weight"),
    "tv:squeezenet1_0": (("classifier.1",), "features.0.weight"),  # Conv2d classifier
    "tv:regnet_y_400mf": (("fc",), "stem.0.weight"),
    "tv:vit_b_16": (("heads.head",), "class_token"),
    "tv:swin_t": (("head",), "norm.weight"),
    "tv:mobilenet_v3_small": (("classifier.3",), "classifier.0.weight"),
    "tv:alexnet": (("classifier.6",), "classifier.4.weight"),
    "tv:convnext_tiny": (("classifier.2",), "classifier.0.weight"),
}


def _keys(arch: str, n: int | None) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in build_model(arch, n).state_dict().items()}


def _check_partition(spec: HeadSpec) -> None:
    """body ∪ tensors is the N-class model; body ∪ dropped is the default-class model."""
    target = _keys(str(spec.arch), spec.num_classes)
    default = _keys(str(spec.arch), None)
    assert set(spec.body).isdisjoint(spec.names)
    assert set(spec.body) | set(spec.names) == set(target)
    assert set(spec.body) | set(spec.dropped) == set(default)
    assert all(default[k] == s == target[k] for k, s in spec.body.items())
    assert all(target[t.name] == t.shape for t in spec.tensors)


@pytest.mark.parametrize("arch", list(CASES))
def test_find_heads_finds_the_known_heads(arch: str) -> None:
    modules, kept = CASES[arch]
    spec = find_heads(arch, 7)
    assert set(spec.names) == _wb(*modules)
    assert set(spec.modules) == set(modules)
    assert spec.default_classes == 1000 and spec.num_classes == 7
    assert set(spec.dropped) == _wb(*modules)
    assert kept in spec.body
    for t in spec.tensors:
        assert t.shape[0] == 7
        assert t.module == t.name.rpartition(".")[0]
        assert t.role == ("bias" if t.name.endswith(".bias") else "weight")
    _check_partition(spec)


def test_conv_heads_are_4d_weights() -> None:
    squeeze = {t.name: t for t in find_heads("tv:squeezenet1_0", 7).tensors}
    assert squeeze["classifier.1.weight"].shape == (7, 512, 1, 1)
    bit = {t.name: t for t in find_heads("resnetv2_50x1_bit", 7).tensors}
    assert bit["head.fc.weight"].shape == (7, 2048, 1, 1) and bit["head.fc.weight"].role == "weight"


def test_head_type_labels() -> None:
    assert find_heads("resnet18", 3).head_type == "Linear"
    assert find_heads("tv:squeezenet1_0", 3).head_type == "Conv2d"
    assert find_heads("deit_tiny_distilled_patch16_224", 3).head_type == "Linear×2 (distilled)"
    assert find_heads("caformer_s18", 3).head_type == "MlpHead → Linear"
    assert "aux" in find_heads("tv:googlenet", 3).head_type


def test_n_equal_to_default_still_detects_the_head() -> None:
    spec = find_heads("resnet18", 1000)
    assert set(spec.names) == _wb("fc")
    assert {t.name: t.shape for t in spec.tensors}["fc.weight"] == (1000, 512)
    assert set(spec.dropped) == _wb("fc")


def test_tagged_default_class_count() -> None:
    spec = find_heads("vit_base_patch16_224.augreg_in21k", 21843)  # the tag's ImageNet-21k head
    assert spec.default_classes == 21843
    assert set(spec.names) == _wb("head")


def test_zero_classes_removes_the_head() -> None:
    spec = find_heads("test_vit", 0)
    assert spec.tensors == ()
    assert set(spec.dropped) == _wb("head")
    assert spec.modules == ("head",)
    _check_partition(spec)


def test_zero_classes_drops_class_free_head_layers_too() -> None:
    spec = find_heads("caformer_s18", 0)  # num_classes=0: the whole MlpHead becomes Identity
    assert spec.tensors == ()
    assert set(spec.dropped) == _wb("head.fc.fc1", "head.fc.fc2", "head.fc.norm")
    _check_partition(spec)


def test_headless_default_gets_a_head() -> None:
    # SigLIP ViT (webli) and SAM2 Hiera checkpoints have no classifier: rehead adds one
    for arch, module in (("vit_base_patch16_siglip_224", "head"), ("sam2_hiera_tiny", "head.fc")):
        spec = find_heads(arch, 7)
        assert spec.default_classes == 0
        assert set(spec.names) == _wb(module)
        assert spec.dropped == ()
        _check_partition(spec)


def test_input_size_and_cache() -> None:
    assert find_heads("tv:inception_v3", 5).input_size == (3, 299, 299)
    assert find_heads("resnet18", 5) is find_heads("timm:resnet18", 5)


@pytest.mark.parametrize("bad", [-1, 2.5, True, "7"])
def test_bad_class_counts(bad: object) -> None:
    with pytest.raises(UsageError):
        find_heads("resnet18", bad)  # type: ignore[arg-type]


def test_torchvision_has_no_headless_variant() -> None:
    with pytest.raises(UsageError, match="num_classes=0"):
        find_heads("tv:resnet18", 0)


def test_unknown_arch() -> None:
    with pytest.raises(UsageError, match="unknown"):
        find_heads("resnet_does_not_exist", 3)


def test_disagreeing_torchvision_table_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    import modelsurgeon.heads as heads

    heads._find_heads.cache_clear()
    monkeypatch.setattr(heads, "_TV_HEADS", re.compile("classifier"))
    with pytest.raises(HeadDetectionError) as info:
        find_heads("tv:resnet18", 3)
    assert "fc" in info.value.message and info.value.exit_code == 2
    heads._find_heads.cache_clear()


def test_disagreeing_timm_metadata_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    import timm.models

    import modelsurgeon.heads as heads

    heads._find_heads.cache_clear()
    wrong = SimpleNamespace(classifier="head.nope")
    monkeypatch.setattr(timm.models, "get_pretrained_cfg", lambda name: wrong)
    with pytest.raises(HeadDetectionError) as info:
        find_heads("test_vit", 3)
    assert "head.nope" in info.value.message and "report" in str(info.value.hint)
    heads._find_heads.cache_clear()


def test_encoder_without_a_head_is_a_usage_error() -> None:
    # timm's deepseek_vit encoder builder filters num_classes out: there is no classifier to replace
    with pytest.raises(UsageError, match="no classification head") as info:
        find_heads("deepseek_vit_412m_enc", 7)
    assert not isinstance(info.value, HeadDetectionError)


class _Toy(nn.Module):
    """A headless-by-default model whose head has a class-free LayerNorm and a class-sized BatchNorm."""

    def __init__(self, num_classes: int = 0) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.body = nn.Linear(4, 8)
        head = (
            [nn.LayerNorm(8), nn.Linear(8, num_classes), nn.BatchNorm1d(num_classes)] if num_classes else []
        )
        self.head = nn.Sequential(*head) if head else nn.Identity()


@pytest.fixture
def toy_arch(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    import modelsurgeon.archs as archs
    import modelsurgeon.heads as heads

    def clear() -> None:
        for cached in (heads._find_heads, heads._snapshot, archs._default_num_classes):
            cached.cache_clear()

    clear()
    monkeypatch.setattr(archs, "_build", lambda ref, n: _Toy(0 if n is None else n))
    monkeypatch.setattr(heads, "_cross_check", lambda *args: None)  # no library metadata for a toy
    yield "test_vit"
    clear()


def test_added_head_initialises_norms_and_statistics(toy_arch: str) -> None:
    spec = find_heads(toy_arch, 3)
    roles = {t.name: (t.role, t.shape) for t in spec.tensors}
    assert roles == {
        "head.0.weight": ("ones", (8,)),  # added with the head, though not class-sized
        "head.0.bias": ("zeros", (8,)),
        "head.1.weight": ("weight", (3, 8)),
        "head.1.bias": ("bias", (3,)),
        "head.2.weight": ("ones", (3,)),
        "head.2.bias": ("zeros", (3,)),
        "head.2.running_mean": ("zeros", (3,)),
        "head.2.running_var": ("ones", (3,)),
        "head.2.num_batches_tracked": ("zeros", ()),
    }
    assert spec.default_classes == 0 and spec.dropped == ()
    assert set(spec.body) == _wb("body")
