"""modelsurgeon.archs: name resolution, meta builds, metadata, listing; and the `archs` command."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from torch import nn

from modelsurgeon.archs import (
    ArchRef,
    build_model,
    default_num_classes,
    input_size,
    list_archs,
    pretrained_hub_id,
    resolve_arch,
)
from modelsurgeon.errors import UsageError


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("resnet18", ArchRef("timm", "resnet18")),
        ("timm:resnet18", ArchRef("timm", "resnet18")),
        ("torchvision:resnet18", ArchRef("torchvision", "resnet18")),
        ("tv:vit_b_16", ArchRef("torchvision", "vit_b_16")),
        (" TV:googlenet ", ArchRef("torchvision", "googlenet")),
        ("vit_base_patch16_224.augreg_in21k", ArchRef("timm", "vit_base_patch16_224", "augreg_in21k")),
        ("timm:convnext_atto.d2_in1k", ArchRef("timm", "convnext_atto", "d2_in1k")),
        ("tv:googlenet.noaux", ArchRef("torchvision", "googlenet", "noaux")),
        ("torchvision:inception_v3.noaux", ArchRef("torchvision", "inception_v3", "noaux")),
    ],
)
def test_resolve_arch_variants(spec: str, expected: ArchRef) -> None:
    assert resolve_arch(spec) == expected
    assert resolve_arch(expected) is expected


def test_arch_ref_str() -> None:
    assert str(ArchRef("timm", "resnet18")) == "timm:resnet18"
    assert str(ArchRef("torchvision", "resnet18")) == "torchvision:resnet18"
    ref = resolve_arch("vit_base_patch16_224.augreg_in21k")
    assert str(ref) == "timm:vit_base_patch16_224.augreg_in21k"
    assert ref.model_name == "vit_base_patch16_224.augreg_in21k"


def test_unknown_arch_suggests_close_matches() -> None:
    with pytest.raises(UsageError) as info:
        resolve_arch("vit_bse_patch16_224")
    assert "unknown architecture 'vit_bse_patch16_224'" in info.value.message
    assert "vit_base_patch16_224" in str(info.value.hint)
    assert "modelsurgeon archs PATTERN" in str(info.value.hint)


@pytest.mark.parametrize(
    ("spec", "in_message", "in_hint"),
    [
        ("tv:resnet", "torchvision", "resnet18"),
        ("googlenet", "timm", "torchvision:googlenet"),  # only torchvision has it: say so, don't guess
        ("vit_base_patch16_224.nosuchtag", "nosuchtag", "augreg_in21k"),
        ("hf-hub:timm/resnet18.a1_in1k", "hf-hub", "torchvision:NAME"),
        ("", "empty", "resnet50"),
        ("tv:googlenet.aux", "variant", "googlenet.noaux"),
        ("tv:resnet18.noaux", "torchvision", "resnet18"),  # only archs with aux classifiers have it
    ],
)
def test_resolve_arch_errors_name_the_fix(spec: str, in_message: str, in_hint: str) -> None:
    with pytest.raises(UsageError) as info:
        resolve_arch(spec)
    assert in_message in info.value.message
    assert in_hint in str(info.value.hint)


def test_noaux_variant_builds_without_auxiliary_classifiers() -> None:
    from modelsurgeon.archs import fit_aux, without_aux

    ref = resolve_arch("tv:googlenet.noaux")
    assert str(ref) == "torchvision:googlenet.noaux" and resolve_arch(str(ref)) == ref
    model = build_model(ref, 5)
    assert model.aux1 is None and model.aux2 is None and model.fc.out_features == 5
    assert build_model("tv:inception_v3.noaux").AuxLogits is None
    assert without_aux(resolve_arch("tv:googlenet")) == ref
    assert without_aux(ref) is None and without_aux(resolve_arch("tv:resnet18")) is None
    assert without_aux(resolve_arch("resnet18")) is None
    googlenet = resolve_arch("tv:googlenet")
    assert fit_aux(googlenet, ["conv1.conv.weight", "fc.weight"]) == ref
    assert fit_aux(googlenet, ["conv1.conv.weight", "aux2.fc2.weight"]) is googlenet
    assert fit_aux(resolve_arch("resnet18"), ["fc.weight"]) == resolve_arch("resnet18")


def test_build_model_params_on_meta_nothing_leaks() -> None:
    model = build_model("resnet18", 7)
    assert not model.training
    assert {p.device.type for p in model.parameters()} == {"meta"}
    assert {b.device.type for b in model.buffers()} == {"meta"}
    assert model.fc.weight.shape == (7, 512)
    # the patches are undone: a new module is real again
    assert nn.Linear(2, 2).weight.device.type == "cpu"
    assert nn.BatchNorm1d(2).running_mean.device.type == "cpu"


def test_build_model_cpu_buffers_allow_a_real_forward() -> None:
    reference = build_model("test_efficientnet", 5, buffers="cpu")
    assert {b.device.type for b in reference.buffers()} == {"cpu"}
    assert {p.device.type for p in reference.parameters()} == {"meta"}
    # parameters are meta: give them values; buffers (BatchNorm statistics) are real already
    state = {k: torch.randn(v.shape) * 0.1 if v.is_meta else v for k, v in reference.state_dict().items()}
    reference.load_state_dict(state, assign=True)
    with torch.no_grad():
        out = reference(torch.randn(1, 3, 64, 64))
    assert out.shape == (1, 5) and bool(torch.isfinite(out).all())


def test_build_model_default_classes_and_no_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        googlenet = build_model("tv:googlenet")
        inception = build_model("tv:inception_v3")
        regnet = build_model("tv:regnet_y_400mf")  # cannot be built under torch.device("meta")
    assert googlenet.aux1 is not None and googlenet.aux2 is not None  # aux heads are in the checkpoint
    assert inception.AuxLogits is not None
    assert regnet.fc.out_features == 1000
    assert {p.device.type for p in regnet.parameters()} == {"meta"}


def test_build_model_rejects_bad_arguments() -> None:
    with pytest.raises(UsageError):
        build_model("resnet18", -1)
    with pytest.raises(UsageError):
        build_model("resnet18", buffers="cuda")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("spec", "classes"),
    [
        ("resnet18", 1000),
        ("vit_base_patch16_224.augreg_in21k", 21843),  # the tag's checkpoint decides
        ("sam2_hiera_tiny", 0),  # a backbone checkpoint: no classifier
        ("tv:resnet18", 1000),
    ],
)
def test_default_num_classes(spec: str, classes: int) -> None:
    assert default_num_classes(spec) == classes


def test_input_size() -> None:
    assert input_size("tv:inception_v3") == (3, 299, 299)
    assert input_size("tv:resnet50") == (3, 224, 224)
    assert input_size("vit_base_patch16_384") == (3, 384, 384)
    assert input_size("resnet18") == (3, 224, 224)


def test_pretrained_hub_id() -> None:
    assert pretrained_hub_id("vit_base_patch16_224") == "timm/vit_base_patch16_224.augreg2_in21k_ft_in1k"
    assert pretrained_hub_id("vit_base_patch16_224.augreg_in21k") == "timm/vit_base_patch16_224.augreg_in21k"
    assert pretrained_hub_id("tv:resnet18") is None


def test_list_archs() -> None:
    found = {str(r) for r in list_archs("resnet1*")}
    assert {"timm:resnet18", "torchvision:resnet18", "torchvision:resnet152"} <= found
    assert all(r.source == "torchvision" for r in list_archs("*resnet*", source="torchvision"))
    assert len(list_archs(source="torchvision")) == 80
    assert [str(r) for r in list_archs("tv:vit_b_*")] == ["torchvision:vit_b_16", "torchvision:vit_b_32"]
    assert list_archs("no_such_thing*") == []


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from modelsurgeon.cli.app import main

    with pytest.raises(SystemExit) as info:
        main(argv)
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


def test_archs_command_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(["archs", "tv:squeezenet1_*", "--json"], capsys)
    assert code == 0
    rows = json.loads(out)
    assert [r["name"] for r in rows] == ["squeezenet1_0", "squeezenet1_1"]
    assert rows[0] == {
        "name": "squeezenet1_0",
        "source": "torchvision",
        "head": ["classifier.1.weight", "classifier.1.bias"],
        "head_type": "Conv2d",
        "default_classes": 1000,
    }


def test_archs_command_table_and_errors(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(["archs", "deit_tiny_distilled*"], capsys)
    assert code == 0 and out == ""
    assert "timm:deit_tiny_distilled_patch16_224" in err
    assert "head.{weight,bias} head_dist.{weight,bias}" in err
    code, out, err = _run(["archs", "--source", "tv"], capsys)
    assert code == 0 and "torchvision:wide_resnet50_2" in err and "80 architectures" in err
    code, _, err = _run(["archs", "zzz*"], capsys)
    assert code == 2 and "no architecture matches 'zzz*'" in err
    code, _, err = _run(["archs", "--source", "keras"], capsys)
    assert code == 2 and "--source" in err
