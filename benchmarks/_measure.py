"""Shared helpers of the benchmarks: random checkpoints, and wall time + memory of a child process.

Memory of a child is measured two ways:

- **peak RssAnon**: a sampler thread in the benchmark process reads ``RssAnon`` from
  ``/proc/PID/status`` of the child every :data:`POLL_S` seconds until it exits. Anonymous memory is
  what a process allocates (heap, tensors it builds); pages of memory-mapped files are ``RssFile`` and
  are not counted, since the kernel can drop them at will. A spike shorter than the poll interval can be
  missed.
- **VmHWM**: the peak resident set (anonymous + file-backed + shared), as the kernel reports it in the
  ``ru_maxrss`` of ``os.wait4`` when the child is reaped. No wrapper process is needed.

Every child is started from an argv list (no shell), so the polled PID is the process doing the work.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "POLL_S",
    "Sample",
    "make_checkpoint",
    "median",
    "run_measured",
    "run_steps",
    "warm",
]

POLL_S = 0.003
"""Seconds between two reads of the child's ``/proc/PID/status``."""


@dataclass(frozen=True)
class Sample:
    """One measured run.

    Args:
        wall_s: Seconds from just before the child was started to just after it was reaped.
        cpu_s: CPU seconds of the child (user + system, all its threads and reaped children).
        anon_kib: Peak ``RssAnon`` seen by the sampler, in KiB.
        hwm_kib: Peak resident set (``ru_maxrss``), in KiB.
        polls: How many times the sampler read the child's status.
    """

    wall_s: float
    cpu_s: float
    anon_kib: int
    hwm_kib: int
    polls: int


def _rss_anon_kib(status_path: str) -> int | None:
    try:
        with open(status_path, encoding="ascii") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None  # a zombie has no Rss lines


def run_measured(argv: Sequence[str], *, cwd: str | None = None, poll_s: float = POLL_S) -> Sample:
    """Run ``argv`` to completion, sampling its anonymous memory; raise if it fails.

    Args:
        argv: The command; stdout is discarded, stderr is kept for the error message.
        cwd: Working directory of the child.
        poll_s: Seconds between samples of ``/proc/PID/status``.

    Returns:
        The :class:`Sample`.

    Raises:
        RuntimeError: The child exited with a non-zero status.
    """
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(list(argv), stdout=subprocess.DEVNULL, stderr=err, cwd=cwd)
        peak = [0, 0]  # RssAnon KiB, polls
        done = threading.Event()

        def sample() -> None:
            path = f"/proc/{proc.pid}/status"
            while not done.is_set():
                kib = _rss_anon_kib(path)
                if kib is not None:
                    peak[0] = max(peak[0], kib)
                    peak[1] += 1
                done.wait(poll_s)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        done.set()
        sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            tail = err.read().decode("utf-8", "replace")[-2000:]
            raise RuntimeError(f"{' '.join(argv)} exited with {proc.returncode}:\n{tail}")
    return Sample(wall, usage.ru_utime + usage.ru_stime, peak[0], int(usage.ru_maxrss), peak[1])


def run_steps(steps: Sequence[Sequence[str]], *, cwd: str | None = None) -> Sample:
    """Run commands one after the other; wall times add up, memory peaks are the largest."""
    samples = [run_measured(argv, cwd=cwd) for argv in steps]
    return Sample(
        sum(s.wall_s for s in samples),
        sum(s.cpu_s for s in samples),
        max(s.anon_kib for s in samples),
        max(s.hwm_kib for s in samples),
        sum(s.polls for s in samples),
    )


def median(values: Sequence[float]) -> float:
    """The median (the mean of the two middle values for an even count)."""
    return float(statistics.median(values))


def warm(paths: Sequence[Path]) -> int:
    """Read every file under ``paths`` once so that it sits in the page cache; return the bytes read."""
    total = 0
    for root in paths:
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for path in files:
            with path.open("rb", buffering=0) as f:
                while chunk := f.read(64 << 20):
                    total += len(chunk)
    return total


def make_checkpoint(arch: str, dest: Path, *, shard_mib: int | None = None, seed: int = 0) -> None:
    """Write a checkpoint of ``arch`` with random weights (float32 normal, std 0.02), tensor by tensor.

    The arch is built on the meta device only to learn the state-dict names and shapes, so making a
    2.5 GB checkpoint needs about one shard of memory.

    Args:
        arch: A timm model name.
        dest: A ``.safetensors`` file, or (with ``shard_mib``) a directory for a sharded checkpoint
            (``model-0000K-of-0000N.safetensors`` + ``model.safetensors.index.json``).
        shard_mib: Start a new shard once this many MiB are collected; ``None`` writes one file.
        seed: Seed of the generator.
    """
    import timm
    import torch
    from safetensors.torch import save_file

    with torch.device("meta"):
        model = timm.create_model(arch, pretrained=False)
    shapes = {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()}
    generator = torch.Generator().manual_seed(seed)

    def value(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        if dtype.is_floating_point:
            return torch.randn(shape, generator=generator, dtype=torch.float32).mul_(0.02)
        return torch.zeros(shape, dtype=dtype)

    tmp = dest.with_name(dest.name + ".tmp")
    if shard_mib is None:
        save_file({k: value(s, d) for k, (s, d) in shapes.items()}, str(tmp), metadata={"format": "pt"})
        os.replace(tmp, dest)
        return
    groups: list[list[str]] = [[]]
    size = 0
    for key, (shape, _) in shapes.items():
        nbytes = math.prod(shape) * 4
        if groups[-1] and size + nbytes > shard_mib << 20:
            groups.append([])
            size = 0
        groups[-1].append(key)
        size += nbytes
    tmp.mkdir(parents=True, exist_ok=True)
    weight_map: dict[str, str] = {}
    total = 0
    for i, keys in enumerate(groups, 1):
        name = f"model-{i:05d}-of-{len(groups):05d}.safetensors"
        tensors = {k: value(*shapes[k]) for k in keys}
        total += sum(t.numel() * t.element_size() for t in tensors.values())
        save_file(tensors, str(tmp / name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(keys, name))
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (tmp / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, dest)


if __name__ == "__main__":  # used by rehead.py to make checkpoints in a separate process
    _arch, _dest, _shard = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    make_checkpoint(_arch, _dest, shard_mib=int(_shard) if _shard != "-" else None)
