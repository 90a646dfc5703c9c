"""``modelsurgeon inspect``: the head, class count, provenance and labels of checkpoints made here.

Expected values come from the models and files themselves (timm's state dicts, hashlib), never from
modelsurgeon's own output.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from modelsurgeon import __version__
from tests.conftest import invoke, one_line_error, sha256_of


def inspect_json(*args: str) -> dict:
    result = invoke("inspect", *args, "--json")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    return json.loads(lines[0])


def numel(state: dict[str, torch.Tensor]) -> int:
    return sum(t.numel() for t in state.values())


@pytest.fixture(scope="module")
def vit_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("src") / "test_vit.safetensors"
    save_file(timm.create_model("test_vit").state_dict(), str(path))
    return path


@pytest.fixture(scope="module")
def reheaded(vit_source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """test_vit reheaded to 3 labelled classes, seed 5, by the CLI; "cat" keeps row 5 of the old head."""
    work = tmp_path_factory.mktemp("rehead")
    labels = work / "pets.labels"
    labels.write_text("cat=5\ndog\nbird\n", encoding="utf-8")
    out = work / "pets.safetensors"
    result = invoke(
        "rehead", "--arch", "test_vit", "--checkpoint", str(vit_source), "--labels", str(labels),
        "--seed", "5", "--out", str(out), "--no-verify",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    return out


# --- a checkpoint written by rehead --------------------------------------------------------------


def test_rehead_output_reports_classes_head_labels_and_provenance(reheaded: Path, vit_source: Path) -> None:
    import timm

    report = inspect_json(str(reheaded))
    expected = timm.create_model("test_vit", num_classes=3).state_dict()
    assert report["classes"] == 3
    assert report["head_source"] == "metadata"
    assert report["head"] == ["head.bias", "head.weight"]
    assert report["head_tensors"]["head.weight"] == {"dtype": "float32", "shape": [3, 64]}
    assert report["labels"] == ["cat", "dog", "bird"]
    assert report["parameters"] == numel(expected)
    assert report["dtypes"] == {"float32": numel(expected)}
    assert report["tensors"] == len(expected)
    assert report["format"] == "safetensors"
    assert report["sha256"] == sha256_of(reheaded)
    meta = report["metadata"]
    assert meta["arch"] == report["arch"] == "timm:test_vit"
    assert meta["classes"] == 3 and meta["seed"] == 5 and meta["version"] == __version__
    assert meta["source_sha256"] == sha256_of(vit_source)
    assert meta["init"]["std"] == 0.02 and meta["init"]["a_abs"] == -2.0
    assert meta["kept_rows"] == {"0": 5}
    assert "labels" not in meta
    assert report["warnings"] == []


def test_head_stats_match_the_weights_and_the_init(reheaded: Path) -> None:
    from safetensors.torch import load_file

    weight = load_file(reheaded)["head.weight"].double()
    report = inspect_json(str(reheaded))
    stats = report["head_stats"]
    assert stats["count"] == weight.numel()
    assert stats["mean"] == pytest.approx(float(weight.mean()))
    assert stats["std"] == pytest.approx(float(weight.std(correction=0)))
    assert (stats["min"], stats["max"]) == (float(weight.min()), float(weight.max()))
    assert stats["expected_mean"] == pytest.approx(0.0, abs=1e-12)
    assert stats["expected_std"] == pytest.approx(0.02, rel=1e-6)  # ±2 is 100 std: no truncation
    assert stats["outside_bounds"] == 0
    hist = report["histogram"]
    assert hist["excluded_rows"] == 1  # row 0 was copied from the old head, not sampled
    assert sum(hist["counts"]) == weight[1:].numel()
    assert len(hist["edges"]) == len(hist["counts"]) + 1 == len(hist["density"]) + 1
    widths = [b - a for a, b in zip(hist["edges"][:-1], hist["edges"][1:], strict=True)]
    assert sum(d * w for d, w in zip(hist["density"], widths, strict=True)) == pytest.approx(1.0, abs=1e-3)


def test_human_report_goes_to_stderr_only(reheaded: Path) -> None:
    result = invoke("inspect", str(reheaded))
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert "3 (from modelsurgeon metadata)" in result.stderr
    assert "cat, dog, bird" in result.stderr
    assert "seed 5" in result.stderr
    assert "1 row copied from the old head" in result.stderr
    assert "expected from the init's truncated normal" in result.stderr


# --- plain checkpoints ---------------------------------------------------------------------------


def test_arch_names_the_head_of_a_plain_timm_checkpoint(
    state_dict_of: Callable[..., dict], save_torch: Callable[..., Path]
) -> None:
    state = state_dict_of("test_vit")
    report = inspect_json(str(save_torch(state)), "--arch", "test_vit")
    assert report["format"] == "torch-zip"
    assert (report["classes"], report["head_source"], report["head_type"]) == (1000, "arch", "Linear")
    assert report["head"] == ["head.bias", "head.weight"]
    assert report["arch"] == "timm:test_vit"
    assert report["parameters"] == numel(state)
    assert report["metadata"] == {} and report["labels"] is None
    assert report["histogram"]["density"] is None and "expected_std" not in report["head_stats"]
    assert report["warnings"] == []


def test_arch_mismatch_is_a_warning(
    state_dict_of: Callable[..., dict], save_safetensors: Callable[..., Path]
) -> None:
    state = state_dict_of("test_vit")
    del state["norm.bias"]
    result = invoke("inspect", str(save_safetensors(state)), "--arch", "test_vit", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["classes"] == 1000
    assert "1 missing (e.g. norm.bias)" in report["warnings"][0]
    assert "warning: the checkpoint does not match timm:test_vit" in result.stderr


def test_heuristic_finds_the_last_classifier_of_a_plain_dict(save_torch: Callable[..., Path]) -> None:
    state = {
        "features.0.weight": torch.randn(8, 3, 3, 3),
        "blocks.0.mlp.fc1.weight": torch.randn(16, 8),
        "head.pre_logits.fc.weight": torch.randn(8, 8),
        "classifier.0.weight": torch.randn(32, 8),
        "classifier.0.bias": torch.randn(32),
        "classifier.10.weight": torch.randn(5, 32).half(),
        "classifier.10.bias": torch.randn(5).half(),
        "classifier.9.weight": torch.randn(32, 32),
    }
    report = inspect_json(str(save_torch(state)))
    assert (report["classes"], report["head_source"]) == (5, "heuristic")
    assert report["head"] == ["classifier.10.bias", "classifier.10.weight"]
    assert report["dtypes"] == {
        "float16": 5 * 32 + 5,
        "float32": numel(state) - (5 * 32 + 5),
    }
    assert report["head_stats"]["count"] == 5 * 32


def test_no_head_found(save_safetensors: Callable[..., Path]) -> None:
    report = inspect_json(str(save_safetensors({"blocks.0.mlp.fc1.weight": torch.ones(4, 2)})))
    assert (report["classes"], report["head"], report["head_source"]) == (None, [], "none")
    assert report["head_stats"] is None and report["histogram"] is None


def test_sharded_index(state_dict_of: Callable[..., dict], tmp_path: Path) -> None:
    from safetensors.torch import save_file

    state = state_dict_of("test_vit")
    keys = sorted(state)
    shards = {"model-00001-of-00002.safetensors": keys[::2], "model-00002-of-00002.safetensors": keys[1::2]}
    for name, part in shards.items():
        save_file({k: state[k] for k in part}, str(tmp_path / name))
    weight_map = {k: name for name, part in shards.items() for k in part}
    index = {"metadata": {"total_size": 4 * numel(state)}, "weight_map": weight_map}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    report = inspect_json(str(tmp_path))
    assert report["format"] == "safetensors-sharded"
    assert (report["tensors"], report["parameters"]) == (len(state), numel(state))
    assert (report["classes"], report["head_source"]) == (1000, "heuristic")


# --- streams and errors --------------------------------------------------------------------------


def test_stdin_pipeline(vit_source: Path, tmp_path: Path) -> None:
    python = sys.executable
    command = (
        f"cat {vit_source} | {python} -m modelsurgeon rehead --arch test_vit --classes 3 --checkpoint - "
        f"--out - --seed 1 | {python} -m modelsurgeon inspect - --json"
    )
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command], capture_output=True, timeout=120, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr.decode()
    report = json.loads(done.stdout)
    assert report["source"] == "<stdin>"
    assert (report["classes"], report["head_source"], report["arch"]) == (3, "metadata", "timm:test_vit")
    assert report["metadata"]["seed"] == 1
    assert report["metadata"]["source_sha256"] == sha256_of(vit_source)


def test_corrupt_input_is_one_line_exit_3(tmp_path: Path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    line = one_line_error(invoke("inspect", str(bad), "--json"), 3)
    assert "bad.safetensors" in line
    one_line_error(invoke("inspect", "-", input=b"garbage"), 3)


def test_unknown_arch_is_exit_2(save_safetensors: Callable[..., Path]) -> None:
    path = save_safetensors({"fc.weight": torch.ones(2, 2)})
    line = one_line_error(invoke("inspect", str(path), "--arch", "no_such_arch_xyz"), 2)
    assert "no_such_arch_xyz" in line


def test_parameters_are_every_element(save_safetensors: Callable[..., Path]) -> None:
    state = {"a": torch.zeros(3, 4), "b": torch.zeros((), dtype=torch.int64), "c": torch.zeros(0, 5)}
    report = inspect_json(str(save_safetensors(state)))
    assert report["parameters"] == sum(math.prod(t.shape) for t in state.values()) == 13
    assert report["dtypes"] == {"float32": 12, "int64": 1}
