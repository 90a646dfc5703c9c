"""``modelsurgeon rehead`` end to end, on small real architectures with checkpoints made here.

Expected head names come from the architectures' definitions (e.g. DeiT's ``head_dist``,
googlenet's ``aux1.fc2``), never from modelsurgeon's own output.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from tests.conftest import invoke, one_line_error, sha256_of


@pytest.fixture
def vit_ckpt(state_dict_of: Callable[..., dict], save_safetensors: Callable[..., Path]) -> Path:
    return save_safetensors(state_dict_of("test_vit"), "test_vit.safetensors")


# --- the main path -------------------------------------------------------------------------------


def test_head_is_replaced_and_everything_else_is_carried_bit_for_bit(vit_ckpt: Path) -> None:
    before = sha256_of(vit_ckpt)
    result = invoke(
        "rehead", "--arch", "test_vit", "--classes", "7", "--checkpoint", str(vit_ckpt), "--seed", "1"
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    out = Path("test_vit-7cls.safetensors")
    src, new = load_file(vit_ckpt), load_file(out)
    assert new["head.weight"].shape == (7, src["head.weight"].shape[1])
    assert torch.all(new["head.bias"] == 0)
    assert set(new) == set(src)
    for key in src:
        if not key.startswith("head."):
            assert torch.equal(new[key], src[key]) and new[key].dtype == src[key].dtype, key
    assert sha256_of(vit_ckpt) == before  # the input is never modified
    assert "strict load" in result.stderr  # verified by default


def test_json_report_on_stdout_only(vit_ckpt: Path) -> None:
    result = invoke(
        "rehead",
        "--arch",
        "test_vit",
        "--classes",
        "3",
        "--checkpoint",
        str(vit_ckpt),
        "--json",
        "--out",
        "o.safetensors",
    )
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    for key in ("output", "arch", "classes", "head", "seed", "init", "source_sha256"):
        assert key in report
    assert report["classes"] == 3 and report["head"] == ["head.bias", "head.weight"]
    assert report["source_sha256"] == sha256_of(vit_ckpt)
    assert report["arch"] == "timm:test_vit" and report["output"].endswith("o.safetensors")
    assert report["init"]["std"] == 0.02 and report["init"]["bias"] == "zeros"


def test_quiet_prints_nothing_on_success(vit_ckpt: Path) -> None:
    result = invoke(
        "rehead", "--arch", "test_vit", "--classes", "3", "--checkpoint", str(vit_ckpt), "--quiet"
    )
    assert result.exit_code == 0
    assert result.stdout == "" and result.stderr == ""


def test_provenance_metadata(vit_ckpt: Path) -> None:
    invoke(
        "rehead",
        "--arch",
        "test_vit",
        "--classes",
        "4",
        "--checkpoint",
        str(vit_ckpt),
        "--seed",
        "5",
        "--std",
        "0.01",
    )
    with safe_open("test_vit-4cls.safetensors", "pt") as f:
        meta = f.metadata()
    assert meta["modelsurgeon.arch"] == "timm:test_vit"
    assert meta["modelsurgeon.classes"] == "4"
    assert json.loads(meta["modelsurgeon.head"]) == ["head.bias", "head.weight"]
    assert meta["modelsurgeon.seed"] == "5"
    assert meta["modelsurgeon.source_sha256"] == sha256_of(vit_ckpt)
    init = json.loads(meta["modelsurgeon.init"])
    assert (init["mean"], init["std"], init["a"], init["b"], init["bounds"]) == (0.0, 0.01, -2.0, 2.0, "abs")
    assert "modelsurgeon.version" in meta


def test_same_seed_same_bytes_and_drawn_seed_is_reported(vit_ckpt: Path) -> None:
    args = ["rehead", "--arch", "test_vit", "--classes", "5", "--checkpoint", str(vit_ckpt)]
    invoke(*args, "--seed", "11", "--out", "a.safetensors")
    invoke(*args, "--seed", "11", "--out", "b.safetensors")
    assert Path("a.safetensors").read_bytes() == Path("b.safetensors").read_bytes()
    drawn = json.loads(invoke(*args, "--out", "c.safetensors", "--json").stdout)["seed"]
    invoke(*args, "--seed", str(drawn), "--out", "d.safetensors")
    assert Path("c.safetensors").read_bytes() == Path("d.safetensors").read_bytes()
    invoke(*args, "--seed", "12", "--out", "e.safetensors")
    assert not torch.equal(
        load_file("a.safetensors")["head.weight"], load_file("e.safetensors")["head.weight"]
    )


def test_same_class_count_is_still_reinitialised(vit_ckpt: Path) -> None:
    old = load_file(vit_ckpt)["head.weight"]
    invoke("rehead", "--arch", "test_vit", "--classes", str(old.shape[0]), "--checkpoint", str(vit_ckpt))
    new = load_file(f"test_vit-{old.shape[0]}cls.safetensors")["head.weight"]
    assert new.shape == old.shape and not torch.equal(new, old)


def test_classes_zero_removes_the_head(vit_ckpt: Path) -> None:
    result = invoke("rehead", "--arch", "test_vit", "--classes", "0", "--checkpoint", str(vit_ckpt), "--json")
    assert result.exit_code == 0, result.stderr
    new = load_file("test_vit-0cls.safetensors")
    assert not any(k.startswith("head.") for k in new)
    assert json.loads(result.stdout)["head"] == []


def test_init_options_bounds_std_and_bias(vit_ckpt: Path) -> None:
    args = ["rehead", "--arch", "test_vit", "--classes", "50", "--checkpoint", str(vit_ckpt), "--seed", "0"]
    result = invoke(
        *args, "--mean", "0.5", "--std", "0.1", "--a", "-1", "--b", "1", "--bounds", "std", "--bias", "0.25"
    )
    assert result.exit_code == 0, result.stderr
    new = load_file("test_vit-50cls.safetensors")
    w = new["head.weight"]
    assert float(w.min()) >= 0.4 and float(w.max()) <= 0.6  # mean ± 1 std
    assert torch.all(new["head.bias"] == 0.25)
    assert abs(float(w.mean()) - 0.5) < 0.01


def test_absolute_bounds_that_cut_nothing_warn(vit_ckpt: Path) -> None:
    result = invoke(
        "rehead", "--arch", "test_vit", "--classes", "3", "--checkpoint", str(vit_ckpt), "--std", "2e-5"
    )
    assert result.exit_code == 0
    assert "warning:" in result.stderr and "cut nothing" in result.stderr
    quiet = invoke(
        "rehead",
        "--arch",
        "test_vit",
        "--classes",
        "3",
        "--checkpoint",
        str(vit_ckpt),
        "--std",
        "2e-5",
        "--bounds",
        "std",
        "--out",
        "x.safetensors",
    )
    assert "cut nothing" not in quiet.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--std", "0"],
        ["--std", "-1"],
        ["--a", "1", "--b", "1"],
        ["--a", "3", "--b", "2"],
        ["--mean", "nan"],
        ["--classes", "-1"],
        ["--bounds", "sigma"],
        ["--bias", "ones"],
        ["--arch", "vit_bse_patch16_224"],
    ],
)
def test_bad_options_are_usage_errors(vit_ckpt: Path, args: list[str]) -> None:
    base = {"--arch": "test_vit", "--classes": "3", "--checkpoint": str(vit_ckpt)}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    flat = [x for kv in base.items() for x in kv]
    line = one_line_error(invoke("rehead", *flat), 2)
    assert not list(Path().glob("*cls*"))
    if "vit_bse" in line:
        assert "vit_base_patch16_224" in line  # a close match is suggested


def test_missing_classes_is_a_usage_error(vit_ckpt: Path) -> None:
    one_line_error(invoke("rehead", "--arch", "test_vit", "--checkpoint", str(vit_ckpt)), 2)


# --- head shapes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arch", "heads", "kept"),
    [
        (
            "deit_tiny_distilled_patch16_224",
            {"head.weight", "head.bias", "head_dist.weight", "head_dist.bias"},
            (),
        ),
        ("test_convnext", {"head.fc.weight", "head.fc.bias"}, ("head.norm.weight", "head.norm.bias")),
        ("torchvision:squeezenet1_1", {"classifier.1.weight", "classifier.1.bias"}, ()),
        (
            "torchvision:googlenet",
            {"fc.weight", "fc.bias", "aux1.fc2.weight", "aux1.fc2.bias", "aux2.fc2.weight", "aux2.fc2.bias"},
            ("aux1.fc1.weight",),
        ),
    ],
)
def test_every_class_dependent_tensor_is_replaced(
    arch: str,
    heads: set[str],
    kept: tuple[str, ...],
    state_dict_of: Callable[..., dict],
    save_safetensors: Callable[..., Path],
) -> None:
    kwargs = {"aux_logits": True, "init_weights": True} if arch == "torchvision:googlenet" else {}
    src = state_dict_of(arch, **kwargs)
    path = save_safetensors(src, "src.safetensors")
    result = invoke(
        "rehead",
        "--arch",
        arch,
        "--classes",
        "6",
        "--checkpoint",
        str(path),
        "--json",
        "--out",
        "o.safetensors",
    )
    assert result.exit_code == 0, result.stderr
    assert set(json.loads(result.stdout)["head"]) == heads
    new = load_file("o.safetensors")
    for name in heads:
        assert new[name].shape[0] == 6, name
    for name in kept:
        assert torch.equal(new[name], src[name]), name
    assert set(new) == set(src)


def test_fp16_checkpoint_gives_fp16_output(
    state_dict_of: Callable[..., dict], save_safetensors: Callable[..., Path]
) -> None:
    src = {k: (v.half() if v.is_floating_point() else v) for k, v in state_dict_of("test_vit").items()}
    path = save_safetensors(src, "half.safetensors")
    result = invoke("rehead", "--arch", "test_vit", "--classes", "3", "--checkpoint", str(path))
    assert result.exit_code == 0, result.stderr
    new = load_file("test_vit-3cls.safetensors")
    assert {v.dtype for k, v in new.items() if v.is_floating_point()} == {torch.float16}
    assert "forward pass" in result.stderr


def test_half_precision_outputs_count_at_float32_size_for_verification(
    state_dict_of: Callable[..., dict], save_safetensors: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The numeric forward runs in float32, copying a float16 model: the size limit applies to that copy."""
    from modelsurgeon import surgery

    src = {k: (v.half() if v.is_floating_point() else v) for k, v in state_dict_of("test_vit").items()}
    path = save_safetensors(src, "half.safetensors")
    half_bytes = sum(v.numel() * v.element_size() for v in src.values())
    # Between the file's size and its float32 size: a forward would copy more than the limit.
    monkeypatch.setattr(surgery, "FULL_VERIFY_MAX_BYTES", half_bytes + half_bytes // 2)
    args = ["rehead", "--arch", "test_vit", "--classes", "3", "--checkpoint", str(path), "--json"]
    result = invoke(*args)
    assert result.exit_code == 0, result.stderr
    verified = json.loads(result.stdout)["verified"]
    assert "meta device" in verified and "in float32" in verified


# --- formats and training checkpoints ------------------------------------------------------------


def test_training_checkpoint_with_prefixes_namespace_and_ema(
    state_dict_of: Callable[..., dict], save_torch: Callable[..., Path]
) -> None:
    plain = state_dict_of("test_vit", seed=0)
    ema = state_dict_of("test_vit", seed=1)
    ckpt = {
        "epoch": 3,
        "arch": "test_vit",
        "args": argparse.Namespace(lr=0.1, model="test_vit"),
        "state_dict": {f"module._orig_mod.{k}": v for k, v in plain.items()},
        "state_dict_ema": {f"module.{k}": v for k, v in ema.items()},
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "params": [0, 1]}]},
    }
    path = save_torch(ckpt, "checkpoint-3.pth.tar")
    result = invoke(
        "rehead", "--arch", "test_vit", "--classes", "3", "--checkpoint", str(path), "--out", "p.safetensors"
    )
    assert result.exit_code == 0, result.stderr
    assert "--ema" in result.stderr  # says it used the plain weights and how to pick EMA
    assert torch.equal(load_file("p.safetensors")["cls_token"], plain["cls_token"])
    result = invoke(
        "rehead",
        "--arch",
        "test_vit",
        "--classes",
        "3",
        "--checkpoint",
        str(path),
        "--ema",
        "--out",
        "e.safetensors",
    )
    assert result.exit_code == 0, result.stderr
    assert torch.equal(load_file("e.safetensors")["cls_token"], ema["cls_token"])


def test_unsafe_pickle_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "x": Payload()}, path)
    line = one_line_error(
        invoke("rehead", "--arch", "test_vit", "--classes", "3", "--checkpoint", str(path)), 3
    )
    assert "system" in line or "unsafe" in line.lower()
    assert not marker.exists()


def test_mismatched_checkpoint_lists_keys(
    state_dict_of: Callable[..., dict], save_safetensors: Callable[..., Path]
) -> None:
    path = save_safetensors(state_dict_of("test_vit"), "vit.safetensors")
    line = one_line_error(
        invoke("rehead", "--arch", "test_convnext", "--classes", "3", "--checkpoint", str(path)), 3
    )
    assert "missing" in line and "unexpected" in line and "--arch" in line
    assert not list(Path().glob("test_convnext*"))


def test_shape_mismatch_and_single_missing_key(
    state_dict_of: Callable[..., dict], save_safetensors: Callable[..., Path]
) -> None:
    src = state_dict_of("test_vit")
    src["cls_token"] = torch.zeros(1, 1, 3)
    del src["norm.weight"]
    path = save_safetensors(src, "bad.safetensors")
    line = one_line_error(
        invoke("rehead", "--arch", "test_vit", "--classes", "3", "--checkpoint", str(path)), 3
    )
    assert "cls_token" in line and "norm.weight" in line


@pytest.mark.parametrize("verify", ["--verify", "--no-verify"])
def test_integer_float_swaps_are_refused_before_writing(
    state_dict_of: Callable[..., dict], save_safetensors: Callable[..., Path], verify: str
) -> None:
    """A float tensor stored as integers (or BatchNorm's integer counter stored as a float) is refused
    by the match itself, so --no-verify cannot write it."""
    src = state_dict_of("torchvision:resnet18")
    src["conv1.weight"] = src["conv1.weight"].view(torch.int32)
    src["bn1.num_batches_tracked"] = src["bn1.num_batches_tracked"].to(torch.float32)
    path = save_safetensors(src, "swapped.safetensors")
    args = ["rehead", "--arch", "tv:resnet18", "--classes", "3", "--checkpoint", str(path), "--out", "o.pth"]
    line = one_line_error(invoke(*args, verify), 3)
    assert "2 checkpoint tensors have a dtype the arch cannot take" in line
    assert "conv1.weight: torch.int32, arch floating point" in line
    assert "bn1.num_batches_tracked: torch.float32, arch integer" in line
    assert not Path("o.pth").exists()


def test_googlenet_state_dict_without_aux_classifiers_is_planned_without_them(
    state_dict_of: Callable[..., dict], save_safetensors: Callable[..., Path]
) -> None:
    """A state dict saved from torchvision's googlenet built with aux_logits=False (what
    googlenet(weights=...) gives) has no aux1./aux2. keys: rehead plans the aux-less variant."""
    src = state_dict_of("torchvision:googlenet", aux_logits=False, init_weights=False)
    assert not any(k.startswith(("aux1.", "aux2.")) for k in src)
    path = save_safetensors(src, "noaux.safetensors")
    args = ["rehead", "--arch", "tv:googlenet", "--classes", "5", "--checkpoint", str(path), "--json"]
    result = invoke(*args, "--out", "o.safetensors")
    assert result.exit_code == 0, result.stderr
    assert "no auxiliary classifiers" in result.stderr and "aux_logits=False" in result.stderr
    report = json.loads(result.stdout)
    assert report["arch"] == "torchvision:googlenet.noaux" and report["head"] == ["fc.bias", "fc.weight"]
    assert "forward pass" in report["verified"]
    new = load_file("o.safetensors")
    assert set(new) == set(src) and new["fc.weight"].shape == (5, 1024)
    with safe_open("o.safetensors", framework="pt") as f:
        assert f.metadata()["modelsurgeon.arch"] == "torchvision:googlenet.noaux"
    inspected = invoke("inspect", "o.safetensors", "--json")  # the arch in the metadata resolves
    assert inspected.exit_code == 0, inspected.stderr
    assert json.loads(inspected.stdout)["classes"] == 5 and "does not match" not in inspected.stderr
    source = invoke("inspect", str(path), "--arch", "tv:googlenet", "--json")  # the source, by name
    assert source.exit_code == 0, source.stderr
    assert json.loads(source.stdout)["classes"] == 1000 and "does not match" not in source.stderr


def test_googlenet_with_some_aux_keys_missing_is_still_refused(
    state_dict_of: Callable[..., dict], save_safetensors: Callable[..., Path]
) -> None:
    src = state_dict_of("torchvision:googlenet", init_weights=False)
    src = {k: v for k, v in src.items() if not k.startswith("aux1.")}
    path = save_safetensors(src, "partial.safetensors")
    line = one_line_error(
        invoke("rehead", "--arch", "tv:googlenet", "--classes", "5", "--checkpoint", str(path)), 3
    )
    assert "missing" in line and "aux1." in line


def test_torch_output_format(vit_ckpt: Path) -> None:
    result = invoke(
        "rehead", "--arch", "test_vit", "--classes", "3", "--checkpoint", str(vit_ckpt), "--out", "o.pth"
    )
    assert result.exit_code == 0, result.stderr
    state = torch.load("o.pth", weights_only=True)
    assert state["head.weight"].shape[0] == 3


def test_existing_output_needs_force(vit_ckpt: Path) -> None:
    Path("o.safetensors").write_bytes(b"precious")
    one_line_error(
        invoke(
            "rehead",
            "--arch",
            "test_vit",
            "--classes",
            "3",
            "--checkpoint",
            str(vit_ckpt),
            "--out",
            "o.safetensors",
        ),
        4,
    )
    assert Path("o.safetensors").read_bytes() == b"precious"
    result = invoke(
        "rehead",
        "--arch",
        "test_vit",
        "--classes",
        "3",
        "--checkpoint",
        str(vit_ckpt),
        "--out",
        "o.safetensors",
        "--force",
    )
    assert result.exit_code == 0
    assert load_file("o.safetensors")["head.weight"].shape[0] == 3


def test_out_equal_to_input_is_refused_without_force(vit_ckpt: Path) -> None:
    before = sha256_of(vit_ckpt)
    one_line_error(
        invoke(
            "rehead",
            "--arch",
            "test_vit",
            "--classes",
            "3",
            "--checkpoint",
            str(vit_ckpt),
            "--out",
            str(vit_ckpt),
        ),
        2,
    )
    assert sha256_of(vit_ckpt) == before
    result = invoke(
        "rehead",
        "--arch",
        "test_vit",
        "--classes",
        "3",
        "--checkpoint",
        str(vit_ckpt),
        "--out",
        str(vit_ckpt),
        "--force",
    )
    assert result.exit_code == 0, result.stderr
    assert load_file(vit_ckpt)["head.weight"].shape[0] == 3


def test_no_verify_is_reported(vit_ckpt: Path) -> None:
    result = invoke(
        "rehead",
        "--arch",
        "test_vit",
        "--classes",
        "3",
        "--checkpoint",
        str(vit_ckpt),
        "--no-verify",
        "--json",
    )
    assert json.loads(result.stdout)["verified"].startswith("skipped")


def test_missing_num_batches_tracked_is_filled(
    state_dict_of: Callable[..., dict], save_safetensors: Callable[..., Path]
) -> None:
    # torchvision's original ImageNet checkpoints predate num_batches_tracked.
    src = {
        k: v
        for k, v in state_dict_of("torchvision:resnet18").items()
        if not k.endswith("num_batches_tracked")
    }
    path = save_safetensors(src, "old.safetensors")
    result = invoke(
        "rehead",
        "--arch",
        "tv:resnet18",
        "--classes",
        "3",
        "--checkpoint",
        str(path),
        "--out",
        "o.safetensors",
    )
    assert result.exit_code == 0, result.stderr
    assert "num_batches_tracked" in result.stderr
    assert load_file("o.safetensors")["bn1.num_batches_tracked"].item() == 0


# --- labels, recipes, arch-free ------------------------------------------------------------------


def test_labels_set_classes_and_copy_rows(vit_ckpt: Path) -> None:
    src = load_file(vit_ckpt)
    Path("l.txt").write_text("cat=3\ndog\nfish=0\n")
    result = invoke(
        "rehead",
        "--arch",
        "test_vit",
        "--checkpoint",
        str(vit_ckpt),
        "--labels",
        "l.txt",
        "--json",
        "--out",
        "o.safetensors",
    )
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["classes"] == 3 and report["kept_rows"] == 2 and report["labels"] == ["cat", "dog", "fish"]
    new = load_file("o.safetensors")
    assert torch.equal(new["head.weight"][0], src["head.weight"][3])
    assert torch.equal(new["head.bias"][2], src["head.bias"][0])
    assert not torch.equal(new["head.weight"][1], src["head.weight"][1])
    with safe_open("o.safetensors", "pt") as f:
        assert json.loads(f.metadata()["modelsurgeon.labels"]) == ["cat", "dog", "fish"]
    # a second surgery can refer to the old labels by name
    Path("m.txt").write_text("fish=fish\ncat=cat\n")
    result = invoke(
        "rehead",
        "--arch",
        "test_vit",
        "--checkpoint",
        "o.safetensors",
        "--labels",
        "m.txt",
        "--out",
        "p.safetensors",
    )
    assert result.exit_code == 0, result.stderr
    assert torch.equal(load_file("p.safetensors")["head.weight"][1], src["head.weight"][3])


@pytest.mark.parametrize(
    ("text", "extra"), [("a\nb\n", ["--classes", "3"]), ("a=100000\n", []), ("a\na\n", []), ("a=zebra\n", [])]
)
def test_bad_labels_are_usage_errors(vit_ckpt: Path, text: str, extra: list[str]) -> None:
    Path("l.txt").write_text(text)
    one_line_error(
        invoke("rehead", "--arch", "test_vit", "--checkpoint", str(vit_ckpt), "--labels", "l.txt", *extra), 2
    )


def test_config_recipe_and_flag_override(vit_ckpt: Path) -> None:
    Path("r.yaml").write_text(f"arch: test_vit\nclasses: 4\ncheckpoint: {vit_ckpt}\nstd: 0.5\nseed: 3\n")
    result = invoke("rehead", "--config", "r.yaml", "--classes", "6", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["classes"] == 6 and report["init"]["std"] == 0.5 and report["seed"] == 3
    Path("bad.yaml").write_text("arch: test_vit\nclases: 4\n")
    line = one_line_error(invoke("rehead", "--config", "bad.yaml"), 2)
    assert "clases" in line and "classes" in line


def test_arch_free_named_head(
    state_dict_of: Callable[..., dict], save_safetensors: Callable[..., Path]
) -> None:
    src = {f"backbone.{k}": v for k, v in state_dict_of("test_vit").items()}
    path = save_safetensors(src, "custom.safetensors")
    result = invoke(
        "rehead",
        "--head",
        "backbone.head",
        "--classes",
        "9",
        "--checkpoint",
        str(path),
        "--json",
        "--out",
        "o.safetensors",
    )
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert "shape-only" in report["verified"]
    new = load_file("o.safetensors")
    assert new["backbone.head.weight"].shape == (9, src["backbone.head.weight"].shape[1])
    assert new["backbone.head.bias"].shape == (9,)
    assert all(torch.equal(new[k], v) for k, v in src.items() if not k.startswith("backbone.head."))
    one_line_error(invoke("rehead", "--head", "nohead", "--classes", "9", "--checkpoint", str(path)), 2)


def test_large_outputs_are_verified_on_the_meta_device(
    vit_ckpt: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelsurgeon import surgery

    monkeypatch.setattr(surgery, "FULL_VERIFY_MAX_BYTES", 1024)
    args = ["rehead", "--arch", "test_vit", "--classes", "3", "--checkpoint", str(vit_ckpt), "--json"]
    result = invoke(*args)
    assert result.exit_code == 0, result.stderr
    verified = json.loads(result.stdout)["verified"]
    assert "strict load of every key, shape and dtype" in verified and "no numeric forward" in verified


def test_meta_verification_still_catches_a_wrong_dtype(
    state_dict_of: Callable[..., dict], save_safetensors: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelsurgeon import surgery

    monkeypatch.setattr(surgery, "FULL_VERIFY_MAX_BYTES", 1024)
    src = state_dict_of("test_vit")
    src["cls_token"] = src["cls_token"].to(torch.int32)
    path = save_safetensors(src, "int.safetensors")
    line = one_line_error(
        invoke("rehead", "--arch", "test_vit", "--classes", "3", "--checkpoint", str(path)), 3
    )
    assert "cls_token" in line
    assert not list(Path().glob("*cls*"))


def test_meta_verification_compares_the_written_header_with_the_plan(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from modelsurgeon import surgery
    from modelsurgeon.errors import ModelSurgeonError

    path = tmp_path / "w.safetensors"
    save_file({"a": torch.zeros(2, 3), "b": torch.zeros(4, dtype=torch.int64)}, str(path))
    plan = {"a": (torch.float32, (2, 3)), "b": (torch.int64, (4,))}
    surgery._check_header(str(path), plan)  # the same: passes
    for wrong in (
        {**plan, "a": (torch.float16, (2, 3))},
        {**plan, "b": (torch.int64, (5,))},
        {**plan, "c": (torch.float32, (1,))},
        {"a": plan["a"]},
    ):
        with pytest.raises(ModelSurgeonError, match="differs from the plan"):
            surgery._check_header(str(path), wrong)
