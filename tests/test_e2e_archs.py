"""One arch per head shape, and every torchvision family, end to end through the CLI.

Each case makes a real checkpoint (random weights of the real architecture), runs ``rehead`` on it
in-process with verification on (strict reload + forward pass), and checks the head tensors against
names written down here from the architectures' own definitions. Large bodies are stored in
bfloat16 to keep the suite fast; that also exercises dtype preservation.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from modelsurgeon.cli.app import app

N = 5
OUT = "o.safetensors"


def _pair(*modules: str) -> set[str]:
    return {f"{m}.{p}" for m in modules for p in ("weight", "bias")}


# (arch, expected head tensors, a non-head tensor of the head region that must be kept, store in bf16)
TIMM = [
    ("test_vit", _pair("head"), None, False),  # nn.Linear
    ("dla46_c", _pair("fc"), None, False),  # Conv2d 1x1 head
    ("deit_tiny_distilled_patch16_224", _pair("head", "head_dist"), None, False),  # tuple, distilled
    ("levit_128s", _pair("head.linear", "head_dist.linear"), "head.bn.weight", False),  # NormLinear ×2
    ("crossvit_tiny_240", _pair("head.0", "head.1"), None, False),  # ModuleList
    ("efficientvim_m1", _pair("heads.0", "heads.1", "heads.2", "heads.3"), None, False),  # ModuleList
    ("repvit_m0_9", _pair("head.head.l", "head.head_dist.l"), "head.head.bn.weight", False),  # custom
    ("test_convnext", _pair("head.fc"), "head.norm.weight", False),  # norm + fc head
    ("caformer_s18", _pair("head.fc.fc2"), "head.fc.fc1.weight", True),  # MlpHead
    ("volo_d1_224", _pair("head", "aux_head"), None, True),  # auxiliary head
    ("sam2_hiera_tiny", _pair("head.fc"), None, True),  # default num_classes=0: the head is added
    ("mobilenetv3_large_100.miil_in21k", _pair("classifier"), None, False),  # default 11221 classes
]

TORCHVISION = [
    ("alexnet", _pair("classifier.6"), True),
    ("convnext_tiny", _pair("classifier.2"), True),
    ("densenet121", _pair("classifier"), False),
    ("efficientnet_b0", _pair("classifier.1"), False),
    ("efficientnet_v2_s", _pair("classifier.1"), True),
    ("googlenet", _pair("fc", "aux1.fc2", "aux2.fc2"), False),
    ("inception_v3", _pair("fc", "AuxLogits.fc"), True),
    ("maxvit_t", {"classifier.5.weight"}, True),  # Linear(bias=False)
    ("mnasnet0_5", _pair("classifier.1"), False),
    ("mobilenet_v2", _pair("classifier.1"), False),
    ("mobilenet_v3_small", _pair("classifier.3"), False),
    ("regnet_y_400mf", _pair("fc"), False),
    ("resnet18", _pair("fc"), False),
    ("resnext50_32x4d", _pair("fc"), True),
    ("wide_resnet50_2", _pair("fc"), True),
    ("shufflenet_v2_x0_5", _pair("fc"), False),
    ("squeezenet1_1", _pair("classifier.1"), False),
    ("swin_t", _pair("head"), True),
    ("swin_v2_t", _pair("head"), True),
    ("vgg11", _pair("classifier.6"), True),
    ("vit_b_16", _pair("heads.head"), True),
]


def _model_state(arch: str, **kwargs: object) -> dict[str, torch.Tensor]:
    import timm
    import torchvision

    torch.manual_seed(0)
    if arch.startswith("torchvision:"):
        model = torchvision.models.get_model(arch.split(":", 1)[1], weights=None, **kwargs)
    else:
        model = timm.create_model(arch, pretrained=False, **kwargs)
    return {k: v.detach().contiguous() for k, v in model.state_dict().items()}


def _run(arch: str, heads: set[str], kept: str | None, bf16: bool, save: Callable[..., Path]) -> None:
    kwargs: dict[str, object] = {}
    if arch in ("torchvision:googlenet", "torchvision:inception_v3"):
        kwargs = {"aux_logits": True, "init_weights": True}
    state = _model_state(arch, **kwargs)
    if bf16:
        state = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in state.items()}
    path = save(state, "src.safetensors")
    args = ["rehead", "--arch", arch, "--classes", str(N), "--checkpoint", str(path), "--out", OUT]
    result = CliRunner().invoke(app, [*args, "--json", "--seed", "0"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report["head"]) == heads
    assert report["verified"].startswith("strict load")
    out = load_file(OUT)
    assert set(out) == (set(state) - heads) | heads  # a missing head is added, nothing else changes
    for name in heads:
        assert out[name].shape[0] == N, name
    if kept is not None:
        assert torch.equal(out[kept], state[kept])
    body = [k for k in state if k not in heads]
    for key in body[:: max(1, len(body) // 20)]:  # every tensor is checked by the verifier; spot-check bits
        assert torch.equal(out[key], state[key]) and out[key].dtype == state[key].dtype, key


@pytest.mark.parametrize(("arch", "heads", "kept", "bf16"), TIMM, ids=[t[0] for t in TIMM])
def test_timm_head_shapes(
    arch: str, heads: set[str], kept: str | None, bf16: bool, save_safetensors: Callable[..., Path]
) -> None:
    _run(arch, heads, kept, bf16, save_safetensors)


@pytest.mark.parametrize(("arch", "heads", "bf16"), TORCHVISION, ids=[t[0] for t in TORCHVISION])
def test_every_torchvision_family(
    arch: str, heads: set[str], bf16: bool, save_safetensors: Callable[..., Path]
) -> None:
    _run(f"torchvision:{arch}", heads, None, bf16, save_safetensors)
