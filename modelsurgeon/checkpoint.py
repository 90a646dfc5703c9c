"""Read and write checkpoints: the only module that opens checkpoint files.

Formats read (detected by magic bytes, not by extension):

- ``safetensors``: one ``.safetensors`` file; the header is parsed and validated here, tensors are
  lazy views into a private (copy-on-write) memory map of the file.
- ``safetensors-sharded``: a ``*.safetensors.index.json`` (or a directory holding one) and its shards.
- ``torch-zip``: ``torch.save`` files (``.pth .pt .bin .ckpt .pth.tar`` …), loaded memory-mapped.
- ``torch-legacy``: files written with ``_use_new_zipfile_serialization=False``, loaded into memory.

Torch files are loaded with ``torch.load(weights_only=True)``: modelsurgeon never unpickles code. The only
globals allowed beyond torch's own weights-only set are in :data:`SAFE_GLOBALS_DOC` (``argparse.Namespace``
for the ``args`` of timm / torchvision training checkpoints, and numpy scalars for saved metrics).

Formats written: ``.safetensors`` (a streaming writer with bounded memory, deterministic bytes),
``.pth/.pt/.bin`` (``torch.save`` of a plain ``name → tensor`` dict; no metadata), a sharded safetensors
directory (when ``source=`` is sharded), and ``"-"`` (safetensors streamed to stdout). File writes are
atomic. Unchanged safetensors tensors are copied file to file by the kernel (``copy_file_range``).

This module prints nothing and imports no timm.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import functools
import hashlib
import json
import math
import os
import pickle
import re
import secrets
import shutil
import struct
import sys
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any, BinaryIO

import torch

from modelsurgeon.errors import InputError, OutputError, UsageError

__all__ = [
    "CHUNK_BYTES",
    "EMA_KEYS",
    "INDEX_NAME",
    "SAFE_GLOBALS_DOC",
    "WEIGHT_KEYS",
    "WRITE_SUFFIXES",
    "Checkpoint",
    "OutTensor",
    "TensorInfo",
    "WriteResult",
    "read_checkpoint",
    "write_checkpoint",
]

CHUNK_BYTES = 16 * 1024 * 1024
"""Bytes per read/write chunk: bounds the extra memory of hashing, copying and writing tensors."""

COPY_BYTES = 1024 * 1024
"""Buffer of a file-to-file copy where the kernel cannot copy (small enough to stay in the CPU cache)."""

COPY_SPAN_BYTES = 64 * 1024 * 1024
"""Largest piece copied file to file in one go: progress and disk writeback move at this pace."""

INDEX_NAME = "model.safetensors.index.json"
"""File name of the index written into a sharded output directory."""

WRITE_SUFFIXES: Mapping[str, str] = MappingProxyType(
    {".safetensors": "safetensors", ".pth": "torch-zip", ".pt": "torch-zip", ".bin": "torch-zip"}
)
"""Output file extension → format written."""

WEIGHT_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "network", "params", "weights")
"""Keys of a training checkpoint that may hold the plain weights, in order of preference."""

EMA_KEYS = ("state_dict_ema", "model_ema", "ema_state_dict", "ema", "ema_model", "model_ema_state_dict")
"""Keys of a training checkpoint that may hold EMA weights, in order of preference."""

SAFE_GLOBALS_DOC = (
    "argparse.Namespace (the `args` of timm and torchvision training checkpoints)",
    "numpy scalars: numpy._core.multiarray.scalar / numpy.core.multiarray.scalar, numpy.dtype and the "
    "bool/int/uint/float dtype classes (metrics saved as numpy values)",
)
"""Globals allowed when unpickling, beyond torch's weights-only defaults; nothing that can run code."""

_WRAPPER_PREFIXES = (("module.", "DDP"), ("_orig_mod.", "torch.compile"))
_MAX_HEADER_BYTES = 100_000_000  # the limit safetensors itself enforces
_MAX_NUMEL = 2**63 - 1  # torch sizes are int64: a larger dimension or element count cannot be a tensor
_BRIEF = 80  # characters of a header value quoted in an error message
_SAFETENSORS_DTYPES: dict[str, torch.dtype] = {
    name: dtype
    for name, dtype in (
        ("BOOL", torch.bool),
        ("U8", torch.uint8),
        ("I8", torch.int8),
        ("I16", torch.int16),
        ("U16", getattr(torch, "uint16", None)),
        ("F16", torch.float16),
        ("BF16", torch.bfloat16),
        ("I32", torch.int32),
        ("U32", getattr(torch, "uint32", None)),
        ("F32", torch.float32),
        ("F64", torch.float64),
        ("I64", torch.int64),
        ("U64", getattr(torch, "uint64", None)),
        ("C64", torch.complex64),
        ("F8_E4M3", getattr(torch, "float8_e4m3fn", None)),
        ("F8_E5M2", getattr(torch, "float8_e5m2", None)),
        ("F8_E4M3FNUZ", getattr(torch, "float8_e4m3fnuz", None)),
        ("F8_E5M2FNUZ", getattr(torch, "float8_e5m2fnuz", None)),
        ("F8_E8M0", getattr(torch, "float8_e8m0fnu", None)),
    )
    if dtype is not None
}
_DTYPE_CODES: dict[torch.dtype, str] = {dtype: name for name, dtype in _SAFETENSORS_DTYPES.items()}

# torch.load raises many types on corrupt input (the zip reader, the unpickler, storage rebuilds).
_TORCH_LOAD_ERRORS: tuple[type[BaseException], ...] = (
    RuntimeError,
    pickle.UnpicklingError,
    EOFError,
    zipfile.BadZipFile,
    ValueError,
    KeyError,
    IndexError,
    TypeError,
    AttributeError,
    OSError,
    struct.error,
    UnicodeDecodeError,
    OverflowError,
    NotImplementedError,
    AssertionError,  # the legacy loader asserts that storage keys it reads were declared
)

_UNSAFE_HINT = (
    "modelsurgeon never unpickles code; convert the file to safetensors in an environment you trust "
    "(torch.load it there, then safetensors.torch.save_file(state_dict, 'model.safetensors'))"
)


# --------------------------------------------------------------------------------------------- types
@dataclass(frozen=True)
class TensorInfo:
    """Dtype and shape of a stored tensor, known without reading its data.

    Args:
        dtype: The stored dtype.
        shape: The stored shape.
    """

    dtype: torch.dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        """Size of the tensor's data in bytes."""
        return math.prod(self.shape) * self.dtype.itemsize


@dataclass(frozen=True)
class OutTensor:
    """One tensor to write.

    Args:
        name: Key in the output checkpoint.
        dtype: Dtype that ``get()`` returns.
        shape: Shape that ``get()`` returns.
        get: Returns the CPU tensor (may be non-contiguous, must not be mutated by the writer's caller
            while writing). Called once, when the writer reaches this tensor.
        origin: The source key this tensor is an unchanged copy of, or ``None`` when it is new or changed.
            Lets a sharded write copy (or hard-link) shards whose tensors are all unchanged.
    """

    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]
    get: Callable[[], torch.Tensor]
    origin: str | None = None

    @property
    def nbytes(self) -> int:
        """Size of the tensor's data in bytes."""
        return math.prod(self.shape) * self.dtype.itemsize


@dataclass(frozen=True)
class WriteResult:
    """What :func:`write_checkpoint` wrote.

    Args:
        path: The destination as given (``"-"`` for stdout).
        format: ``"safetensors"``, ``"safetensors-sharded"`` or ``"torch-zip"``.
        nbytes: Bytes written (for a sharded directory: all files, copied ones included).
    """

    path: str
    format: str
    nbytes: int


@dataclass(frozen=True)
class _Slot:
    """Where one tensor of a :class:`Checkpoint` lives."""

    info: TensorInfo
    raw_name: str  # the key as stored in the file (before prefix stripping)
    load: Callable[[], torch.Tensor]
    shard: str | None = None  # shard file name, for sharded checkpoints
    file: str | None = None  # key of the open file holding the stored bytes (safetensors only)
    offset: int = 0  # where the stored bytes start in that file


class Checkpoint:
    """An opened checkpoint: tensor names, dtypes and shapes up front, data on demand.

    Use :func:`read_checkpoint` to make one. Keys are the stored names with DDP (``module.``) and
    ``torch.compile`` (``_orig_mod.``) prefixes removed.

    Attributes:
        source: The source as given (``"<stdin>"`` for ``"-"``).
        format: ``"safetensors"``, ``"safetensors-sharded"``, ``"torch-zip"`` or ``"torch-legacy"``.
        metadata: safetensors ``__metadata__`` (for sharded: the index's string metadata, then each
            shard's ``__metadata__`` for keys not yet set); ``{}`` for torch files.
        notes: Human-readable things done while reading (container key used, prefixes stripped, EMA).
        infos: Key → :class:`TensorInfo`, sorted by key.
    """

    def __init__(
        self,
        *,
        source: str,
        format: str,
        metadata: Mapping[str, str],
        notes: Sequence[str],
        slots: Mapping[str, _Slot],
        sha256: str | Callable[[], str],
        shard_paths: Mapping[str, Path] | None = None,
        handles: Mapping[str, IO[bytes]] | None = None,
    ) -> None:
        self.source = source
        self.format = format
        self.metadata: dict[str, str] = dict(metadata)
        self.notes: tuple[str, ...] = tuple(notes)
        self._slots: dict[str, _Slot] = {key: slots[key] for key in sorted(slots)}
        self.infos: Mapping[str, TensorInfo] = MappingProxyType(
            {key: slot.info for key, slot in self._slots.items()}
        )
        self._sha256: str | None = sha256 if isinstance(sha256, str) else None
        self._sha256_fn: Callable[[], str] = sha256 if callable(sha256) else str
        self._shard_paths: dict[str, Path] = dict(shard_paths or {})
        # Open files the sha256 is read from: the inodes read at open time, even if a path is replaced.
        self._handles: dict[str, IO[bytes]] = dict(handles or {})
        self._file_sha: dict[str, str] = {}
        self._closed = False

    @property
    def sha256(self) -> str:
        """Hex sha256 of the source bytes, computed on first access with one chunked read.

        It is read from the files opened by :func:`read_checkpoint`, so replacing the source path
        afterwards (``--force`` onto the input) does not change it; access it before :meth:`close`.
        For stdin it is computed while spooling. For a sharded checkpoint it is the sha256 of a
        ``sha256sum``-style manifest: the line ``"<sha256 of the index>  <index file name>\\n"`` followed by
        one such line per shard file, shards sorted by file name. It equals
        ``(cd DIR && sha256sum INDEX $(ls shards | sort)) | sha256sum``.
        """
        if self._sha256 is None:
            if self._closed:
                raise ValueError(f"checkpoint {self.source} is closed; read sha256 before closing it")
            self._sha256 = self._sha256_fn()
        return self._sha256

    def _hash_file(self, name: str) -> str:
        """sha256 of one opened file (the source, or a shard by name), cached."""
        if name not in self._file_sha:
            self._file_sha[name] = _hash_handle(self._handles[name], self.source)
        return self._file_sha[name]

    def _span(self, key: str, info: TensorInfo) -> tuple[int, int] | None:
        """``(fd, offset)`` of the stored bytes of ``key`` when they are exactly ``info``'s bytes.

        Only safetensors data qualifies: it is stored raw, in C order, in the file opened at read time.
        """
        slot = self._slots.get(key)
        if slot is None or slot.file is None or slot.info != info:
            return None
        handle = self._handles.get(slot.file)
        return None if handle is None else (handle.fileno(), slot.offset)

    def tensor(self, key: str) -> torch.Tensor:
        """Return the tensor stored under ``key`` (a stripped name).

        The tensor is lazy and memory-mapped where the format allows (safetensors, torch zip); it is a
        private copy-on-write mapping, but callers must treat it as read-only.

        Raises:
            KeyError: ``key`` is not in :attr:`infos`.
            ValueError: The checkpoint is closed.
        """
        if self._closed:
            raise ValueError(f"checkpoint {self.source} is closed")
        try:
            slot = self._slots[key]
        except KeyError:
            raise KeyError(f"no tensor {key!r} in checkpoint {self.source}") from None
        return slot.load()

    def close(self) -> None:
        """Drop the references to the file mappings; tensors already handed out stay valid."""
        self._closed = True
        self._slots = {}
        for handle in self._handles.values():
            handle.close()
        self._handles = {}

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Checkpoint(source={self.source!r}, format={self.format!r}, tensors={len(self.infos)})"


# --------------------------------------------------------------------------------------------- reading
def read_checkpoint(source: str | os.PathLike[str], *, ema: bool = False) -> Checkpoint:
    """Open a checkpoint for reading.

    Args:
        source: A file path; a ``*.safetensors.index.json``; a directory holding exactly one such index
            (or, without one, a ``model.safetensors``); or ``"-"`` for stdin (spooled to a temporary file
            in ``$TMPDIR``, which is deleted as soon as it is opened).
        ema: Use the EMA weights of a training checkpoint instead of the plain ones.

    Returns:
        The opened :class:`Checkpoint`; close it (or use ``with``) when done.

    Raises:
        InputError: The source is missing, empty, truncated, corrupt, not a checkpoint, holds no tensors,
            needs unpickling code, or has no EMA weights when ``ema`` is set.
    """
    if isinstance(source, str) and source == "-":
        return _read_stdin(ema=ema)
    label = os.fspath(source)
    path = Path(label)
    try:
        if not path.exists():
            raise InputError(f"checkpoint {label} does not exist", "check the path")
        if path.is_dir():
            path = _resolve_dir(path, label)
        if path.name.endswith(".index.json"):
            return _read_sharded(path, label, ema=ema)
        return _read_file(path, label, ema=ema, sha256=None)
    except PermissionError as exc:
        raise InputError(
            f"cannot read checkpoint {label}: permission denied", "check its permissions"
        ) from exc
    except IsADirectoryError as exc:
        raise InputError(f"{exc.filename} is a directory, not a checkpoint file", "pass a file") from exc
    except OSError as exc:
        raise InputError(f"cannot read checkpoint {label}: {exc.strerror or exc}", "check the path") from exc


def _resolve_dir(path: Path, label: str) -> Path:
    indexes = sorted(path.glob("*.safetensors.index.json"))
    if len(indexes) == 1:
        return indexes[0]
    if len(indexes) > 1:
        names = ", ".join(p.name for p in indexes)
        raise InputError(f"directory {label} holds several indexes ({names})", "pass the index file to use")
    single = path / "model.safetensors"
    if single.is_file():
        return single
    raise InputError(
        f"directory {label} holds no *.safetensors.index.json and no model.safetensors",
        "pass the checkpoint file itself",
    )


def _read_stdin(*, ema: bool) -> Checkpoint:
    digest = hashlib.sha256()
    # Named before it is created (as _temp_path does), so an interrupt right after creation still
    # finds the name to remove.
    tmp = os.path.join(tempfile.gettempdir(), f"modelsurgeon-stdin-{secrets.token_hex(8)}.tmp")
    try:
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
        except OSError as exc:
            raise InputError(
                f"cannot spool stdin to a temporary file: {exc.strerror or exc}",
                "set TMPDIR to a writable directory",
            ) from exc
        size = 0
        stdin = sys.stdin.buffer
        with os.fdopen(fd, "wb") as spool:
            while chunk := stdin.read(CHUNK_BYTES):
                digest.update(chunk)
                spool.write(chunk)
                size += len(chunk)
        if size == 0:
            raise InputError(
                "stdin is empty", "pipe a checkpoint in, e.g. `cat model.safetensors | modelsurgeon …`"
            )
        # Opening maps the file (or loads it); the temp file can go right after.
        return _read_file(Path(tmp), "<stdin>", ema=ema, sha256=digest.hexdigest())
    except OSError as exc:
        hint = "free space in $TMPDIR" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "check stdin"
        raise InputError(f"cannot spool stdin: {exc.strerror or exc}", hint) from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _sniff(path: Path, label: str) -> str:
    """Return the format of ``path`` from its first bytes."""
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"checkpoint {label} is empty (0 bytes)", "was the download or copy interrupted?")
    with path.open("rb") as f:
        head = f.read(64)
    if head.startswith(b"PK\x03\x04"):
        return "torch-zip"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "torch-legacy"
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"
    if head.startswith(b"version https://git-lfs"):
        raise InputError(
            f"{label} is a Git LFS pointer, not the checkpoint itself", "run `git lfs pull` to fetch the file"
        )
    raise InputError(
        f"{label} is not a checkpoint (not safetensors, not a torch.save file)",
        "pass a .safetensors or a torch .pth/.pt/.bin/.ckpt file",
    )


def _read_file(path: Path, label: str, *, ema: bool, sha256: str | None) -> Checkpoint:
    # The file stays open until the checkpoint is closed: it is hashed and copied from this inode.
    handle = path.open("rb")
    try:
        ckpt = _open_file(path, label, ema=ema, sha256=sha256, handle=handle)
    except BaseException:
        handle.close()
        raise
    return ckpt


def _open_file(path: Path, label: str, *, ema: bool, sha256: str | None, handle: IO[bytes]) -> Checkpoint:
    fmt = _sniff(path, label)
    handles = {path.name: handle}
    sha: str | Callable[[], str] = sha256 if sha256 is not None else (lambda: _hash_handle(handle, label))
    if fmt == "safetensors":
        if ema:
            raise InputError(
                f"{label} is a safetensors file, which holds no EMA weights",
                "drop --ema, or pass the training checkpoint that holds them",
            )
        st = _SafetensorsFile(path, label)
        keys, notes = _strip_prefixes(st.entries, label)
        slots = {key: st.slot(raw) for key, raw in keys.items()}
        return Checkpoint(
            source=label,
            format=fmt,
            metadata=st.metadata,
            notes=notes,
            slots=slots,
            sha256=sha,
            handles=handles,
        )
    obj = _torch_load(path, label, zip_format=fmt == "torch-zip")
    tensors, notes = _select_weights(obj, label, ema=ema)
    keys, strip_notes = _strip_prefixes(tensors, label)
    slots = {}
    for key, raw in keys.items():
        t = tensors[raw]
        slots[key] = _Slot(TensorInfo(t.dtype, tuple(t.shape)), raw, _constant(t))
    return Checkpoint(
        source=label,
        format=fmt,
        metadata={},
        notes=[*notes, *strip_notes],
        slots=slots,
        sha256=sha,
        handles=handles,
    )


def _constant(t: torch.Tensor) -> Callable[[], torch.Tensor]:
    return lambda: t


def _hash_handle(f: IO[bytes], label: str) -> str:
    """sha256 of an open file from its start, in one pass through a buffer that stays in the CPU cache."""
    digest = hashlib.sha256()
    buffer = bytearray(COPY_BYTES)
    view = memoryview(buffer)
    try:
        f.seek(0)
        while n := f.readinto(buffer):  # type: ignore[attr-defined]
            digest.update(view[:n])
    except OSError as exc:
        raise InputError(f"cannot read checkpoint {label}: {exc.strerror or exc}", "check the path") from exc
    return digest.hexdigest()


# ------------------------------------------------------------------------------------ safetensors in
class _SafetensorsFile:
    """A validated safetensors header plus a lazy private mapping of the file."""

    def __init__(self, path: Path, label: str) -> None:
        self.label = label
        self.path = path
        size = path.stat().st_size
        with path.open("rb") as f:
            prefix = f.read(8)
            if len(prefix) < 8:
                raise self._bad(f"file is {size} bytes, shorter than the 8-byte header length")
            (header_len,) = struct.unpack("<Q", prefix)
            if header_len > _MAX_HEADER_BYTES:
                raise self._bad(f"header length {header_len} exceeds the {_MAX_HEADER_BYTES}-byte limit")
            if 8 + header_len > size:
                raise self._bad(f"header length {header_len} runs past the end of the {size}-byte file")
            raw_header = f.read(header_len)
        self.data_start = 8 + header_len
        self.metadata, self.entries = self._parse(raw_header, size - self.data_start)
        # Map now (no data is read until a tensor is used), so an unlinked spool file stays readable.
        # shared=False: a private copy-on-write mapping, so a stray write never reaches the file.
        storage = torch.UntypedStorage.from_file(str(path), shared=False, nbytes=size)
        self._bytes = torch.empty(0, dtype=torch.uint8).set_(storage)  # type: ignore[arg-type]

    def _bad(self, why: str) -> InputError:
        return InputError(
            f"{self.label} is not a valid safetensors file: {why}",
            "the file is truncated or corrupt; download or export it again",
        )

    def _parse(
        self, raw: bytes, data_len: int
    ) -> tuple[dict[str, str], dict[str, tuple[TensorInfo, int, int]]]:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self._bad("header is not UTF-8") from exc
        if not text.startswith("{"):
            raise self._bad("header does not start with '{'")

        def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
            out: dict[str, Any] = {}
            for key, value in pairs:
                if key in out:
                    raise ValueError(f"duplicate key {_brief(key)}")
                out[key] = value
            return out

        try:
            header = json.loads(text, object_pairs_hook=no_duplicates)
        except ValueError as exc:  # json.JSONDecodeError is a ValueError, as is a duplicate key
            raise self._bad(f"header is not valid JSON ({exc})") from exc
        if not isinstance(header, dict):
            raise self._bad("header is not a JSON object")
        metadata = header.pop("__metadata__", None) or {}
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            raise self._bad("__metadata__ is not a map of strings to strings")
        entries: dict[str, tuple[TensorInfo, int, int]] = {}
        for name, spec in header.items():
            entries[name] = self._parse_entry(name, spec)
        spans = sorted((begin, end, name) for name, (_, begin, end) in entries.items())
        position = 0
        for begin, end, name in spans:
            if begin != position:
                what = "overlaps the previous tensor" if begin < position else "leaves a gap before it"
                raise self._bad(f"tensor {_brief(name)} at byte {begin} {what} (expected {position})")
            position = end
        if position != data_len:
            raise self._bad(f"tensors cover {position} data bytes but the file holds {data_len}")
        return metadata, entries

    def _parse_entry(self, name: str, spec: Any) -> tuple[TensorInfo, int, int]:
        what = f"tensor {_brief(name)}"
        if not isinstance(spec, dict) or set(spec) != {"dtype", "shape", "data_offsets"}:
            raise self._bad(f"entry {_brief(name)} must have exactly dtype, shape and data_offsets")
        dtype = _SAFETENSORS_DTYPES.get(spec["dtype"]) if isinstance(spec["dtype"], str) else None
        if dtype is None:
            raise self._bad(f"{what} has unknown dtype {_brief(spec['dtype'])}")
        shape, offsets = spec["shape"], spec["data_offsets"]
        if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
            raise self._bad(f"{what} has invalid shape {_brief(shape)}")
        if math.prod(d for d in shape if d) > _MAX_NUMEL:  # even with a 0 dim, torch cannot hold it
            raise self._bad(f"{what} has shape {_brief(shape)}, too large for a tensor")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(o) for o in offsets)):
            raise self._bad(f"{what} has invalid data_offsets {_brief(offsets)}")
        begin, end = offsets
        info = TensorInfo(dtype, tuple(shape))
        if end < begin or end - begin != info.nbytes:
            raise self._bad(
                f"{what} spans {end - begin} bytes but dtype {spec['dtype']} and shape "
                f"{_brief(tuple(shape))} need {info.nbytes}"
            )
        return info, begin, end

    def slot(self, raw_name: str, shard: str | None = None) -> _Slot:
        info, begin, end = self.entries[raw_name]
        load = functools.partial(self._tensor, info, begin, end)
        return _Slot(info, raw_name, load, shard, self.path.name, self.data_start + begin)

    def _tensor(self, info: TensorInfo, begin: int, end: int) -> torch.Tensor:
        raw = self._bytes[self.data_start + begin : self.data_start + end]
        try:
            typed = raw.view(info.dtype)
        except RuntimeError:  # data not aligned to the element size: copy it out
            typed = raw.clone().view(info.dtype)
        return typed.reshape(info.shape)


def _brief(value: Any) -> str:
    """``repr(value)``, cut to :data:`_BRIEF` characters: a corrupt header can hold megabyte-long values."""
    text = repr(value)
    return text if len(text) <= _BRIEF else text[: _BRIEF - 1] + "…"


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


# ------------------------------------------------------------------------------------ sharded in
def _read_sharded(index: Path, label: str, *, ema: bool) -> Checkpoint:
    if ema:
        raise InputError(
            f"{label} is a sharded safetensors checkpoint, which holds no EMA weights", "drop --ema"
        )
    bad_hint = "the index is corrupt; download or export the checkpoint again"
    raw_index = index.read_bytes()
    try:
        data = json.loads(raw_index.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"index {label} is not valid JSON ({exc})", bad_hint) from exc
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise InputError(f"index {label} has no weight_map of tensor name → shard file", bad_hint)
    index_meta = data.get("metadata") or {}
    if not isinstance(index_meta, dict):
        raise InputError(f"index {label} has a metadata entry that is not an object", bad_hint)
    metadata = {k: v for k, v in index_meta.items() if isinstance(v, str)}
    if not weight_map:
        raise InputError(f"index {label} lists no tensors", bad_hint)
    shard_names = sorted(set(weight_map.values()))
    shard_paths: dict[str, Path] = {}
    handles: dict[str, IO[bytes]] = {}
    try:
        raw_slots = _open_shards(index, label, weight_map, shard_names, metadata, shard_paths, handles)
        keys, notes = _strip_prefixes(raw_slots, label)
    except BaseException:
        for handle in handles.values():
            handle.close()
        raise
    slots = {key: raw_slots[raw] for key, raw in keys.items()}
    index_line = (index.name, hashlib.sha256(raw_index).hexdigest())

    def manifest_sha() -> str:
        return _manifest_sha256([index_line, *((name, ckpt._hash_file(name)) for name in shard_names)])

    ckpt = Checkpoint(
        source=label,
        format="safetensors-sharded",
        metadata=metadata,
        notes=notes,
        slots=slots,
        sha256=manifest_sha,
        shard_paths=shard_paths,
        handles=handles,
    )
    return ckpt


def _open_shards(
    index: Path,
    label: str,
    weight_map: Mapping[str, str],
    shard_names: Sequence[str],
    metadata: dict[str, str],
    shard_paths: dict[str, Path],
    handles: dict[str, IO[bytes]],
) -> dict[str, _Slot]:
    """Validate and open each shard; fill ``metadata``, ``shard_paths`` and ``handles``."""
    bad_hint = "the index is corrupt; download or export the checkpoint again"
    raw_slots: dict[str, _Slot] = {}
    for shard in shard_names:
        if shard in ("", ".", "..") or os.path.basename(shard) != shard:
            raise InputError(f"index {label} names shard {shard!r}, which is not a plain file name", bad_hint)
        path = index.parent / shard
        if not path.is_file():
            raise InputError(
                f"shard {shard} listed in {label} is missing", "download every shard of the checkpoint"
            )
        st = _SafetensorsFile(path, f"shard {path}")
        listed = {k for k, v in weight_map.items() if v == shard}
        missing, extra = sorted(listed - set(st.entries)), sorted(set(st.entries) - listed)
        if missing or extra:
            what = (
                f"lacks {missing[:3]}" if missing else f"holds tensors the index does not list: {extra[:3]}"
            )
            raise InputError(f"shard {shard} {what} (index {label})", bad_hint)
        for key, value in st.metadata.items():
            metadata.setdefault(key, value)
        shard_paths[shard] = path
        handles[shard] = path.open("rb")
        for raw in st.entries:
            raw_slots[raw] = st.slot(raw, shard)
    return raw_slots


def _manifest_sha256(lines: Iterable[tuple[str, str]]) -> str:
    text = "".join(f"{sha}  {name}\n" for name, sha in lines)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ------------------------------------------------------------------------------------------ torch in
def _safe_globals() -> list[Any]:
    """The allow-list of :data:`SAFE_GLOBALS_DOC`, as objects for ``torch.serialization.safe_globals``."""
    allowed: list[Any] = [argparse.Namespace]
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy ships with torchvision
        return allowed
    core = getattr(np, "_core", None) or np.core
    scalar = core.multiarray.scalar
    allowed += [(scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar"), np.dtype]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        for name in (
            "BoolDType", "Int8DType", "Int16DType", "Int32DType", "Int64DType", "UInt8DType", "UInt16DType",
            "UInt32DType", "UInt64DType", "Float16DType", "Float32DType", "Float64DType",
        ):  # fmt: skip
            if hasattr(dtypes, name):
                allowed.append(getattr(dtypes, name))
    return allowed


def _torch_load(path: Path, label: str, *, zip_format: bool) -> Any:
    """``torch.load`` with ``weights_only=True`` and the allow-list; zip files memory-mapped (privately)."""
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(warnings.catch_warnings())
            # torch warns about pickle protocols it did not write; for a weights-only load it is noise
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            warnings.filterwarnings("ignore", message="Validating sparse tensor", category=UserWarning)
            warnings.filterwarnings("ignore", message=".*TorchScript archive", category=UserWarning)
            stack.enter_context(torch.serialization.safe_globals(_safe_globals()))
            if zip_format and hasattr(torch.serialization, "set_default_mmap_options"):
                import mmap

                stack.enter_context(torch.serialization.set_default_mmap_options(mmap.MAP_PRIVATE))
            if zip_format and not path.name.endswith(".safetensors"):
                return torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
            # A file object: legacy files cannot be mapped, and torch.load hands any *path* ending in
            # .safetensors to safetensors, whatever the file holds.
            f = stack.enter_context(path.open("rb"))
            return torch.load(f, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise _unpickling_error(exc, label) from exc
    except _TORCH_LOAD_ERRORS as exc:
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "TorchScript" in why:
            raise InputError(
                f"{label} is a TorchScript archive, not a state dict",
                "in an environment you trust, save model.state_dict() with safetensors.torch.save_file",
            ) from exc
        raise InputError(
            f"cannot load torch checkpoint {label}: {why[:200]}",
            "the file is truncated or corrupt; download or export it again",
        ) from exc


def _unpickling_error(exc: pickle.UnpicklingError, label: str) -> InputError:
    text = str(exc)
    found = re.search(r"GLOBAL ([A-Za-z_][\w.]*)", text)
    if found:
        name = found.group(1)
        hint = _UNSAFE_HINT
        if name.startswith(("torch.nn.", "timm.", "torchvision.", "__main__.")):
            hint = "the file may hold a pickled model object rather than a state dict; " + _UNSAFE_HINT
        return InputError(
            f"refusing to unpickle {label}: it needs the global {name}, which is not allowed", hint
        )
    detail = re.search(r"WeightsUnpickler error: ([^\n]*)", text)
    if detail:
        return InputError(f"refusing to unpickle {label}: {detail.group(1)[:200]}", _UNSAFE_HINT)
    first = text.strip().splitlines()[0] if text.strip() else "unpickling failed"
    return InputError(
        f"cannot load torch checkpoint {label}: {first[:200]}",
        "the file is truncated or corrupt; download or export it again",
    )


def _tensor_items(obj: Mapping[Any, Any]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}


def _find_group(
    obj: Mapping[Any, Any], keys: Sequence[str], depth: int = 0
) -> tuple[str, Mapping[Any, Any]] | None:
    """Return (dotted path, mapping) of the first container in ``keys`` that holds tensors."""
    for key in keys:
        value = obj.get(key)
        if not isinstance(value, Mapping):
            continue
        if _tensor_items(value):
            return key, value
        if depth < 1:
            inner = _find_group(value, WEIGHT_KEYS, depth + 1)
            if inner is not None:
                return f"{key}.{inner[0]}", inner[1]
    return None


def _top_keys(obj: Mapping[Any, Any]) -> str:
    names = sorted(str(k) for k in obj)
    return ", ".join(names[:12]) + (f", … ({len(names)} in all)" if len(names) > 12 else "")


def _select_weights(obj: Any, label: str, *, ema: bool) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Find the state dict inside a loaded torch object."""
    if not isinstance(obj, Mapping):
        raise InputError(
            f"{label} holds a {type(obj).__name__}, not a state dict",
            "save model.state_dict() (a dict of name → tensor) instead",
        )
    notes: list[str] = []
    plain, averaged = _find_group(obj, WEIGHT_KEYS), _find_group(obj, EMA_KEYS)
    if ema:
        if averaged is None:
            raise InputError(
                f"{label} has no EMA weights (looked for {', '.join(EMA_KEYS)}; "
                f"top-level keys: {_top_keys(obj)})",
                "drop --ema",
            )
        chosen = averaged
        notes.append(f"used the EMA weights ({averaged[0]})")
    elif plain is not None:
        chosen = plain
        if averaged is not None:
            notes.append(
                f"checkpoint also has EMA weights ({averaged[0]}); used the plain weights ({plain[0]})"
                " — pass --ema to use them"
            )
    elif averaged is not None:
        chosen = averaged
        notes.append(f"checkpoint has only EMA weights ({averaged[0]}); used them")
    elif _tensor_items(obj):
        chosen = ("", obj)
    else:
        raise InputError(
            f"no tensors found in {label} (top-level keys: {_top_keys(obj) or 'none'})",
            f"expected a state dict, or a training checkpoint with one of {', '.join(WEIGHT_KEYS)}",
        )
    where, group = chosen
    tensors = _tensor_items(group)
    if where:
        if not notes:
            notes.append(f"used the weights under '{where}'")
        others = sorted(str(k) for k in obj if k != where.split(".")[0])
        if others:
            notes.append(f"ignored the other top-level entries: {', '.join(others[:8])}"
                         + (", …" if len(others) > 8 else ""))  # fmt: skip
    skipped = len(group) - len(tensors)
    if skipped:
        notes.append(f"ignored {skipped} non-tensor entries among the weights")
    if averaged is not None and where == averaged[0] and _is_averaged_model(tensors):
        del tensors["n_averaged"]
        notes.append("dropped n_averaged, the step counter of torch.optim.swa_utils.AveragedModel")
    for name, t in tensors.items():
        if t.layout != torch.strided or t.is_quantized:
            raise InputError(
                f"tensor {name} in {label} is {'quantized' if t.is_quantized else str(t.layout)}",
                "only dense tensors are supported; dequantize or densify it first",
            )
    return {name: t.detach() for name, t in tensors.items()}, notes


def _is_averaged_model(tensors: Mapping[str, torch.Tensor]) -> bool:
    """A torchvision-style EMA (``AveragedModel``): ``module.*`` weights plus a ``n_averaged`` counter."""
    return (
        "n_averaged" in tensors
        and len(tensors) > 1
        and all(k.startswith("module.") for k in tensors if k != "n_averaged")
    )


def _strip_prefixes(names: Iterable[str], label: str) -> tuple[dict[str, str], list[str]]:
    """Map stripped key → stored key, removing wrapper prefixes repeatedly and in any order."""
    prefixes = tuple(p for p, _ in _WRAPPER_PREFIXES)
    counts = dict.fromkeys(prefixes, 0)
    keys: dict[str, str] = {}
    for raw in names:
        key = raw
        while key.startswith(prefixes):
            prefix = next(p for p in prefixes if key.startswith(p))
            if len(key) == len(prefix):
                break
            key = key[len(prefix) :]
            counts[prefix] += 1
        if key in keys:
            raise InputError(
                f"keys {keys[key]!r} and {raw!r} of {label} both become {key!r} "
                "once wrapper prefixes are removed",
                "the checkpoint mixes wrapped and unwrapped weights; re-save it from the unwrapped model",
            )
        keys[key] = raw
    notes = [
        f"removed the {why} prefix '{prefix}' from {counts[prefix]} keys"
        for prefix, why in _WRAPPER_PREFIXES
        if counts[prefix]
    ]
    return keys, notes


# --------------------------------------------------------------------------------------------- writing
def write_checkpoint(
    dest: str | os.PathLike[str],
    entries: Sequence[OutTensor],
    *,
    metadata: Mapping[str, str],
    force: bool = False,
    source: Checkpoint | None = None,
    link: bool = False,
    progress: Callable[[int, int], None] | None = None,
    check: Callable[[Path], None] | None = None,
) -> WriteResult:
    """Write tensors to a checkpoint, atomically.

    The format follows ``dest``: ``.safetensors``; ``.pth``/``.pt``/``.bin`` (``torch.save`` of a plain
    dict, which cannot hold ``metadata``: it is dropped, the caller should warn); ``"-"`` streams
    safetensors to stdout; with a sharded ``source`` and a ``dest`` that does not end in
    ``.safetensors``, a sharded directory laid out like ``source``. Output bytes depend only on the
    inputs (keys sorted, no timestamps).

    Safetensors output copies each unchanged tensor (one whose ``origin`` names a ``source`` tensor of
    the same dtype and shape stored in a safetensors file) straight from the source file with
    ``copy_file_range``: the bytes never pass through this process (plain reads and writes in 1 MiB
    pieces where the kernel refuses, e.g. across filesystems or into a pipe).

    A file is written to ``.<name>.<random>.tmp`` next to ``dest``, fsynced, then renamed; a directory is
    built next to ``dest`` and renamed. On any failure or interruption the temporary is removed and
    ``dest`` is untouched.

    Args:
        dest: Output path, or ``"-"`` for stdout.
        entries: Tensors to write; names must be unique.
        metadata: safetensors ``__metadata__`` (string → string).
        force: Replace an existing ``dest``.
        source: The checkpoint the entries come from (still open): unchanged tensors are copied from
            its files; when it is sharded, the output reuses its shard layout, copying shards whose
            tensors are all unchanged.
        link: Hard-link unchanged shards instead of copying them (falls back to copying when the
            filesystem refuses). The linked files share storage with the source.
        progress: Called as ``progress(bytes_done, bytes_total)`` while tensor data is written.
        check: Called with the complete temporary file (or directory, for sharded output) after it is
            fsynced and before it is renamed into place; an exception it raises removes the temporary
            and propagates, so a output that fails verification never appears at ``dest``. Not called
            for stdout.

    Returns:
        A :class:`WriteResult`.

    Raises:
        UsageError: Unsupported extension.
        OutputError: ``dest`` exists without ``force``, is a directory, its directory is missing or not
            writable, the disk is full, or a dtype cannot be stored in the chosen format.
        ValueError / TypeError: Bad ``entries`` or ``metadata`` (duplicate names, a ``get()`` that returns
            the wrong dtype/shape, non-string metadata): bugs in the caller.
    """
    ordered = _check_entries(entries)
    meta = _check_metadata(metadata)
    label = os.fspath(dest)
    if source is not None and source._closed:
        raise ValueError(f"source checkpoint {source.source} is closed; write before closing it")
    if label == "-":
        return _write_stdout(ordered, meta, progress, source)
    path = Path(label)
    sharded = source is not None and source.format == "safetensors-sharded"
    if source is not None and sharded and not path.name.lower().endswith((*WRITE_SUFFIXES, ".json")):
        return _write_sharded(
            path, label, ordered, meta, source, force=force, link=link, progress=progress, check=check
        )
    fmt = _format_for(path, label, sharded=sharded)
    if fmt == "safetensors":
        _check_safetensors_dtypes(ordered, label)
    _check_dest(path, label, force=force)
    try:
        with _atomic_file(path, force=force, check=check) as out:
            counter = _Counter(out)
            if fmt == "safetensors":
                _stream_safetensors(counter, ordered, meta, progress, source)
            else:
                _save_torch(counter, ordered, progress)
    except OSError as exc:
        raise _output_error(exc, label) from exc
    return WriteResult(label, fmt, counter.nbytes)


def _check_entries(entries: Sequence[OutTensor]) -> list[OutTensor]:
    seen: set[str] = set()
    for e in entries:
        if not isinstance(e.name, str) or not e.name or e.name == "__metadata__":
            raise ValueError(f"invalid output tensor name {e.name!r}")
        if e.name in seen:
            raise ValueError(f"duplicate output tensor name {e.name!r}")
        seen.add(e.name)
    return sorted(entries, key=lambda e: e.name)


def _check_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"metadata must map str to str; got {key!r}: {value!r}")
    return dict(sorted(metadata.items()))


def _format_for(path: Path, label: str, *, sharded: bool = False) -> str:
    name = path.name.lower()
    for suffix, fmt in WRITE_SUFFIXES.items():
        if name.endswith(suffix) and len(name) > len(suffix):
            return fmt
    if path.is_dir():
        raise OutputError(f"{label} is a directory", "pass a file path ending in .safetensors")
    also = "; a sharded input can also be written to a directory path" if sharded else ""
    raise UsageError(
        f"cannot tell the output format of {label} from its extension",
        f"use one of {', '.join(WRITE_SUFFIXES)} (or - for stdout){also}",
    )


def _check_safetensors_dtypes(entries: Sequence[OutTensor], label: str) -> None:
    for e in entries:
        if e.dtype not in _DTYPE_CODES:
            raise OutputError(
                f"tensor {e.name} has dtype {e.dtype}, which safetensors cannot store ({label})",
                "write a .pth file instead, or cast the tensor",
            )


def _check_dest(path: Path, label: str, *, force: bool) -> None:
    parent = path.parent
    if not parent.is_dir():
        raise OutputError(f"directory {parent} of {label} does not exist", "create it first")
    if path.is_dir():
        raise OutputError(f"{label} is a directory", "pass a file path, or remove the directory")
    if path.exists() and not force:
        raise OutputError(f"{label} exists", "pass --force to overwrite")


class _Counter:
    """A write-only binary stream that counts what passes through it, and copies file ranges into it.

    An ``OSError`` from the underlying stream is kept in :attr:`error`: ``torch.save`` turns it into a
    ``RuntimeError`` ("unexpected pos …"), and the writer re-raises the original (``ENOSPC``) instead.
    """

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out
        self.nbytes = 0
        self.error: OSError | None = None
        self._in_kernel = hasattr(os, "copy_file_range")  # False once the kernel refuses

    def write(self, data: bytes | memoryview) -> int:
        try:
            self._out.write(data)
        except OSError as exc:
            self.error = exc
            raise
        self.nbytes += len(data)
        return len(data)

    def flush(self) -> None:
        self._out.flush()

    def copy_range(self, fd: int, offset: int, nbytes: int) -> None:
        """Append ``nbytes`` of the file ``fd`` from ``offset`` (``fd``'s own position is not used)."""
        first, end = self.nbytes, offset + nbytes
        out_fd = self._kernel_target()
        while out_fd is not None and offset < end:
            try:
                n = os.copy_file_range(fd, out_fd, end - offset, offset)
            except OSError as exc:
                if exc.errno not in _NO_COPY_RANGE:
                    raise
                self._in_kernel, out_fd = False, None  # another filesystem, a pipe, an old kernel
                break
            if n == 0:
                raise _source_changed(offset)
            offset += n
            self.nbytes += n
        if out_fd is not None:
            _start_writeback(out_fd, first, nbytes)
            return
        while offset < end:
            data = os.pread(fd, min(COPY_BYTES, end - offset), offset)
            if not data:
                raise _source_changed(offset)
            self.write(data)
            offset += len(data)

    def _kernel_target(self) -> int | None:
        """The output's file descriptor, flushed, while ``copy_file_range`` is worth trying."""
        if not self._in_kernel:
            return None
        try:
            out_fd = self._out.fileno()
        except (AttributeError, OSError, ValueError):  # an in-memory stream
            self._in_kernel = False
            return None
        self._out.flush()
        return out_fd


# copy_file_range errors that mean "not between these two files": fall back to read + write.
_NO_COPY_RANGE = frozenset(
    getattr(errno, name)
    for name in ("EXDEV", "EINVAL", "ENOSYS", "EOPNOTSUPP", "ENOTSUP", "EBADF", "ETXTBSY", "EPERM")
    if hasattr(errno, name)
)


def _source_changed(offset: int) -> InputError:
    return InputError(
        f"the source checkpoint ends at byte {offset}, before its header says: it changed while being read",
        "do not modify the checkpoint while modelsurgeon reads it",
    )


def _start_writeback(fd: int, offset: int, nbytes: int) -> None:
    """Ask Linux to start writing ``[offset, offset + nbytes)`` of ``fd`` to disk now, without waiting.

    The final ``fsync`` then finds most of the file already on disk, instead of starting from scratch
    after the copy. Best effort: a no-op where ``sync_file_range`` does not exist.
    """
    sync_file_range = _sync_file_range()
    if sync_file_range is not None:
        sync_file_range(fd, offset, nbytes, 2)  # SYNC_FILE_RANGE_WRITE; errors are ignored


@functools.cache
def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        func = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    func.restype = ctypes.c_int
    return func


@contextlib.contextmanager
def _atomic_file(
    path: Path, *, force: bool, check: Callable[[Path], None] | None = None
) -> Iterator[BinaryIO]:
    """Yield a temp file; on success fsync, ``check``, rename to ``path``; else remove it."""
    tmp = _temp_path(path, ".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        if check is not None:
            check(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())
        _commit(Path(tmp), path, force=force)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _temp_path(path: Path, suffix: str) -> Path:
    """A fresh name next to ``path`` for a temporary file or directory.

    The name is chosen before anything is created, so the caller creates it inside the ``try`` whose
    cleanup removes it: a signal that lands just after the creation still finds the name to remove
    (``tempfile.mkstemp`` creates first and returns the name after, which leaves a window). 64 random
    bits make a clash with another writer's temporary negligible; creation uses ``O_EXCL``/``mkdir``.
    """
    return path.parent / f".{path.name}.{secrets.token_hex(8)}{suffix}"


def _commit(tmp: Path, path: Path, *, force: bool) -> None:
    """Rename ``tmp`` to ``path``; without ``force`` never replace a file that appeared meanwhile."""
    if force:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # fails if path exists, unlike rename
    except FileExistsError as exc:
        raise OutputError(f"{path} exists", "pass --force to overwrite") from exc
    except OSError:  # a filesystem without hard links
        if path.exists():
            raise OutputError(f"{path} exists", "pass --force to overwrite") from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:  # some filesystems cannot fsync a directory
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def _umask() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _output_error(exc: OSError, label: str) -> OutputError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return OutputError(
            f"no space left on the device while writing {label}", "free space, or write elsewhere"
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return OutputError(f"cannot write {label}: permission denied", "choose a writable directory")
    if exc.errno == errno.EROFS:
        return OutputError(f"cannot write {label}: read-only file system", "choose a writable directory")
    if exc.errno == errno.ENOENT:
        return OutputError(f"cannot write {label}: its directory does not exist", "create it first")
    return OutputError(f"cannot write {label}: {exc.strerror or exc}", "check the output path")


# ----------------------------------------------------------------------------------- safetensors out
def _safetensors_header(entries: Sequence[OutTensor], metadata: Mapping[str, str]) -> bytes:
    """Return the 8-byte length plus the JSON header, padded with spaces to a multiple of 8."""
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    offset = 0
    for e in entries:
        header[e.name] = {
            "dtype": _DTYPE_CODES[e.dtype],
            "shape": list(e.shape),
            "data_offsets": [offset, offset + e.nbytes],
        }
        offset += e.nbytes
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw


def _stream_safetensors(
    out: _Counter,
    entries: Sequence[OutTensor],
    metadata: Mapping[str, str],
    progress: Callable[[int, int], None] | None,
    source: Checkpoint | None,
    *,
    done: int = 0,
    total: int | None = None,
) -> int:
    """Write a safetensors file to ``out`` tensor by tensor; return the data bytes done so far.

    Unchanged tensors stored raw in ``source`` are copied file to file (:meth:`_Counter.copy_range`);
    consecutive ones that are also consecutive in the source file are copied as one run, in pieces of
    :data:`COPY_SPAN_BYTES` so that progress moves. The others are fetched and written.
    """
    total = sum(e.nbytes for e in entries) if total is None else total
    out.write(_safetensors_header(entries, metadata))
    scratch: list[torch.Tensor] = []  # one buffer for every non-contiguous tensor of this file
    run: list[int] = []  # the pending run of raw copies: [fd, offset, nbytes]

    def flush_run() -> int:
        copied = done
        if run:
            fd, offset, nbytes = run
            for start in range(0, nbytes, COPY_SPAN_BYTES):
                size = min(COPY_SPAN_BYTES, nbytes - start)
                out.copy_range(fd, offset + start, size)
                copied += size
                if progress is not None:
                    progress(copied, total)
            run.clear()
        return copied

    for e in entries:
        span = source._span(e.origin, TensorInfo(e.dtype, tuple(e.shape))) if source and e.origin else None
        if span is not None:
            if run and run[0] == span[0] and run[1] + run[2] == span[1]:
                run[2] += e.nbytes
            else:
                done = flush_run()
                run[:] = [span[0], span[1], e.nbytes]
            continue
        done = flush_run()
        for chunk in _tensor_chunks(_fetch(e), scratch):
            out.write(chunk)
            done += len(chunk)
            if progress is not None:
                progress(done, total)
    return flush_run()


def _fetch(e: OutTensor) -> torch.Tensor:
    t = e.get()
    if t.dtype != e.dtype or tuple(t.shape) != tuple(e.shape):
        raise ValueError(
            f"output tensor {e.name}: get() returned {t.dtype} {tuple(t.shape)}, declared {e.dtype} {e.shape}"
        )
    return t.detach().cpu().resolve_conj().resolve_neg()


def _tensor_chunks(t: torch.Tensor, scratch: list[torch.Tensor] | None = None) -> Iterator[memoryview]:
    """Yield the bytes of ``t`` (C order) in chunks of at most :data:`CHUNK_BYTES`.

    A non-contiguous ``t`` is copied chunk by chunk into one reused scratch buffer (kept in ``scratch``,
    so a caller can share it across tensors): a yielded view is valid only until the next one is
    requested. Reusing the buffer keeps the allocator from growing the heap chunk after chunk.
    """
    if t.is_contiguous():
        flat = t.reshape(-1)
        if flat.numel() == 1 and flat.stride(0) != 1:  # "contiguous" by torch's rule for size-1 dims
            flat = flat.clone(memory_format=torch.contiguous_format)
        flat = flat.view(torch.uint8)
        for start in range(0, flat.numel(), CHUNK_BYTES):
            yield memoryview(flat[start : start + CHUNK_BYTES].numpy())  # type: ignore[arg-type]
        return
    scratch = [] if scratch is None else scratch
    if not scratch or scratch[0].numel() < CHUNK_BYTES:
        scratch[:] = [torch.empty(CHUNK_BYTES, dtype=torch.uint8)]
    row_bytes = math.prod(t.shape[1:]) * t.element_size()
    if row_bytes > CHUNK_BYTES:
        for row in t:
            yield from _tensor_chunks(row, scratch)
        return
    rows = max(1, CHUNK_BYTES // max(row_bytes, 1))
    for start in range(0, t.shape[0], rows):
        part = t[start : start + rows]
        nbytes = part.numel() * part.element_size()
        raw = scratch[0][:nbytes]
        raw.view(part.dtype).view(part.shape).copy_(part)
        yield memoryview(raw.numpy())  # type: ignore[arg-type]


def _write_stdout(
    entries: Sequence[OutTensor],
    metadata: Mapping[str, str],
    progress: Callable[[int, int], None] | None,
    source: Checkpoint | None,
) -> WriteResult:
    _check_safetensors_dtypes(entries, "stdout")
    isatty = getattr(sys.stdout, "isatty", None)
    if isatty is not None and isatty():
        raise OutputError(
            "refusing to write a binary checkpoint to a terminal", "redirect stdout to a file or a pipe"
        )
    counter = _Counter(sys.stdout.buffer)
    try:
        _stream_safetensors(counter, entries, metadata, progress, source)
        counter.flush()
    except BrokenPipeError as exc:
        raise OutputError(
            "stdout was closed before the checkpoint was written", "check the receiving command"
        ) from exc
    except OSError as exc:
        raise _output_error(exc, "stdout") from exc
    return WriteResult("-", "safetensors", counter.nbytes)


# ----------------------------------------------------------------------------------------- torch out
def _save_torch(
    out: _Counter, entries: Sequence[OutTensor], progress: Callable[[int, int], None] | None
) -> None:
    """``torch.save`` a plain dict; every tensor is materialized (peak memory ≈ the checkpoint size)."""
    total = sum(e.nbytes for e in entries)
    state: dict[str, torch.Tensor] = {}
    for e in entries:
        t = _fetch(e).contiguous()
        if t.untyped_storage().nbytes() != t.numel() * t.element_size():
            t = t.clone()  # a view into a bigger storage (an mmap'd file): save only its own bytes
        state[e.name] = t
    if progress is not None:
        progress(0, total)
    try:
        torch.save(state, out)  # type: ignore[arg-type]
    except RuntimeError as exc:
        if out.error is not None:  # the disk filled up (or another I/O error) inside torch's writer
            raise out.error from exc
        raise
    if progress is not None:
        progress(total, total)


# --------------------------------------------------------------------------------------- sharded out
def _write_sharded(
    path: Path,
    label: str,
    entries: Sequence[OutTensor],
    metadata: Mapping[str, str],
    source: Checkpoint,
    *,
    force: bool,
    link: bool,
    progress: Callable[[int, int], None] | None,
    check: Callable[[Path], None] | None = None,
) -> WriteResult:
    """Write a sharded safetensors directory laid out like ``source``."""
    _check_safetensors_dtypes(entries, label)
    parent = path.parent
    if not parent.is_dir():
        raise OutputError(f"directory {parent} of {label} does not exist", "create it first")
    if path.exists() and not force:
        raise OutputError(f"{label} exists", "pass --force to overwrite")
    plan = _plan_shards(entries, source)
    total = sum(e.nbytes for e in entries)
    tmp = _temp_path(path, ".tmp")
    try:
        os.mkdir(tmp, 0o700)
        nbytes = done = 0
        for shard, (shard_entries, copy) in plan.items():
            target = tmp / shard
            if copy:
                nbytes += _copy_shard(source, shard, target, link=link)
                done += sum(e.nbytes for e in shard_entries)
                if progress is not None:
                    progress(done, total)
            else:
                with target.open("wb") as f:
                    counter = _Counter(f)
                    done = _stream_safetensors(
                        counter, shard_entries, metadata, progress, source, done=done, total=total
                    )
                    f.flush()
                    os.fsync(f.fileno())
                nbytes += counter.nbytes
        weight_map = {e.name: shard for shard, (group, _) in plan.items() for e in group}
        index = {
            "metadata": {"total_size": total, **metadata},
            "weight_map": dict(sorted(weight_map.items())),
        }
        raw = (json.dumps(index, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
        with (tmp / INDEX_NAME).open("wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        nbytes += len(raw)
        os.chmod(tmp, 0o777 & ~_umask())
        _fsync_dir(tmp)
        if check is not None:
            check(tmp)
        _swap_in_dir(tmp, path, label, force=force)
        _fsync_dir(parent)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            raise _output_error(exc, label) from exc
        raise
    return WriteResult(label, "safetensors-sharded", nbytes)


def _plan_shards(entries: Sequence[OutTensor], source: Checkpoint) -> dict[str, tuple[list[OutTensor], bool]]:
    """Assign entries to source shards; return shard → (entries, copy unchanged shard?)."""
    slots = source._slots
    shard_names = sorted(source._shard_paths)
    groups: dict[str, list[OutTensor]] = {name: [] for name in shard_names}
    for e in entries:
        slot = slots.get(e.origin or "") or slots.get(e.name)
        groups[slot.shard if slot is not None and slot.shard else shard_names[-1]].append(e)
    plan: dict[str, tuple[list[OutTensor], bool]] = {}
    for shard, group in groups.items():
        if not group:
            continue
        source_keys = {k for k, s in slots.items() if s.shard == shard}
        unchanged = {e.name for e in group} == source_keys and all(
            e.origin == e.name
            and slots[e.name].raw_name == e.name
            and slots[e.name].info == TensorInfo(e.dtype, tuple(e.shape))
            for e in group
        )
        plan[shard] = (group, unchanged)
    return plan


def _copy_shard(source: Checkpoint, shard: str, target: Path, *, link: bool) -> int:
    """Copy (or hard-link) a source shard, from the file opened at read time; return its size."""
    if link:
        try:
            os.link(source._shard_paths[shard], target)
        except OSError:  # another device, or a filesystem without hard links: copy instead
            pass
        else:
            return target.stat().st_size
    fd = source._handles[shard].fileno()
    size = os.fstat(fd).st_size
    with target.open("wb") as fout:
        counter = _Counter(fout)
        for start in range(0, size, COPY_SPAN_BYTES):
            counter.copy_range(fd, start, min(COPY_SPAN_BYTES, size - start))
        fout.flush()
        os.fsync(fout.fileno())
    return size


def _swap_in_dir(tmp: Path, path: Path, label: str, *, force: bool) -> None:
    """Rename the finished ``tmp`` directory to ``path``, in one atomic step where Linux allows.

    A new ``path`` is claimed with ``RENAME_NOREPLACE`` (a directory that appeared meanwhile is never
    replaced without ``force``); an existing one is swapped with ``RENAME_EXCHANGE``, so readers see the
    old output or the new one, never neither, and the old one is removed afterwards. Elsewhere (another
    OS, a filesystem without these flags) the old output is first renamed aside: two renames.
    """
    exists = path.exists() or path.is_symlink()
    if not exists:
        try:
            if _renameat2(tmp, path, _RENAME_NOREPLACE):
                return
        except FileExistsError:  # it appeared after the check: replace it only with force
            pass
        else:  # no renameat2 here
            exists = path.exists() or path.is_symlink()
            if not exists:
                os.rename(tmp, path)
                return
    if not force:
        raise OutputError(f"{label} exists", "pass --force to overwrite")
    if _renameat2(tmp, path, _RENAME_EXCHANGE):
        _remove_tree(tmp)  # it holds the old output now
        return
    old = _temp_path(path, ".old")  # a free name: os.rename below creates it
    os.rename(path, old)
    try:
        os.rename(tmp, path)
    except BaseException:
        os.rename(old, path)
        raise
    _remove_tree(old)


def _remove_tree(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink()


_RENAME_NOREPLACE = 1
_RENAME_EXCHANGE = 2
# renameat2 errors that mean "not supported here": fall back to plain renames.
_NO_RENAMEAT2 = frozenset(
    getattr(errno, name) for name in ("ENOSYS", "EINVAL", "EOPNOTSUPP", "ENOTSUP") if hasattr(errno, name)
)


def _renameat2(src: Path, dst: Path, flags: int) -> bool:
    """``renameat2(src, dst, flags)``; False where the call or the flag is not supported.

    Raises ``OSError`` for real failures (``FileExistsError`` when ``RENAME_NOREPLACE`` finds ``dst``).
    """
    func = _renameat2_func()
    if func is None:
        return False
    import ctypes

    if func(-100, os.fsencode(src), -100, os.fsencode(dst), flags) == 0:  # -100: AT_FDCWD
        return True
    err = ctypes.get_errno()
    if err in _NO_RENAMEAT2:
        return False
    raise OSError(err, os.strerror(err), os.fspath(dst))


@functools.cache
def _renameat2_func() -> Callable[[int, bytes, int, bytes, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        func = ctypes.CDLL(None, use_errno=True).renameat2  # glibc 2.28+
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    func.restype = ctypes.c_int
    return func
