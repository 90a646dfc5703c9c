"""Tests of modelsurgeon.checkpoint: every format in and out, safe loading, atomic writes."""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import pickle
import signal
import struct
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import load as load_bytes
from safetensors.torch import load_file, save_file

from modelsurgeon import checkpoint as ckmod
from modelsurgeon.checkpoint import (
    Checkpoint,
    OutTensor,
    TensorInfo,
    read_checkpoint,
    write_checkpoint,
)
from modelsurgeon.errors import InputError, OutputError, UsageError
from tests.conftest import sha256_of


# --------------------------------------------------------------------------------------------- helpers
def _synthetic(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "stem.conv.weight": torch.randn(8, 3, 3, 3, generator=g),
        "stem.bn.running_var": torch.rand(8, generator=g),
        "stem.bn.num_batches_tracked": torch.tensor(7),
        "blocks.0.fc.weight": torch.randn(16, 8, generator=g).to(torch.bfloat16),
        "blocks.0.fc.bias": torch.randn(16, generator=g).to(torch.float16),
        "blocks.0.mask": torch.rand(5, generator=g) > 0.5,
        "blocks.0.idx": torch.arange(11, dtype=torch.int32),
        "head.weight": torch.randn(10, 16, generator=g),
        "head.bias": torch.randn(10, generator=g),
        "empty": torch.zeros(0, 4),
    }


def _entries(state: Mapping[str, torch.Tensor], *, origin: bool = False) -> list[OutTensor]:
    return [
        OutTensor(k, v.dtype, tuple(v.shape), (lambda v=v: v), origin=k if origin else None)
        for k, v in state.items()
    ]


def _entries_from(ck: Checkpoint) -> list[OutTensor]:
    return [OutTensor(k, i.dtype, i.shape, (lambda k=k: ck.tensor(k)), origin=k) for k, i in ck.infos.items()]


def _assert_same(got: Mapping[str, torch.Tensor], want: Mapping[str, torch.Tensor]) -> None:
    assert sorted(got) == sorted(want)
    for k in want:
        assert got[k].dtype == want[k].dtype, k
        assert tuple(got[k].shape) == tuple(want[k].shape), k
        assert torch.equal(got[k], want[k]), k


def _read_all(ck: Checkpoint) -> dict[str, torch.Tensor]:
    return {k: ck.tensor(k) for k in ck.infos}


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


class _Evil:
    """Unpickling this would run ``os.system``: it must never happen."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


# ------------------------------------------------------------------------------------- safetensors
def test_safetensors_round_trip_keeps_dtypes_metadata_and_hash(tmp_path: Path) -> None:
    state = _synthetic()
    dest = tmp_path / "out.safetensors"
    result = write_checkpoint(dest, _entries(state), metadata={"arch": "timm:test", "note": "é ✓"})

    assert result.format == "safetensors"
    assert result.path == str(dest)
    assert result.nbytes == dest.stat().st_size
    _assert_same(load_file(str(dest)), state)
    with safe_open(str(dest), framework="pt") as f:
        assert f.metadata() == {"arch": "timm:test", "note": "é ✓"}
    header_len = struct.unpack("<Q", dest.read_bytes()[:8])[0]
    assert header_len % 8 == 0

    with read_checkpoint(dest) as ck:
        assert ck.format == "safetensors"
        assert ck.metadata == {"arch": "timm:test", "note": "é ✓"}
        assert ck.sha256 == sha256_of(dest)
        assert ck.notes == ()
        assert dict(ck.infos) == {k: TensorInfo(v.dtype, tuple(v.shape)) for k, v in state.items()}
        _assert_same(_read_all(ck), state)


def test_reads_files_written_by_safetensors_itself(
    tmp_path: Path, state_dict_of: Callable[..., dict]
) -> None:
    state = state_dict_of("torchvision:resnet18", num_classes=7)
    state["half"] = torch.randn(3, 5).to(torch.bfloat16)
    path = tmp_path / "model.safetensors"
    save_file(state, str(path), metadata={"format": "pt"})
    with read_checkpoint(path) as ck:
        assert ck.metadata == {"format": "pt"}
        _assert_same(_read_all(ck), state)


def test_safetensors_tensors_are_lazy_private_mappings(tmp_path: Path) -> None:
    state = {"a": torch.arange(6, dtype=torch.float32), "b": torch.ones(3, dtype=torch.uint8)}
    path = tmp_path / "m.safetensors"
    save_file(state, str(path))
    before = path.read_bytes()
    with read_checkpoint(path) as ck:
        t = ck.tensor("a")
        assert t.untyped_storage().nbytes() == path.stat().st_size  # a view of the mapped file
        t.add_(100)  # callers must not do this; if they do, the file must still not change
    assert path.read_bytes() == before


def test_misaligned_safetensors_data_is_read_correctly(tmp_path: Path) -> None:
    # One odd-sized uint8 tensor first puts the float32 data at an unaligned offset.
    state = {"a": torch.arange(3, dtype=torch.uint8), "b": torch.tensor([1.5, -2.0, 3.25])}
    path = tmp_path / "m.safetensors"
    save_file(state, str(path))
    with read_checkpoint(path) as ck:
        _assert_same(_read_all(ck), state)


def test_output_is_deterministic_and_independent_of_entry_order(tmp_path: Path) -> None:
    state = _synthetic()
    a = write_checkpoint(tmp_path / "a.safetensors", _entries(state), metadata={"x": "1", "a": "2"})
    b = write_checkpoint(
        tmp_path / "b.safetensors", list(reversed(_entries(state))), metadata={"a": "2", "x": "1"}
    )
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()
    assert a.nbytes == b.nbytes == (tmp_path / "a.safetensors").stat().st_size
    # a torch file too
    write_checkpoint(tmp_path / "a.pth", _entries(state), metadata={})
    write_checkpoint(tmp_path / "b.pth", list(reversed(_entries(state))), metadata={})
    assert (tmp_path / "a.pth").read_bytes() == (tmp_path / "b.pth").read_bytes()


def test_non_contiguous_tensors_are_written_chunk_wise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ckmod, "CHUNK_BYTES", 24)  # force many chunks, and rows larger than a chunk
    base = torch.randn(7, 9, 5)
    state = {
        "t": base.transpose(0, 2),  # rows of 9*7 floats: larger than a chunk
        "s": base[:, ::2, 1],  # strided 2-D
        "bf": base.to(torch.bfloat16).permute(1, 0, 2),
        "scalar": torch.tensor(3.5),
        "vec": torch.arange(40, dtype=torch.int64)[::3],
    }
    assert not state["t"].is_contiguous()
    seen: list[tuple[int, int]] = []
    dest = tmp_path / "nc.safetensors"
    write_checkpoint(dest, _entries(state), metadata={}, progress=lambda d, t: seen.append((d, t)))
    _assert_same(load_file(str(dest)), {k: v.contiguous() for k, v in state.items()})
    total = sum(v.numel() * v.element_size() for v in state.values())
    assert len(seen) > len(state)  # chunked, not one call per tensor
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert seen[-1] == (total, total)


dtypes = st.sampled_from(
    [
        torch.float32,
        torch.float16,
        torch.bfloat16,
        torch.float64,
        torch.int8,
        torch.uint8,
        torch.int64,
        torch.bool,
    ]
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    specs=st.dictionaries(
        st.text(alphabet="abcxyz._0189é", min_size=1, max_size=8).filter(lambda s: s != "__metadata__"),
        st.tuples(dtypes, st.lists(st.integers(0, 4), max_size=3), st.integers(0, 2**31)),
        max_size=6,
    )
)
def test_property_safetensors_round_trip_is_exact_and_deterministic(
    tmp_path: Path, specs: dict[str, tuple[torch.dtype, list[int], int]]
) -> None:
    state = {}
    for name, (dtype, shape, seed) in specs.items():
        g = torch.Generator().manual_seed(seed)
        state[name] = (torch.randn(shape, generator=g) * 50).to(dtype)
    first = tmp_path / "p1.safetensors"
    second = tmp_path / "p2.safetensors"
    for p in (first, second):
        write_checkpoint(p, _entries(state), metadata={"seed": "x"}, force=True)
    assert first.read_bytes() == second.read_bytes()
    _assert_same(load_file(str(first)), state)
    with read_checkpoint(first) as ck:
        _assert_same(_read_all(ck), state)


# ------------------------------------------------------------------------------------------- torch in
@pytest.mark.parametrize(
    ("name", "legacy", "fmt"),
    [
        ("m.pth", False, "torch-zip"),
        ("m.pt", True, "torch-legacy"),
        ("pytorch_model.bin", False, "torch-zip"),
        ("last.ckpt", False, "torch-zip"),
        ("model_best.pth.tar", True, "torch-legacy"),
        ("no_extension", False, "torch-zip"),
        ("looks_like.safetensors", True, "torch-legacy"),  # magic bytes win over the extension
    ],
)
def test_torch_files_by_magic_bytes(tmp_path: Path, name: str, legacy: bool, fmt: str) -> None:
    state = _synthetic()
    path = tmp_path / name
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    with read_checkpoint(path) as ck:
        assert ck.format == fmt
        assert ck.metadata == {}
        assert ck.sha256 == sha256_of(path)
        _assert_same(_read_all(ck), state)


def test_real_model_state_dict_in_torch_zip(tmp_path: Path, state_dict_of: Callable[..., dict]) -> None:
    state = state_dict_of("torchvision:resnet18", num_classes=7)
    path = tmp_path / "resnet.pth"
    torch.save(state, path)
    with read_checkpoint(path) as ck:
        assert ck.infos["fc.weight"] == TensorInfo(torch.float32, (7, 512))
        _assert_same(_read_all(ck), state)


def _training_checkpoint(
    state: dict[str, torch.Tensor], ema: dict[str, torch.Tensor] | None
) -> dict[str, Any]:
    import numpy as np

    wrapped = {
        f"module._orig_mod.{k}" if i % 2 else f"_orig_mod.module.{k}": v
        for i, (k, v) in enumerate(state.items())
    }
    out: dict[str, Any] = {
        "epoch": 12,
        "arch": "resnet18",
        "state_dict": wrapped,
        "optimizer": {
            "state": {0: {"momentum_buffer": torch.ones(3)}},
            "param_groups": [{"lr": 0.1, "params": [0]}],
        },
        "version": 2,
        "args": argparse.Namespace(model="resnet18", lr=0.1, sched="cosine", input_size=None, mean=(0.5,)),
        "metric": np.float64(71.25),
        "best_epoch": np.int64(9),
        "saver": {"checkpoint_files": [["x.pth.tar", 71.25]]},
    }
    if ema is not None:
        out["state_dict_ema"] = {f"module.{k}": v for k, v in ema.items()}
    return out


@pytest.mark.parametrize("legacy", [False, True])
def test_training_checkpoint_uses_plain_weights_and_notes_ema(tmp_path: Path, legacy: bool) -> None:
    plain, ema = _synthetic(0), _synthetic(1)
    path = tmp_path / "model_best.pth.tar"
    torch.save(_training_checkpoint(plain, ema), path, _use_new_zipfile_serialization=not legacy)

    with read_checkpoint(path) as ck:
        _assert_same(_read_all(ck), plain)
        notes = " | ".join(ck.notes)
        assert (
            "checkpoint also has EMA weights (state_dict_ema); used the plain weights (state_dict)"
            " — pass --ema to use them" in ck.notes
        )
        assert "'module.'" in notes and "'_orig_mod.'" in notes
        assert f"from {len(plain)} keys" in notes
        assert "optimizer" in notes  # ignored entries are named

    with read_checkpoint(path, ema=True) as ck:
        _assert_same(_read_all(ck), ema)
        assert any("EMA" in n and "state_dict_ema" in n for n in ck.notes)


def test_ema_requested_but_missing_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "train.pth"
    torch.save(_training_checkpoint(_synthetic(), None), path)
    with read_checkpoint(path) as ck:
        assert not any("EMA" in n for n in ck.notes)
    with pytest.raises(InputError, match="no EMA weights") as info:
        read_checkpoint(path, ema=True)
    assert "state_dict" in info.value.message  # top-level keys are listed
    assert info.value.hint == "drop --ema"
    save_file(_synthetic(), str(tmp_path / "m.safetensors"))
    with pytest.raises(InputError, match="EMA"):
        read_checkpoint(tmp_path / "m.safetensors", ema=True)


@pytest.mark.parametrize(
    ("container", "note"),
    [
        ("model", "'model'"),
        ("model_state_dict", "'model_state_dict'"),
        ("net", "'net'"),
        ("params", "'params'"),
    ],
)
def test_weights_found_under_common_container_keys(tmp_path: Path, container: str, note: str) -> None:
    state = _synthetic()
    path = tmp_path / "c.pth"
    torch.save({container: state, "epoch": 3, "lr_scheduler": {"last_epoch": 3}}, path)
    with read_checkpoint(path) as ck:
        _assert_same(_read_all(ck), state)
        assert any(note in n for n in ck.notes)


def test_nested_container_and_only_ema(tmp_path: Path) -> None:
    state = _synthetic()
    torch.save({"model": {"state_dict": state}}, tmp_path / "nested.pth")
    with read_checkpoint(tmp_path / "nested.pth") as ck:
        _assert_same(_read_all(ck), state)
        assert any("model.state_dict" in n for n in ck.notes)
    torch.save({"model_ema": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "ema_only.pth")
    with read_checkpoint(tmp_path / "ema_only.pth") as ck:
        _assert_same(_read_all(ck), state)
        assert any("only EMA" in n for n in ck.notes)


def test_state_dict_with_non_tensor_entries_and_parameters(tmp_path: Path) -> None:
    state = _synthetic()
    obj: dict[str, Any] = {
        k: torch.nn.Parameter(v, requires_grad=v.is_floating_point()) for k, v in state.items()
    }
    obj["_extra"] = "text"
    torch.save(obj, tmp_path / "p.pth")
    with read_checkpoint(tmp_path / "p.pth") as ck:
        got = _read_all(ck)
        _assert_same(got, state)
        assert not any(t.requires_grad for t in got.values())
        assert any("1 non-tensor" in n for n in ck.notes)


def test_no_tensors_lists_the_top_level_keys(tmp_path: Path) -> None:
    torch.save({"epoch": 3, "best_acc": 0.5, "optimizer": {"state": {}}}, tmp_path / "x.pth")
    with pytest.raises(InputError, match="no tensors found") as info:
        read_checkpoint(tmp_path / "x.pth")
    assert "best_acc, epoch, optimizer" in info.value.message
    torch.save([torch.ones(2)], tmp_path / "list.pth")
    with pytest.raises(InputError, match="holds a list"):
        read_checkpoint(tmp_path / "list.pth")


def test_prefix_collision_is_an_input_error(tmp_path: Path) -> None:
    torch.save({"module.a": torch.ones(1), "a": torch.zeros(1)}, tmp_path / "c.pth")
    with pytest.raises(InputError, match="both become 'a'"):
        read_checkpoint(tmp_path / "c.pth")


# ------------------------------------------------------------------------------------- unsafe pickles
@pytest.mark.parametrize("kind", ["zip", "legacy", "raw-pickle"])
def test_unsafe_pickle_is_refused_and_never_runs(tmp_path: Path, kind: str) -> None:
    marker = tmp_path / "PWNED"
    payload = {"state_dict": {"w": torch.ones(2)}, "evil": _Evil(marker)}
    path = tmp_path / "evil.pth"
    if kind == "raw-pickle":
        path.write_bytes(pickle.dumps(_Evil(marker), protocol=2))
    else:
        torch.save(payload, path, _use_new_zipfile_serialization=kind == "zip")
    with pytest.raises(InputError) as info:
        read_checkpoint(path)
    assert not marker.exists()
    assert f"global {os.system.__module__}.system" in info.value.message
    assert "never unpickles code" in (info.value.hint or "")
    assert "safetensors" in (info.value.hint or "")
    assert isinstance(info.value.__cause__, pickle.UnpicklingError)


def test_class_not_on_the_allow_list_is_named(tmp_path: Path) -> None:
    from pathlib import PurePosixPath

    torch.save({"w": torch.ones(2), "data_dir": PurePosixPath("/data/imagenet")}, tmp_path / "c.pth")
    with pytest.raises(InputError, match=r"pathlib\.PurePosixPath"):
        read_checkpoint(tmp_path / "c.pth")


def test_pickled_module_is_refused_with_a_state_dict_hint(tmp_path: Path) -> None:
    torch.save(torch.nn.Linear(2, 3), tmp_path / "full_model.pth")
    with pytest.raises(InputError, match=r"torch\.nn\.") as info:
        read_checkpoint(tmp_path / "full_model.pth")
    assert "state dict" in (info.value.hint or "")


# ------------------------------------------------------------------------------------ corrupt input
def _safetensors_bytes(header: dict[str, Any], data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


_F32x2 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
_BAD_SAFETENSORS = {
    "huge header length": struct.pack("<Q", 2**40) + b"{}",
    "header past the end": struct.pack("<Q", 500) + b'{"a": 1}',
    "not json": struct.pack("<Q", 4) + b"{abc",
    "not utf-8": struct.pack("<Q", 4) + b"{\xff\xfe}",
    "not an object": struct.pack("<Q", 2) + b"{]",
    "unknown dtype": _safetensors_bytes({"a": {**_F32x2, "dtype": "F99"}}, bytes(8)),
    "shape vs bytes": _safetensors_bytes({"a": {**_F32x2, "shape": [3]}}, bytes(8)),
    "negative shape": _safetensors_bytes({"a": {**_F32x2, "shape": [-2]}}, bytes(8)),
    "bool offsets": _safetensors_bytes({"a": {**_F32x2, "data_offsets": [False, 8]}}, bytes(8)),
    "missing field": _safetensors_bytes({"a": {"dtype": "F32", "shape": [2]}}, bytes(8)),
    "extra field": _safetensors_bytes({"a": {**_F32x2, "x": 1}}, bytes(8)),
    "truncated data": _safetensors_bytes({"a": _F32x2}, bytes(5)),
    "trailing data": _safetensors_bytes({"a": _F32x2}, bytes(12)),
    "offset past end": _safetensors_bytes({"a": {**_F32x2, "data_offsets": [4, 12]}}, bytes(8)),
    "overlap": _safetensors_bytes(
        {"a": _F32x2, "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, bytes(12)
    ),
    "gap": _safetensors_bytes(
        {"a": _F32x2, "b": {"dtype": "F32", "shape": [1], "data_offsets": [12, 16]}}, bytes(16)
    ),
    "metadata not strings": _safetensors_bytes({"__metadata__": {"a": 1}, "a": _F32x2}, bytes(8)),
}


@pytest.mark.parametrize("case", sorted(_BAD_SAFETENSORS))
def test_invalid_safetensors_headers_are_input_errors(tmp_path: Path, case: str) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(_BAD_SAFETENSORS[case])
    with pytest.raises(InputError):
        read_checkpoint(path)


def test_duplicate_key_header_is_rejected(tmp_path: Path) -> None:
    entry = '{"dtype":"F32","shape":[1],"data_offsets":[0,4]}'
    raw = ('{"a":' + entry + ',"a":' + entry + "}").encode()
    (tmp_path / "dup.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(4))
    with pytest.raises(InputError, match="duplicate key"):
        read_checkpoint(tmp_path / "dup.safetensors")


def test_valid_handmade_header_is_accepted(tmp_path: Path) -> None:
    # The same builder as the bad cases, but valid: guards against the bad cases failing for another reason.
    data = struct.pack("<2f", 1.0, 2.0) + struct.pack("<h", 3)
    header = {
        "a": _F32x2,
        "b": {"dtype": "I16", "shape": [], "data_offsets": [8, 10]},
        "__metadata__": {"k": "v"},
    }
    (tmp_path / "ok.safetensors").write_bytes(_safetensors_bytes(header, data))
    with read_checkpoint(tmp_path / "ok.safetensors") as ck:
        assert ck.tensor("a").tolist() == [1.0, 2.0]
        assert ck.tensor("b").item() == 3
        assert ck.metadata == {"k": "v"}


def _torch_bytes(legacy: bool) -> bytes:
    buf = io.BytesIO()
    torch.save(_synthetic(), buf, _use_new_zipfile_serialization=not legacy)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("case", "content", "match"),
    [
        ("empty", b"", "empty"),
        ("random", b"hello world, not a checkpoint at all", "not a checkpoint"),
        ("lfs", b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 12\n", "Git LFS"),
        ("short", b"\x01\x02", "not a checkpoint"),
    ],
)
def test_not_a_checkpoint(tmp_path: Path, case: str, content: bytes, match: str) -> None:
    path = tmp_path / f"{case}.pth"
    path.write_bytes(content)
    with pytest.raises(InputError, match=match):
        read_checkpoint(path)


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("cut", [0.05, 0.5, 0.95])
def test_truncated_torch_files(tmp_path: Path, legacy: bool, cut: float) -> None:
    full = _torch_bytes(legacy)
    path = tmp_path / "t.pth"
    path.write_bytes(full[: int(len(full) * cut)])
    with pytest.raises(InputError):
        read_checkpoint(path)


def test_corrupt_zip_central_directory(tmp_path: Path) -> None:
    full = bytearray(_torch_bytes(False))
    end = full.rfind(b"PK\x05\x06")
    full[end : end + 22] = bytes(22)
    (tmp_path / "z.pth").write_bytes(bytes(full))
    with pytest.raises(InputError, match="cannot load torch checkpoint"):
        read_checkpoint(tmp_path / "z.pth")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_property_damaged_files_raise_input_error_or_load(tmp_path: Path, data: st.DataObject) -> None:
    """Truncating or flipping bytes of any format never lets another exception type escape."""
    kind = data.draw(st.sampled_from(["zip", "legacy", "safetensors"]))
    if kind == "safetensors":
        raw = bytearray(_safetensors_bytes({"a": _F32x2, "__metadata__": {"k": "v"}}, bytes(8)))
    else:
        raw = bytearray(_torch_bytes(kind == "legacy"))
    if data.draw(st.booleans()):
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    else:
        for pos in data.draw(st.lists(st.integers(0, len(raw) - 1), min_size=1, max_size=4)):
            raw[pos] ^= data.draw(st.integers(1, 255))
    path = tmp_path / "damaged.bin"
    path.write_bytes(bytes(raw))
    try:
        with read_checkpoint(path) as ck:
            for key in ck.infos:
                ck.tensor(key)
    except InputError:
        pass


def test_missing_path_and_directories(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        read_checkpoint(tmp_path / "nope.safetensors")
    (tmp_path / "d").mkdir()
    with pytest.raises(InputError, match=r"no model\.safetensors"):
        read_checkpoint(tmp_path / "d")
    save_file(_synthetic(), str(tmp_path / "d" / "model.safetensors"))
    with read_checkpoint(tmp_path / "d") as ck:
        assert ck.format == "safetensors"
        _assert_same(_read_all(ck), _synthetic())


# --------------------------------------------------------------------------------------- stdin/stdout
def test_stdin_is_spooled_hashed_and_cleaned_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    state = _synthetic()
    src = tmp_path / "in.safetensors"
    save_file(state, str(src), metadata={"from": "stdin"})
    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    monkeypatch.setattr(sys, "stdin", SimpleNamespace(buffer=io.BytesIO(src.read_bytes())))
    with read_checkpoint("-") as ck:
        assert ck.source == "<stdin>"
        assert ck.sha256 == sha256_of(src)
        assert ck.metadata == {"from": "stdin"}
        assert list(spool.iterdir()) == []  # the spool file is gone already; the mapping stays valid
        _assert_same(_read_all(ck), state)

    torch.save(_training_checkpoint(state, state), tmp_path / "t.pth")
    monkeypatch.setattr(sys, "stdin", SimpleNamespace(buffer=io.BytesIO((tmp_path / "t.pth").read_bytes())))
    with read_checkpoint("-", ema=True) as ck:
        assert ck.format == "torch-zip"
        _assert_same(_read_all(ck), state)
    assert list(spool.iterdir()) == []

    monkeypatch.setattr(sys, "stdin", SimpleNamespace(buffer=io.BytesIO(b"")))
    with pytest.raises(InputError, match="stdin is empty"):
        read_checkpoint("-")
    monkeypatch.setattr(sys, "stdin", SimpleNamespace(buffer=io.BytesIO(b"garbage" * 10)))
    with pytest.raises(InputError, match="not a checkpoint"):
        read_checkpoint("-")
    assert list(spool.iterdir()) == []


def test_stdin_spool_interrupted_right_after_creation_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The spool file is named before it is created: a signal landing just after creation still finds it
    (``tempfile.mkstemp`` would only return the name after creating the file)."""
    import tempfile

    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    monkeypatch.setattr(sys, "stdin", SimpleNamespace(buffer=io.BytesIO(b"x" * 100)))
    real_open = os.open

    def open_then_interrupt(path: Any, flags: int, *args: Any) -> int:
        fd = real_open(path, flags, *args)
        if flags & os.O_CREAT:
            os.close(fd)
            raise KeyboardInterrupt
        return fd

    monkeypatch.setattr(os, "open", open_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        read_checkpoint("-")
    assert list(spool.iterdir()) == []

    monkeypatch.setattr(os, "open", real_open)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing"))
    with pytest.raises(InputError, match="cannot spool stdin to a temporary file") as info:
        read_checkpoint("-")
    assert "TMPDIR" in (info.value.hint or "")


def test_stdout_streams_the_same_bytes_as_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = _synthetic()
    sink = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", SimpleNamespace(buffer=sink))
    result = write_checkpoint("-", _entries(state), metadata={"m": "1"})
    file_result = write_checkpoint(tmp_path / "f.safetensors", _entries(state), metadata={"m": "1"})
    assert sink.getvalue() == (tmp_path / "f.safetensors").read_bytes()
    assert (result.path, result.format, result.nbytes) == ("-", "safetensors", file_result.nbytes)
    _assert_same(load_bytes(sink.getvalue()), state)


# --------------------------------------------------------------------------------------- torch out
def test_torch_output_is_a_plain_dict_of_own_sized_tensors(tmp_path: Path) -> None:
    big = {"big": torch.randn(256, 256), "small": torch.randn(4)}
    save_file(big, str(tmp_path / "src.safetensors"))
    with read_checkpoint(tmp_path / "src.safetensors") as ck:
        entries = [OutTensor("small", torch.float32, (4,), lambda: ck.tensor("small"), origin="small")]
        result = write_checkpoint(tmp_path / "out.pth", entries, metadata={"ignored": "yes"})
    assert result.format == "torch-zip"
    assert result.nbytes == (tmp_path / "out.pth").stat().st_size
    loaded = torch.load(tmp_path / "out.pth", weights_only=True)
    assert type(loaded) is dict
    _assert_same(loaded, {"small": big["small"]})
    # saving a view must not drag the whole mapped source file (256 KiB) into the output
    assert result.nbytes < 10_000


def test_dtype_safetensors_cannot_store(tmp_path: Path) -> None:
    state = {"z": torch.randn(3, dtype=torch.complex128)}
    with pytest.raises(OutputError, match="safetensors cannot store"):
        write_checkpoint(tmp_path / "c.safetensors", _entries(state), metadata={})
    assert list(tmp_path.iterdir()) == []
    write_checkpoint(tmp_path / "c.pth", _entries(state), metadata={})
    with read_checkpoint(tmp_path / "c.pth") as ck:
        _assert_same(_read_all(ck), state)


# ------------------------------------------------------------------------------------------ atomicity
@pytest.mark.parametrize("name", ["out.safetensors", "out.pth"])
@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt(), SystemExit(143)])
def test_failure_mid_write_leaves_nothing(tmp_path: Path, name: str, exc: BaseException) -> None:
    state = _synthetic()

    def fail() -> torch.Tensor:
        raise exc

    entries = [*_entries(state), OutTensor("zz.last", torch.float32, (2,), fail)]
    with pytest.raises(type(exc)):
        write_checkpoint(tmp_path / name, entries, metadata={})
    assert list(tmp_path.iterdir()) == []


def test_sigterm_during_write_leaves_nothing(tmp_path: Path) -> None:
    def on_term(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    def killed() -> torch.Tensor:
        os.kill(os.getpid(), signal.SIGTERM)
        return torch.ones(2)  # the handler raises before (or right after) this returns

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        entries = [*_entries(_synthetic()), OutTensor("zz", torch.float32, (2,), killed)]
        with pytest.raises(SystemExit):
            write_checkpoint(tmp_path / "out.safetensors", entries, metadata={})
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_needs_force(tmp_path: Path) -> None:
    dest = tmp_path / "out.safetensors"
    dest.write_bytes(b"precious")
    with pytest.raises(OutputError, match="exists") as info:
        write_checkpoint(dest, _entries(_synthetic()), metadata={})
    assert info.value.hint == "pass --force to overwrite"
    assert dest.read_bytes() == b"precious"
    result = write_checkpoint(dest, _entries(_synthetic()), metadata={}, force=True)
    assert result.nbytes == dest.stat().st_size
    _assert_same(load_file(str(dest)), _synthetic())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.safetensors"]
    mask = os.umask(0)
    os.umask(mask)
    assert dest.stat().st_mode & 0o777 == 0o666 & ~mask  # not mkstemp's 0600


def test_overwriting_the_mapped_source_keeps_it_readable(tmp_path: Path) -> None:
    state = _synthetic()
    path = tmp_path / "same.safetensors"
    save_file(state, str(path))
    original_sha = sha256_of(path)
    with read_checkpoint(path) as ck:
        held = ck.tensor("head.weight")
        changed = [
            e if e.name != "head.weight" else OutTensor(e.name, e.dtype, e.shape, lambda: -held)
            for e in _entries_from(ck)
        ]
        write_checkpoint(path, changed, metadata={}, force=True)
        assert torch.equal(held, state["head.weight"])  # the old mapping still holds the old bytes
        assert ck.sha256 == original_sha  # hashed from the file opened at read time, not the new one
    assert torch.equal(load_file(str(path))["head.weight"], -state["head.weight"])


def test_output_path_problems(tmp_path: Path) -> None:
    entries = _entries(_synthetic())
    with pytest.raises(OutputError, match="does not exist"):
        write_checkpoint(tmp_path / "missing" / "x.safetensors", entries, metadata={})
    (tmp_path / "adir.safetensors").mkdir()
    with pytest.raises(OutputError, match="is a directory"):
        write_checkpoint(tmp_path / "adir.safetensors", entries, metadata={}, force=True)
    with pytest.raises(UsageError, match=r"\.safetensors, \.pth, \.pt, \.bin"):
        write_checkpoint(tmp_path / "x.npz", entries, metadata={})
    with pytest.raises(ValueError, match="duplicate"):
        write_checkpoint(tmp_path / "x.safetensors", [*entries, entries[0]], metadata={})
    wrong = [OutTensor("a", torch.float32, (3,), lambda: torch.ones(2))]
    with pytest.raises(ValueError, match="declared"):
        write_checkpoint(tmp_path / "x.safetensors", wrong, metadata={})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir.safetensors"]


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores permissions")
def test_unwritable_directory(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="permission denied"):
            write_checkpoint(locked / "x.safetensors", _entries(_synthetic()), metadata={})
    finally:
        locked.chmod(0o700)


def test_disk_full_is_an_output_error_with_a_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    real_write = ckmod._Counter.write
    calls = {"n": 0}

    def write(self: Any, data: bytes) -> int:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, data)

    monkeypatch.setattr(ckmod._Counter, "write", write)
    with pytest.raises(OutputError, match="no space left") as info:
        write_checkpoint(tmp_path / "x.safetensors", _entries(_synthetic()), metadata={})
    assert "free space" in (info.value.hint or "")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------- file-to-file copies
def _spy_copy_file_range(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the bytes that ``os.copy_file_range`` copies from now on."""
    copied: list[int] = []
    real = os.copy_file_range

    def spy(
        src: int, dst: int, count: int, offset_src: int | None = None, offset_dst: int | None = None
    ) -> int:
        n = real(src, dst, count, offset_src, offset_dst)
        copied.append(n)
        return n

    monkeypatch.setattr(os, "copy_file_range", spy)
    return copied


@pytest.mark.skipif(not hasattr(os, "copy_file_range"), reason="copy_file_range is Linux-only")
def test_unchanged_tensors_are_copied_file_to_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = _synthetic()
    save_file(state, str(tmp_path / "src.safetensors"))
    monkeypatch.setattr(ckmod, "COPY_SPAN_BYTES", 24)  # several pieces per tensor
    copied = _spy_copy_file_range(monkeypatch)
    new_head = torch.randn(3, 16)
    with read_checkpoint(tmp_path / "src.safetensors") as ck:
        entries = [e for e in _entries_from(ck) if e.name != "head.weight"]
        entries.append(OutTensor("head.weight", torch.float32, (3, 16), lambda: new_head, origin=None))
        write_checkpoint(tmp_path / "kernel.safetensors", entries, metadata={"m": "1"}, source=ck)
        assert sum(copied) == sum(v.nbytes for k, v in state.items() if k != "head.weight")
        copied.clear()
        write_checkpoint(tmp_path / "plain.safetensors", entries, metadata={"m": "1"})  # no source
        assert copied == []
    kernel = (tmp_path / "kernel.safetensors").read_bytes()
    assert kernel == (tmp_path / "plain.safetensors").read_bytes()
    _assert_same(load_bytes(kernel), {**state, "head.weight": new_head})


@pytest.mark.skipif(not hasattr(os, "copy_file_range"), reason="copy_file_range is Linux-only")
def test_tensors_consecutive_in_the_source_are_copied_as_one_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = {f"layer{i}.weight": torch.full((100,), float(i)) for i in range(6)}
    save_file(state, str(tmp_path / "src.safetensors"))  # one dtype: stored in name order
    copied = _spy_copy_file_range(monkeypatch)
    with read_checkpoint(tmp_path / "src.safetensors") as ck:
        entries = [e for e in _entries_from(ck) if e.name != "layer3.weight"]
        entries.append(OutTensor("layer3.weight", torch.float32, (7,), lambda: torch.ones(7)))
        write_checkpoint(tmp_path / "out.safetensors", entries, metadata={}, source=ck)
    assert copied == [3 * 400, 2 * 400]  # layers 0-2, then 4-5: the new layer 3 splits the runs
    _assert_same(load_file(str(tmp_path / "out.safetensors")), {**state, "layer3.weight": torch.ones(7)})


@pytest.mark.parametrize("how", ["refused", "missing"])
def test_copies_fall_back_to_reads_and_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """Where the kernel refuses (another filesystem, a pipe) or lacks copy_file_range, the same bytes
    are copied through a small buffer."""
    import errno

    state = _synthetic()
    save_file(state, str(tmp_path / "src.safetensors"))
    with read_checkpoint(tmp_path / "src.safetensors") as ck:
        write_checkpoint(tmp_path / "want.safetensors", _entries_from(ck), metadata={}, source=ck)
    refused: list[int] = []
    if how == "missing":
        monkeypatch.delattr(os, "copy_file_range", raising=False)
    else:

        def refuse(*args: Any, **kwargs: Any) -> int:
            refused.append(1)
            raise OSError(errno.EXDEV, "Invalid cross-device link")

        monkeypatch.setattr(os, "copy_file_range", refuse)
    monkeypatch.setattr(ckmod, "COPY_BYTES", 7)  # many reads per tensor
    with read_checkpoint(tmp_path / "src.safetensors") as ck:
        write_checkpoint(tmp_path / "got.safetensors", _entries_from(ck), metadata={}, source=ck)
    assert (tmp_path / "got.safetensors").read_bytes() == (tmp_path / "want.safetensors").read_bytes()
    assert len(refused) == (1 if how == "refused" else 0)  # refused once, then not asked again


@pytest.mark.parametrize("kernel", [True, False])
def test_a_source_truncated_while_copying_is_an_input_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kernel: bool
) -> None:
    state = {"a": torch.randn(64), "b": torch.randn(64)}
    src = tmp_path / "src.safetensors"
    save_file(state, str(src))
    if not kernel:
        monkeypatch.delattr(os, "copy_file_range", raising=False)
    with read_checkpoint(src) as ck:
        os.truncate(src, src.stat().st_size - 100)  # "b" now ends past the end of the file
        entries = [
            OutTensor(k, i.dtype, i.shape, lambda: torch.zeros(64), origin=k) for k, i in ck.infos.items()
        ]
        with pytest.raises(InputError, match="changed while being read"):
            write_checkpoint(tmp_path / "out.safetensors", entries, metadata={}, source=ck)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src.safetensors"]


# ---------------------------------------------------------------------------------------- sharded
def _make_sharded(directory: Path, state: dict[str, torch.Tensor], groups: list[list[str]]) -> Path:
    directory.mkdir()
    weight_map = {}
    n = len(groups)
    for i, keys in enumerate(groups, 1):
        name = f"model-{i:05d}-of-{n:05d}.safetensors"
        save_file({k: state[k] for k in keys}, str(directory / name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(keys, name))
    total = sum(state[k].numel() * state[k].element_size() for k in state)
    index = {"metadata": {"total_size": total, "origin": "test"}, "weight_map": weight_map}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index))
    return directory / "model.safetensors.index.json"


_GROUPS = [
    ["stem.conv.weight", "stem.bn.running_var", "stem.bn.num_batches_tracked"],
    ["blocks.0.fc.weight", "blocks.0.fc.bias", "blocks.0.mask", "blocks.0.idx", "empty"],
    ["head.weight", "head.bias"],
]


def test_sharded_read_by_index_or_directory(tmp_path: Path) -> None:
    state = _synthetic()
    index = _make_sharded(tmp_path / "sharded", state, _GROUPS)
    for source in (index, tmp_path / "sharded"):
        with read_checkpoint(source) as ck:
            assert ck.format == "safetensors-sharded"
            assert ck.metadata == {"origin": "test", "format": "pt"}
            _assert_same(_read_all(ck), state)
            shards = sorted(
                p for p in (tmp_path / "sharded").iterdir() if p.name.endswith("-of-00003.safetensors")
            )
            manifest = f"{sha256_of(index)}  {index.name}\n" + "".join(
                f"{sha256_of(p)}  {p.name}\n" for p in shards
            )
            assert ck.sha256 == hashlib.sha256(manifest.encode()).hexdigest()


def test_sharded_read_problems(tmp_path: Path) -> None:
    state = _synthetic()
    index = _make_sharded(tmp_path / "s", state, _GROUPS)
    (tmp_path / "s" / "model-00002-of-00003.safetensors").unlink()
    with pytest.raises(InputError, match=r"model-00002-of-00003\.safetensors listed in .* is missing"):
        read_checkpoint(index)

    data = json.loads(index.read_text())
    data["weight_map"]["head.bias"] = "../elsewhere.safetensors"
    index.write_text(json.dumps(data))
    with pytest.raises(InputError, match="not a plain file name"):
        read_checkpoint(index)

    index2 = _make_sharded(tmp_path / "s2", state, _GROUPS)
    data = json.loads(index2.read_text())
    del data["weight_map"]["head.bias"]  # the shard still holds it
    index2.write_text(json.dumps(data))
    with pytest.raises(InputError, match="does not list"):
        read_checkpoint(index2)

    index2.write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        read_checkpoint(index2)
    (tmp_path / "s2" / "other.safetensors.index.json").write_text("{}")
    with pytest.raises(InputError, match="several indexes"):
        read_checkpoint(tmp_path / "s2")


@pytest.mark.parametrize("link", [False, True])
def test_sharded_write_copies_unchanged_shards_and_rewrites_the_rest(tmp_path: Path, link: bool) -> None:
    state = _synthetic()
    _make_sharded(tmp_path / "src", state, _GROUPS)
    new_head = torch.randn(4, 16)
    with read_checkpoint(tmp_path / "src") as ck:
        entries = [e for e in _entries_from(ck) if not e.name.startswith("head.")]
        entries.append(OutTensor("head.weight", torch.float32, (4, 16), lambda: new_head))
        entries.append(
            OutTensor("head.extra", torch.float16, (2,), lambda: torch.ones(2, dtype=torch.float16))
        )
        result = write_checkpoint(tmp_path / "out", entries, metadata={"rehead": "4"}, source=ck, link=link)

    out = tmp_path / "out"
    assert result.format == "safetensors-sharded"
    names = sorted(p.name for p in out.iterdir())
    assert names == ["model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                     "model-00003-of-00003.safetensors", "model.safetensors.index.json"]  # fmt: skip
    for shard in names[:2]:
        src, dst = tmp_path / "src" / shard, out / shard
        assert dst.read_bytes() == src.read_bytes()
        assert (os.stat(src).st_ino == os.stat(dst).st_ino) is link
    with safe_open(str(out / names[2]), framework="pt") as f:
        assert sorted(f.keys()) == ["head.extra", "head.weight"]
        assert f.metadata() == {"rehead": "4"}
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert index["weight_map"]["head.weight"] == names[2]
    assert index["weight_map"]["stem.conv.weight"] == names[0]
    assert "head.bias" not in index["weight_map"]
    want = {k: v for k, v in state.items() if not k.startswith("head.")}
    want |= {"head.weight": new_head, "head.extra": torch.ones(2, dtype=torch.float16)}
    assert index["metadata"]["total_size"] == sum(v.numel() * v.element_size() for v in want.values())
    with read_checkpoint(out) as back:
        _assert_same(_read_all(back), want)
        assert back.metadata["rehead"] == "4"
    assert result.nbytes == sum(p.stat().st_size for p in out.iterdir())
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())


def test_sharded_write_removed_key_rewrites_its_shard_and_force(tmp_path: Path) -> None:
    state = _synthetic()
    _make_sharded(tmp_path / "src", state, _GROUPS)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old-file").write_text("x")
    with read_checkpoint(tmp_path / "src") as ck:
        entries = [e for e in _entries_from(ck) if e.name != "stem.bn.running_var"]
        with pytest.raises(OutputError, match="exists"):
            write_checkpoint(tmp_path / "out", entries, metadata={}, source=ck)
        write_checkpoint(tmp_path / "out", entries, metadata={}, source=ck, force=True)
    out = tmp_path / "out"
    assert not (out / "old-file").exists()
    first = "model-00001-of-00003.safetensors"
    assert (out / first).read_bytes() != (tmp_path / "src" / first).read_bytes()
    with safe_open(str(out / first), framework="pt") as f:
        assert sorted(f.keys()) == ["stem.bn.num_batches_tracked", "stem.conv.weight"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"]


@pytest.mark.skipif(
    ckmod._renameat2_func() is None, reason="needs Linux renameat2; the fallback is tested below"
)
def test_sharded_force_swaps_the_directory_in_one_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With renameat2, --force exchanges old and new in one call: no moment without the output."""
    _make_sharded(tmp_path / "src", _synthetic(), _GROUPS)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old-file").write_text("x")

    def no_plain_rename(*args: object) -> None:
        raise AssertionError(f"os.rename{args}: the swap took two steps")

    monkeypatch.setattr(ckmod.os, "rename", no_plain_rename)
    with read_checkpoint(tmp_path / "src") as ck:
        write_checkpoint(tmp_path / "out", _entries_from(ck), metadata={}, source=ck, force=True)
    assert not (tmp_path / "out" / "old-file").exists() and (tmp_path / "out" / ckmod.INDEX_NAME).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"]


def test_sharded_force_without_renameat2_falls_back_to_two_renames(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _make_sharded(tmp_path / "src", _synthetic(), _GROUPS)
    monkeypatch.setattr(ckmod, "_renameat2_func", lambda: None)
    with read_checkpoint(tmp_path / "src") as ck:
        write_checkpoint(tmp_path / "out", _entries_from(ck), metadata={}, source=ck)  # new: one rename
        (tmp_path / "out" / "old-file").write_text("x")
        with pytest.raises(OutputError, match="exists"):
            write_checkpoint(tmp_path / "out", _entries_from(ck), metadata={}, source=ck)
        write_checkpoint(tmp_path / "out", _entries_from(ck), metadata={}, source=ck, force=True)
    assert not (tmp_path / "out" / "old-file").exists() and (tmp_path / "out" / ckmod.INDEX_NAME).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"]


@pytest.mark.skipif(ckmod._renameat2_func() is None, reason="needs Linux renameat2 (glibc 2.28+)")
def test_a_directory_that_appears_before_the_rename_is_not_replaced(tmp_path: Path) -> None:
    """Plain rename() silently replaces an empty directory; the claim uses RENAME_NOREPLACE instead."""
    (tmp_path / "new").mkdir()
    (tmp_path / "appeared").mkdir()
    with pytest.raises(FileExistsError):
        ckmod._renameat2(tmp_path / "new", tmp_path / "appeared", ckmod._RENAME_NOREPLACE)
    assert (tmp_path / "new").is_dir() and (tmp_path / "appeared").is_dir()


def test_sharded_write_failure_leaves_nothing(tmp_path: Path) -> None:
    _make_sharded(tmp_path / "src", _synthetic(), _GROUPS)

    def fail() -> torch.Tensor:
        raise KeyboardInterrupt

    with read_checkpoint(tmp_path / "src") as ck:
        entries = [e for e in _entries_from(ck) if e.name != "head.weight"]
        entries.append(OutTensor("head.weight", torch.float32, (10, 16), fail))
        with pytest.raises(KeyboardInterrupt):
            write_checkpoint(tmp_path / "out", entries, metadata={}, source=ck)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_sharded_source_to_single_file(tmp_path: Path) -> None:
    state = _synthetic()
    _make_sharded(tmp_path / "src", state, _GROUPS)
    with read_checkpoint(tmp_path / "src") as ck:
        result = write_checkpoint(tmp_path / "one.safetensors", _entries_from(ck), metadata={}, source=ck)
    assert result.format == "safetensors"
    _assert_same(load_file(str(tmp_path / "one.safetensors")), state)


def test_closed_checkpoint_and_unknown_key(tmp_path: Path) -> None:
    save_file({"a": torch.ones(1)}, str(tmp_path / "m.safetensors"))
    ck = read_checkpoint(tmp_path / "m.safetensors")
    with pytest.raises(KeyError, match="no tensor 'b'"):
        ck.tensor("b")
    ck.close()
    with pytest.raises(ValueError, match="closed"):
        ck.tensor("a")
    with pytest.raises(ValueError, match="closed"):
        ck.sha256  # noqa: B018


def test_torchscript_archive_is_refused_with_a_state_dict_hint(tmp_path: Path) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated; old files still exist
        torch.jit.save(torch.jit.script(torch.nn.Linear(2, 3)), str(tmp_path / "scripted.pt"))
    with pytest.raises(InputError, match="TorchScript") as info:
        read_checkpoint(tmp_path / "scripted.pt")
    assert "state_dict" in (info.value.hint or "")


def test_stdout_that_is_a_terminal_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    sink = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", SimpleNamespace(buffer=sink, isatty=lambda: True))
    with pytest.raises(OutputError, match="terminal"):
        write_checkpoint("-", _entries(_synthetic()), metadata={})
    assert sink.getvalue() == b""


def test_permission_denied_is_an_output_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    # Root ignores permissions, so deny the creation of the temporary file / directory itself.
    real_open, real_mkdir = os.open, os.mkdir

    def open_denied(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if str(path).endswith(".tmp") and flags & os.O_CREAT:
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_open(path, flags, *args, **kwargs)

    def mkdir_denied(path: Any, *args: Any, **kwargs: Any) -> None:
        if str(path).endswith(".tmp"):
            raise PermissionError(errno.EACCES, "Permission denied")
        real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_denied)
    monkeypatch.setattr(os, "mkdir", mkdir_denied)
    with pytest.raises(OutputError, match="permission denied"):
        write_checkpoint(tmp_path / "x.safetensors", _entries(_synthetic()), metadata={})
    _make_sharded(tmp_path / "src", _synthetic(), _GROUPS)
    with read_checkpoint(tmp_path / "src") as ck, pytest.raises(OutputError, match="permission denied"):
        write_checkpoint(tmp_path / "out", _entries_from(ck), metadata={}, source=ck)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_sharded_output_needs_a_directory_or_a_known_extension(tmp_path: Path) -> None:
    _make_sharded(tmp_path / "src", _synthetic(), _GROUPS)
    with read_checkpoint(tmp_path / "src") as ck:
        with pytest.raises(UsageError, match="directory path"):
            write_checkpoint(
                tmp_path / "model.safetensors.index.json", _entries_from(ck), metadata={}, source=ck
            )
        result = write_checkpoint(tmp_path / "one.pth", _entries_from(ck), metadata={}, source=ck)
    assert result.format == "torch-zip"
    _assert_same(torch.load(tmp_path / "one.pth", weights_only=True), _synthetic())


def test_index_without_tensors_is_an_input_error(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors.index.json").write_text('{"metadata": {}, "weight_map": {}}')
    with pytest.raises(InputError, match="lists no tensors"):
        read_checkpoint(tmp_path)


def test_torch_write_reports_progress(tmp_path: Path) -> None:
    state = _synthetic()
    seen: list[tuple[int, int]] = []
    write_checkpoint(
        tmp_path / "p.pt", _entries(state), metadata={}, progress=lambda d, t: seen.append((d, t))
    )
    total = sum(v.numel() * v.element_size() for v in state.values())
    assert seen[0] == (0, total) and seen[-1] == (total, total)


def test_sharded_write_rewrites_a_shard_whose_values_changed_in_place(tmp_path: Path) -> None:
    """Same name, dtype and shape but no origin: the values changed, so the shard must not be copied."""
    state = _synthetic()
    _make_sharded(tmp_path / "src", state, _GROUPS)
    with read_checkpoint(tmp_path / "src") as ck:
        entries = [
            e
            if e.name != "stem.conv.weight"
            else OutTensor(e.name, e.dtype, e.shape, lambda: torch.zeros(8, 3, 3, 3))
            for e in _entries_from(ck)
        ]
        write_checkpoint(tmp_path / "out", entries, metadata={}, source=ck, link=True)
    first, second = "model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors"
    assert os.stat(tmp_path / "out" / second).st_ino == os.stat(tmp_path / "src" / second).st_ino
    assert os.stat(tmp_path / "out" / first).st_ino != os.stat(tmp_path / "src" / first).st_ino
    assert torch.equal(load_file(str(tmp_path / "out" / first))["stem.conv.weight"], torch.zeros(8, 3, 3, 3))
    assert torch.equal(
        load_file(str(tmp_path / "src" / first))["stem.conv.weight"], state["stem.conv.weight"]
    )


def test_torchvision_reference_checkpoint_with_averaged_model_ema(tmp_path: Path) -> None:
    """torchvision's train.py saves model, optimizer, lr_scheduler, epoch, args and an AveragedModel EMA."""
    plain, ema = _synthetic(0), _synthetic(1)
    model = torch.nn.Linear(2, 2)
    averaged = torch.optim.swa_utils.AveragedModel(model)
    ema_state = {f"module.{k}": v for k, v in ema.items()} | {"n_averaged": averaged.n_averaged}
    obj = {
        "model": plain,
        "optimizer": torch.optim.SGD(model.parameters(), lr=0.1).state_dict(),
        "lr_scheduler": {"last_epoch": 3},
        "epoch": 3,
        "args": argparse.Namespace(model="resnet18", data_path="/data"),
        "model_ema": ema_state,
    }
    torch.save(obj, tmp_path / "checkpoint.pth")
    with read_checkpoint(tmp_path / "checkpoint.pth") as ck:
        _assert_same(_read_all(ck), plain)
        assert any("model_ema" in n and "--ema" in n for n in ck.notes)
    with read_checkpoint(tmp_path / "checkpoint.pth", ema=True) as ck:
        _assert_same(_read_all(ck), ema)
        assert any("n_averaged" in n for n in ck.notes)


def test_sparse_tensors_are_refused(tmp_path: Path) -> None:
    torch.save({"w": torch.eye(3).to_sparse()}, tmp_path / "sparse.pth")
    with pytest.raises(InputError, match="sparse"):
        read_checkpoint(tmp_path / "sparse.pth")
