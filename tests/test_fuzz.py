"""Fuzzing the checkpoint readers through the CLI: a damaged file never gives a traceback.

Every input is a mutation of a real checkpoint of ``test_vit`` (safetensors, torch zip, torch legacy, a
training checkpoint) or bytes made from scratch, fed to ``rehead --arch test_vit --classes 3 --checkpoint
FUZZED --out o.safetensors`` and to ``inspect FUZZED``, in-process through Typer's ``CliRunner``. The
contract for each run:

- exit 3 with exactly one line ``error: …`` on stderr and no output file, or — when the mutation left a
  readable checkpoint (a flipped bit inside tensor data, an edit safetensors itself accepts) — exit 0
  with a complete, loadable output; never exit 1, never a traceback;
- mutations that cannot leave a valid file (truncation, trailing bytes, an empty file, a header that the
  reference ``safetensors`` library rejects) must give exit 3; mutations that keep the file valid and the
  weights reasonable must give exit 0;
- the fuzzed input is byte-for-byte unchanged, no ``.*.tmp`` file is left, and each run takes seconds.

Hypothesis runs derandomized (the same examples every run) without a database. ``make test`` runs a
small budget; ``make fuzz`` runs the ``slow`` variants with ``MODELSURGEON_FUZZ_EXAMPLES`` examples
each (figures in docs/reliability.md). A handful of inputs also go through ``python -m modelsurgeon``
in subprocesses, where the real ``main()`` error guard and stderr are in play.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st
from safetensors.torch import load as safetensors_load
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_save
from typer.testing import CliRunner

from modelsurgeon.cli.app import app
from tests.conftest import sha256_of

SLOW_EXAMPLES = int(os.environ.get("MODELSURGEON_FUZZ_EXAMPLES", "2000"))
"""Examples per slow fuzz test (``make fuzz`` sets it)."""

MAX_CPU_SECONDS = 10.0
"""CPU-time bound for one in-process run on a fuzzed file (typically well under a second). CPU time, not
wall time, so that a machine loaded by other work does not fail the test; a hang still would."""

runner = CliRunner()


# ------------------------------------------------------------------------------------------ the bases
@functools.cache
def _vit_state() -> dict[str, torch.Tensor]:
    import timm

    torch.manual_seed(0)
    model = timm.create_model("test_vit", pretrained=False)
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


@functools.cache
def _safetensors_base() -> bytes:
    meta = {"format": "pt", "modelsurgeon.classes": "3", "modelsurgeon.labels": '["a","b","c"]'}
    return safetensors_save(_vit_state(), metadata=meta)


def _torch_bytes(obj: Any, *, legacy: bool) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf, _use_new_zipfile_serialization=not legacy)
    return buf.getvalue()


@functools.cache
def _torch_bases() -> dict[str, bytes]:
    import argparse

    state = _vit_state()
    training = {"epoch": 3, "state_dict": state, "args": argparse.Namespace(lr=0.1), "metric": 0.5}
    return {
        "zip": _torch_bytes(state, legacy=False),
        "legacy": _torch_bytes(state, legacy=True),
        "training-zip": _torch_bytes(training, legacy=False),
        "training-legacy": _torch_bytes(training, legacy=True),
    }


def _split_safetensors(raw: bytes) -> tuple[dict[str, Any], bytes]:
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def _join_safetensors(header: Any, data: bytes) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


# ---------------------------------------------------------------------------------------- mutations
@dataclass(frozen=True, repr=False)
class Fuzzed:
    """A fuzzed checkpoint and what the contract demands of it.

    Attributes:
        raw: The file's bytes.
        kind: The mutation, for failure messages.
        expect: ``{3}`` when the file cannot be valid, ``{0}`` when it must work, else ``{0, 3}``.
        suffix: File name suffix of the fuzzed file.
    """

    raw: bytes
    kind: str
    expect: frozenset[int]
    suffix: str = ".safetensors"

    def __repr__(self) -> str:
        sha = hashlib.sha256(self.raw).hexdigest()[:16]
        return f"Fuzzed({self.kind}, {len(self.raw)} bytes, sha256 {sha}…, expect {sorted(self.expect)})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


MUST_FAIL = frozenset({3})
MUST_WORK = frozenset({0})
EITHER = frozenset({0, 3})

_DTYPES = ["F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U8", "U16", "U32", "U64", "BOOL", "C64"]
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)
_COUNT = st.integers(0, 2**20) | st.sampled_from([2**31, 2**32, 2**62, 2**63 - 1, 2**63, 2**64, 2**70])


def _reference_rejects(raw: bytes) -> bool:
    """Whether the reference ``safetensors`` library refuses the bytes."""
    try:
        safetensors_load(raw)
    except Exception:  # the Rust reader raises SafetensorError and a few builtin types
        return True
    return False


@st.composite
def _header_edit(draw: st.DrawFn) -> Fuzzed:
    """One to three structural edits of the JSON header: dtype, shape, offsets, fields, keys, metadata."""
    header, data = _split_safetensors(_safetensors_base())
    header = copy.deepcopy(header)
    names = sorted(k for k in header if k != "__metadata__")
    kinds = []
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from(names))
        entry = header.get(name)
        kind = draw(
            st.sampled_from(
                [
                    "dtype",
                    "shape",
                    "dim",
                    "offsets",
                    "shift",
                    "field",
                    "drop",
                    "extra",
                    "rename",
                    "clone",
                    "metadata",
                    "value",
                    "whole",
                ]
            )
        )
        kinds.append(kind)
        if not isinstance(entry, dict):
            entry = header[name] = {}
        if kind == "dtype":
            entry["dtype"] = draw(st.sampled_from(_DTYPES) | st.text(max_size=6))
        elif kind == "shape":
            entry["shape"] = draw(st.lists(_COUNT, max_size=4))
        elif kind == "dim" and entry.get("shape"):
            i = draw(st.integers(0, len(entry["shape"]) - 1))
            entry["shape"][i] = max(0, entry["shape"][i] + draw(st.integers(-2, 2)))
        elif kind == "offsets":
            entry["data_offsets"] = draw(st.lists(_COUNT, min_size=2, max_size=2))
        elif kind == "shift" and isinstance(entry.get("data_offsets"), list):
            i = draw(st.integers(0, 1))
            entry["data_offsets"][i] = max(0, entry["data_offsets"][i] + draw(st.integers(-64, 64)))
        elif kind == "field" and entry:
            entry.pop(draw(st.sampled_from(sorted(entry))))
        elif kind == "drop":
            header.pop(name, None)
        elif kind == "extra":
            entry[draw(st.text(max_size=6))] = draw(_JSON)
        elif kind == "rename":
            header[draw(st.text(max_size=12))] = header.pop(name, entry)
        elif kind == "clone":
            header[name + draw(st.text(min_size=1, max_size=3))] = copy.deepcopy(entry)
        elif kind == "metadata":
            meta = header.setdefault("__metadata__", {})
            key = draw(st.sampled_from(["modelsurgeon.init", "modelsurgeon.labels", "modelsurgeon.classes",
                                        "modelsurgeon.kept_rows", "modelsurgeon.head", "format"])
                       | st.text(max_size=8))  # fmt: skip
            meta[key] = draw(_JSON)
        elif kind == "value":
            entry[draw(st.sampled_from(["dtype", "shape", "data_offsets"]))] = draw(_JSON)
        else:
            header = draw(_JSON)
            break
    raw = _join_safetensors(header, data)
    expect = MUST_FAIL if _reference_rejects(raw) else EITHER
    return Fuzzed(raw, "header:" + ",".join(kinds), expect)


@st.composite
def _length_prefix(draw: st.DrawFn) -> Fuzzed:
    """The 8-byte header length replaced: absurd, zero, off by a few, past the end of the file."""
    base = _safetensors_base()
    (n,) = struct.unpack("<Q", base[:8])
    value = draw(
        st.sampled_from([0, 1, 7, len(base), len(base) - 8, 100_000_001, 2**32, 2**63, 2**64 - 1])
        | st.integers(max(0, n - 16), n + 16).filter(lambda v: v != n)
        | st.integers(0, 2**64 - 1)
    )
    raw = struct.pack("<Q", value) + base[8:]
    return Fuzzed(raw, f"length:{value}", MUST_FAIL if _reference_rejects(raw) else EITHER)


@st.composite
def _header_bytes(draw: st.DrawFn) -> Fuzzed:
    """Bytes inside the header flipped, replaced by non-UTF-8 bytes, inserted or deleted."""
    raw = bytearray(_safetensors_base())
    (n,) = struct.unpack("<Q", raw[:8])
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(8, 8 + n - 1))
        op = draw(st.sampled_from(["flip", "high", "insert", "delete"]))
        if op == "flip":
            raw[pos] ^= draw(st.integers(1, 255))
        elif op == "high":
            raw[pos] = draw(st.integers(0x80, 0xFF))
        elif op == "insert":
            raw[pos:pos] = draw(st.binary(min_size=1, max_size=4))
        else:
            del raw[pos : pos + draw(st.integers(1, 4))]
    out = bytes(raw)
    return Fuzzed(out, "header-bytes", MUST_FAIL if _reference_rejects(out) else EITHER)


@st.composite
def _cut_or_grow(draw: st.DrawFn) -> Fuzzed:
    """Truncated anywhere (including to 0 bytes), or with bytes appended: never a valid file."""
    base = _safetensors_base()
    if draw(st.booleans()):
        cut = draw(st.integers(0, len(base) - 1) | st.integers(0, 64))
        return Fuzzed(base[:cut], f"truncate:{cut}", MUST_FAIL)
    tail = draw(st.binary(min_size=1, max_size=64))
    return Fuzzed(base + tail, f"append:{len(tail)}", MUST_FAIL)


def _data_is_reasonable(raw: bytes) -> bool:
    """Every float tensor outside the head is finite and small: a forward pass must stay finite."""
    state = safetensors_load(raw)
    return all(
        not v.is_floating_point() or bool(v.isfinite().all() and v.abs().max() < 100)
        for k, v in state.items()
        if not k.startswith("head.") and v.numel()
    )


@st.composite
def _data_bytes(draw: st.DrawFn) -> Fuzzed:
    """Bytes inside tensor data flipped: still a valid file; it must work unless the weights blew up."""
    raw = bytearray(_safetensors_base())
    (n,) = struct.unpack("<Q", raw[:8])
    for pos in draw(st.lists(st.integers(8 + n, len(raw) - 1), min_size=1, max_size=8)):
        raw[pos] ^= draw(st.integers(1, 255))
    out = bytes(raw)
    return Fuzzed(out, "data-bytes", MUST_WORK if _data_is_reasonable(out) else EITHER)


@st.composite
def _random_bytes(draw: st.DrawFn) -> Fuzzed:
    """Bytes from scratch, bare or behind a plausible safetensors length prefix and ``{``."""
    body = draw(st.binary(max_size=512))
    if draw(st.booleans()):
        body = struct.pack("<Q", draw(st.integers(0, 2 * len(body) + 2))) + b"{" + body
    return Fuzzed(body, "random", MUST_FAIL if _reference_rejects(body) else EITHER)


SAFETENSORS_MUTATIONS = st.one_of(
    _header_edit(), _length_prefix(), _header_bytes(), _cut_or_grow(), _data_bytes(), _random_bytes()
)


# ----------------------------------------------------------------------------------- torch mutations
def _zip_markers(raw: bytes) -> list[int]:
    """Offsets of zip local headers, central directory entries and the end-of-directory record."""
    marks = []
    for sig in (b"PK\x03\x04", b"PK\x01\x02", b"PK\x05\x06"):
        start = raw.find(sig)
        while start != -1:
            marks.append(start)
            start = raw.find(sig, start + 1)
    return marks


def _swap_zip_member(raw: bytes, member_suffix: str, content: bytes) -> bytes:
    """Rewrite a torch zip with one member's bytes replaced (the rest copied as stored)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(raw)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = content if info.filename.endswith(member_suffix) else src.read(info)
            dst.writestr(info.filename, data)
    return out.getvalue()


_PLAIN = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8) | st.binary(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=8) | st.integers(), inner, max_size=4)
    ),
    max_leaves=10,
)


@st.composite
def _torch_mutation(draw: st.DrawFn) -> Fuzzed:
    """Damage to torch files: truncation, flipped bytes (anywhere or at zip records), swapped pickles."""
    base_name = draw(st.sampled_from(sorted(_torch_bases())))
    base = _torch_bases()[base_name]
    suffix = draw(st.sampled_from([".pth", ".bin", ".ckpt", ".pth.tar"]))
    kind = draw(st.sampled_from(["truncate", "flip", "zip-record", "pickle", "opcodes", "append", "empty"]))
    label = f"{base_name}:{kind}"
    if kind == "truncate":
        cut = draw(st.integers(0, len(base) - 1))
        return Fuzzed(base[:cut], f"{label}:{cut}", MUST_FAIL, suffix)
    if kind == "empty":
        return Fuzzed(b"", label, MUST_FAIL, suffix)
    if kind == "append":
        return Fuzzed(base + draw(st.binary(min_size=1, max_size=64)), label, EITHER, suffix)
    raw = bytearray(base)
    if kind == "flip":
        for pos in draw(st.lists(st.integers(0, len(raw) - 1), min_size=1, max_size=6)):
            raw[pos] ^= draw(st.integers(1, 255))
        return Fuzzed(bytes(raw), label, EITHER, suffix)
    if kind == "zip-record":
        marks = _zip_markers(base) or [0]
        for _ in range(draw(st.integers(1, 3))):
            pos = min(len(raw) - 1, draw(st.sampled_from(marks)) + draw(st.integers(0, 45)))
            raw[pos] ^= draw(st.integers(1, 255))
        return Fuzzed(bytes(raw), label, EITHER, suffix)
    # A pickle in place of the state dict: plain data, or opcode soup behind a protocol header.
    if kind == "pickle":
        payload = pickle.dumps(draw(_PLAIN), protocol=draw(st.integers(2, 5)))
    else:
        payload = bytes([0x80, draw(st.integers(2, 5))]) + draw(st.binary(max_size=256))
    if base_name.endswith("zip"):
        return Fuzzed(_swap_zip_member(base, "data.pkl", payload), label, MUST_FAIL, suffix)
    return Fuzzed(payload, label, MUST_FAIL, suffix)


# ------------------------------------------------------------------------------------------- checks
def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp"))


def _explain(result: Any, fuzzed: Fuzzed, command: str) -> str:
    exc = result.exception
    detail = ""
    if exc is not None and not isinstance(exc, SystemExit):
        import traceback

        detail = "".join(traceback.format_exception(exc))
    head = f"{command} on {fuzzed.kind} ({len(fuzzed.raw)} bytes): exit {result.exit_code}"
    return f"{head}\n{result.stderr}{detail}"


def check_contract(directory: Path, fuzzed: Fuzzed) -> None:
    """Run rehead and inspect on ``fuzzed`` and assert the contract of the module docstring."""
    src = directory / f"FUZZED{fuzzed.suffix}"
    out = directory / "o.safetensors"
    src.write_bytes(fuzzed.raw)
    before = sha256_of(src)
    commands = {
        "rehead": [
            "rehead",
            "--arch",
            "test_vit",
            "--classes",
            "3",
            "--checkpoint",
            str(src),
            "--out",
            str(out),
        ],
        "inspect": ["inspect", str(src)],
    }
    try:
        for command, args in commands.items():
            start = time.process_time()
            result = runner.invoke(app, args)
            elapsed = time.process_time() - start
            why = _explain(result, fuzzed, command)
            if currently_in_test_context():  # the figures of `make fuzz`
                event(f"{command} exit {result.exit_code}")
            assert result.exit_code in fuzzed.expect, why
            assert "Traceback" not in result.stderr, why
            assert elapsed < MAX_CPU_SECONDS, f"{why}\ntook {elapsed:.1f} s of CPU"
            if result.exit_code == 3:
                lines = [line for line in result.stderr.splitlines() if line.strip()]
                assert len(lines) == 1 and lines[0].startswith("error: "), why
                assert not out.exists(), why
            elif command == "rehead":
                written = load_file(str(out))
                assert written["head.weight"].shape == (3, _vit_state()["head.weight"].shape[1]), why
                assert set(written) == set(_vit_state()), why
            assert _leftovers(directory) == [], why
            assert sha256_of(src) == before, f"{why}\nthe input was modified"
    finally:
        out.unlink(missing_ok=True)
        src.unlink(missing_ok=True)


def _fuzz_settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


# -------------------------------------------------------------------------------------- the tests
def test_bases_are_valid_and_work(tmp_path: Path) -> None:
    """Guards the fuzzers: every unmutated base must pass, else every "must fail" case proves nothing."""
    check_contract(tmp_path, Fuzzed(_safetensors_base(), "base", MUST_WORK))
    for name, raw in _torch_bases().items():
        check_contract(tmp_path, Fuzzed(raw, f"base {name}", MUST_WORK, ".pth"))


@_fuzz_settings(60)
@given(fuzzed=SAFETENSORS_MUTATIONS)
def test_fuzz_safetensors(tmp_path: Path, fuzzed: Fuzzed) -> None:
    """Damaged safetensors files exit 3 with one line (or, when still valid, 0), never a traceback."""
    check_contract(tmp_path, fuzzed)


@_fuzz_settings(40)
@given(fuzzed=_torch_mutation())
def test_fuzz_torch(tmp_path: Path, fuzzed: Fuzzed) -> None:
    """Damaged torch zip / legacy / training files and swapped pickles exit 3 (or 0), never a traceback."""
    check_contract(tmp_path, fuzzed)


@pytest.mark.slow
@_fuzz_settings(SLOW_EXAMPLES)
@given(fuzzed=SAFETENSORS_MUTATIONS)
def test_fuzz_safetensors_long(tmp_path: Path, fuzzed: Fuzzed) -> None:
    """``make fuzz``: the safetensors contract over ``MODELSURGEON_FUZZ_EXAMPLES`` examples."""
    check_contract(tmp_path, fuzzed)


@pytest.mark.slow
@_fuzz_settings(SLOW_EXAMPLES)
@given(fuzzed=_torch_mutation())
def test_fuzz_torch_long(tmp_path: Path, fuzzed: Fuzzed) -> None:
    """``make fuzz``: the torch contract over ``MODELSURGEON_FUZZ_EXAMPLES`` examples."""
    check_contract(tmp_path, fuzzed)


def test_control_characters_in_a_key_still_give_one_line(tmp_path: Path) -> None:
    """A key holding newlines and a terminal escape is named in the error, escaped, on one line."""
    state = {**_vit_state(), "evil\nkey\x1b[2J\u2028": torch.zeros(1)}
    (tmp_path / "k.safetensors").write_bytes(safetensors_save(state))
    result = runner.invoke(
        app, ["rehead", "--arch", "test_vit", "--classes", "3", "--checkpoint", "k.safetensors"]
    )
    assert result.exit_code == 3, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert "evil\\nkey\\x1b[2J\\u2028" in result.stderr


def test_zero_size_tensor_with_a_dimension_torch_cannot_hold(tmp_path: Path) -> None:
    """Found by fuzzing: a 0-element tensor whose shape overflows int64 was accepted, then crashed."""
    header = {
        "head.weight": {"dtype": "F32", "shape": [0, 2**63], "data_offsets": [0, 0]},
        "head.bias": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]},
    }
    (tmp_path / "z.safetensors").write_bytes(_join_safetensors(header, b""))
    result = runner.invoke(app, ["inspect", "z.safetensors"])
    assert result.exit_code == 3, _explain(result, Fuzzed(b"", "zero-size", MUST_FAIL), "inspect")
    assert "too large for a tensor" in result.stderr


# ------------------------------------------------------------------------------------- subprocesses
def _subprocess_cases(directory: Path) -> dict[str, tuple[list[str], bytes | None]]:
    base = _safetensors_base()
    zip_raw = bytearray(_torch_bases()["zip"])
    end = zip_raw.rfind(b"PK\x05\x06")
    zip_raw[end : end + 22] = bytes(22)
    files = {
        "truncated.safetensors": base[: len(base) // 2],
        "corrupt-zip.pth": bytes(zip_raw),
    }
    for name, raw in files.items():
        (directory / name).write_bytes(raw)
    rehead = ["rehead", "--arch", "test_vit", "--classes", "3", "--out", "o.safetensors", "--checkpoint"]
    return {
        "truncated": ([*rehead, "truncated.safetensors"], None),
        "corrupt-zip": ([*rehead, "corrupt-zip.pth"], None),
        "legacy-opcodes-stdin": (["inspect", "-"], b"\x80\x02" + bytes(range(256))),
    }


def test_fuzzed_inputs_through_real_processes(tmp_path: Path) -> None:
    """A handful of fuzzed inputs through ``python -m modelsurgeon`` (run concurrently): exit 3, one
    line on stderr (torch's own warnings included), no traceback, no output, no temp file."""
    cases = _subprocess_cases(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs: dict[str, tuple[subprocess.Popen[bytes], bytes | None]] = {}
    for name, (args, stdin) in cases.items():
        proc = subprocess.Popen(
            [sys.executable, "-m", "modelsurgeon", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        procs[name] = (proc, stdin)
    for name, (proc, stdin) in procs.items():
        stdout, stderr = proc.communicate(stdin, timeout=180)
        text = stderr.decode()
        assert proc.returncode == 3, (name, text)
        assert stdout == b"", name
        assert "Traceback" not in text, (name, text)
        assert text.count("\n") == 1 and text.startswith("error: "), (name, text)
    assert not (tmp_path / "o.safetensors").exists()
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("damage", ["nan", "int32"])
def test_damaged_weights_that_still_parse_are_input_errors(tmp_path: Path, damage: str) -> None:
    """Found by fuzzing: a flipped bit making a weight NaN, or a header dtype F32 → I32 with the same
    byte count, failed verification as a "bug" (exit 1); they are the input's fault: exit 3, no output."""
    state = dict(_vit_state())
    key = "blocks.0.attn.qkv.weight"
    if damage == "nan":
        state[key] = state[key].clone()
        state[key][0, 0] = float("nan")
    else:
        state[key] = state[key].view(torch.int32)
    fuzzed = Fuzzed(safetensors_save(state), damage, MUST_FAIL)
    (tmp_path / "d.safetensors").write_bytes(fuzzed.raw)
    result = runner.invoke(
        app,
        ["rehead", "--arch", "test_vit", "--classes", "3", "--checkpoint", "d.safetensors", "--out", "o.pth"],
    )
    assert result.exit_code == 3, _explain(result, fuzzed, "rehead")
    assert ("non-finite" if damage == "nan" else "dtype the arch cannot take") in result.stderr
    assert not (tmp_path / "o.pth").exists() and _leftovers(tmp_path) == []
