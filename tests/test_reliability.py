"""Reliability promises of the CLI: no code from pickles, no half-written files, no changed inputs.

Each test proves one promise of docs/reliability.md. Fault injection uses real signals sent to real
``python -m modelsurgeon`` processes (timed by polling for the temporary output file, no test hook in
the product), a real full filesystem and a real read-only filesystem (tmpfs mounts: the tests run as
root in CI and are skipped, with the reason, where mounting is not allowed). Everything else runs
in-process through Typer's ``CliRunner`` to keep ``make test`` fast.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from typer.testing import CliRunner

from modelsurgeon.cli.app import app
from tests.conftest import sha256_of

runner = CliRunner()
REHEAD = ["rehead", "--arch", "test_vit", "--classes", "3"]
TMP_NAME = re.compile(r"^\..+\.tmp$")


def _temp_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if TMP_NAME.match(p.name))


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


def _popen(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "modelsurgeon", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=full_env,
    )


@pytest.fixture
def vit_ckpt(state_dict_of: Callable[..., dict], save_safetensors: Callable[..., Path]) -> Path:
    """A 1.5 MB ``test_vit`` checkpoint in the test's directory."""
    return save_safetensors(state_dict_of("test_vit"), "test_vit.safetensors")


# ------------------------------------------------------------------------------------ unsafe pickles
class _System:
    """Unpickling this runs ``os.system("touch MARKER")``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


class _Exec:
    """Unpickling this runs ``exec`` of code that creates MARKER."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (builtins.exec, (f"open({str(self.marker)!r}, 'w').close()",))


def _evil(path: Path, marker: Path, *, legacy: bool, payload: type = _System) -> Path:
    """A real-looking training checkpoint with a code-running object beside the weights."""
    obj = {"state_dict": {"w": torch.zeros(2)}, "epoch": 1, "callback": payload(marker)}
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    return path


@pytest.mark.parametrize(
    ("name", "legacy"), [("evil.pth", False), ("evil.pt", True), ("pytorch_model.bin", False)]
)
@pytest.mark.parametrize("payload", [_System, _Exec])
def test_unsafe_pickle_is_refused_by_every_command_and_never_runs(
    tmp_path: Path, name: str, legacy: bool, payload: type
) -> None:
    """rehead and inspect refuse a torch zip, a legacy file and a ``.bin`` whose unpickling would run
    code (``os.system`` / ``exec``): exit 3, one line naming the global, and the payload never ran."""
    marker = tmp_path / "PWNED"
    path = _evil(tmp_path / name, marker, legacy=legacy, payload=payload)
    before = sha256_of(path)
    for args in ([*REHEAD, "--checkpoint", str(path), "--out", "o.safetensors"], ["inspect", str(path)]):
        result = runner.invoke(app, args)
        assert result.exit_code == 3, result.stderr
        line = _one_error_line(result.stderr)
        assert "refusing to unpickle" in line and ("system" in line or "exec" in line), line
        assert "never unpickles code" in line
    assert not marker.exists()
    assert not (tmp_path / "o.safetensors").exists()
    assert sha256_of(path) == before


def test_unsafe_pickle_in_a_real_process_never_runs(tmp_path: Path) -> None:
    """The same through ``python -m modelsurgeon`` on a legacy ``.bin``: exit 3, one line, no marker."""
    marker = tmp_path / "PWNED"
    path = _evil(tmp_path / "pytorch_model.bin", marker, legacy=True)
    proc = _popen(*REHEAD, "--checkpoint", str(path), "--out", str(tmp_path / "o.safetensors"))
    _, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 3, stderr.decode()
    assert "posix.system" in _one_error_line(stderr.decode())
    assert not marker.exists() and not (tmp_path / "o.safetensors").exists()


# ----------------------------------------------------------------------------------------- signals
@pytest.fixture(scope="session")
def big_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random ``vit_small_patch16_224`` checkpoint (88 MB): writing and verifying it takes a while."""
    from modelsurgeon.archs import build_model

    path = tmp_path_factory.mktemp("big") / "vit_small.safetensors"
    generator = torch.Generator().manual_seed(0)
    model = build_model("vit_small_patch16_224")
    state = {k: torch.randn(v.shape, generator=generator) * 0.02 for k, v in model.state_dict().items()}
    from safetensors.torch import save_file

    save_file(state, str(path))
    return path


def _signal_when_temp_appears(
    procs: dict[int, tuple[subprocess.Popen[bytes], Path]], timeout: float = 240
) -> dict[int, str]:
    """Send each process its signal as soon as a ``.*.tmp`` file shows up in its output directory."""
    pending = dict(procs)
    seen: dict[int, str] = {}
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for sig, (proc, directory) in list(pending.items()):
            temps = _temp_files(directory)
            if temps:
                proc.send_signal(sig)
                seen[sig] = temps[0]
                del pending[sig]
            elif proc.poll() is not None:
                del pending[sig]  # finished without a temp file we could see: asserted below
        time.sleep(0.001)
    return seen


def test_sigint_and_sigterm_during_the_write_leave_nothing(tmp_path: Path, big_ckpt: Path) -> None:
    """SIGINT / SIGTERM while the output is being written (or verified) end with 130 / 143, one line
    ``interrupted``, nothing at the output path, no temporary file, and the input unchanged."""
    before = sha256_of(big_ckpt)
    procs = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        directory = tmp_path / sig.name
        directory.mkdir()
        out = directory / "o.safetensors"
        args = ["rehead", "--arch", "vit_small_patch16_224", "--classes", "3", "--checkpoint", str(big_ckpt)]
        procs[sig] = (_popen(*args, "--out", str(out)), directory)
    seen = _signal_when_temp_appears(procs)
    for sig, (proc, directory) in procs.items():
        _, stderr = proc.communicate(timeout=120)
        text = stderr.decode()
        assert sig in seen, f"{sig.name}: no temporary output appeared (exit {proc.returncode}): {text}"
        assert proc.returncode == 128 + sig, (sig.name, proc.returncode, text)
        assert f"interrupted by {sig.name}" in _one_error_line(text)
        assert list(directory.iterdir()) == [], sig.name  # no output, no temp file
    assert sha256_of(big_ckpt) == before


# ------------------------------------------------------------------------------- full / read-only disk
@contextlib.contextmanager
def _tmpfs(directory: Path, options: str) -> Iterator[Path]:
    """Mount a tmpfs on ``directory`` (skipping the test where mounting is not allowed)."""
    directory.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(directory)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root in CI): {done.stderr.strip()}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


@pytest.mark.parametrize("name", ["o.safetensors", "o.pth"])
def test_full_disk_exits_4_and_leaves_nothing(tmp_path: Path, vit_ckpt: Path, name: str) -> None:
    """Writing 1.5 MB to a 1 MB tmpfs: exit 4, one line saying to free space, the disk left empty."""
    before = sha256_of(vit_ckpt)
    with _tmpfs(tmp_path / "full", "size=1m") as full:
        result = runner.invoke(app, [*REHEAD, "--checkpoint", str(vit_ckpt), "--out", str(full / name)])
        assert result.exit_code == 4, result.stderr
        assert "no space left" in _one_error_line(result.stderr)
        assert list(full.iterdir()) == []
    assert sha256_of(vit_ckpt) == before


def test_read_only_directory_exits_4_and_leaves_nothing(tmp_path: Path, vit_ckpt: Path) -> None:
    """A read-only filesystem as output directory (chmod does not stop root): exit 4, one line."""
    with _tmpfs(tmp_path / "ro", "ro,size=1m") as readonly:
        result = runner.invoke(
            app, [*REHEAD, "--checkpoint", str(vit_ckpt), "--out", str(readonly / "o.safetensors")]
        )
        assert result.exit_code == 4, result.stderr
        assert "read-only file system" in _one_error_line(result.stderr)
        assert list(readonly.iterdir()) == []


# ------------------------------------------------------------------------------------- concurrency
def test_concurrent_forced_writes_leave_one_complete_output(tmp_path: Path, vit_ckpt: Path) -> None:
    """Four processes (different seeds and hash seeds) race to ``--out`` with ``--force``: all succeed,
    and the final file is exactly the bytes an in-process run with one of the seeds writes (complete,
    loadable, deterministic across processes), with no temporary file left."""
    before = sha256_of(vit_ckpt)
    seeds = [1, 2, 3, 4]
    expected = {}
    for seed in seeds:
        result = runner.invoke(
            app,
            [*REHEAD, "--checkpoint", str(vit_ckpt), "--seed", str(seed), "--out", f"ref{seed}.safetensors"],
        )
        assert result.exit_code == 0, result.stderr
        expected[seed] = sha256_of(Path(f"ref{seed}.safetensors"))
    assert len(set(expected.values())) == len(seeds)
    race = tmp_path / "race"
    race.mkdir()
    out = race / "o.safetensors"
    procs = {
        seed: _popen(
            *REHEAD,
            "--checkpoint",
            str(vit_ckpt),
            "--seed",
            str(seed),
            "--out",
            str(out),
            "--force",
            "--json",
            env={"PYTHONHASHSEED": str(seed * 7)},
        )
        for seed in seeds
    }
    for seed, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=240)
        assert proc.returncode == 0, stderr.decode()
        assert json.loads(stdout)["seed"] == seed
    assert sha256_of(out) in expected.values()
    assert load_file(str(out))["head.weight"].shape[0] == 3
    assert [p.name for p in race.iterdir()] == ["o.safetensors"]
    assert sha256_of(vit_ckpt) == before


# -------------------------------------------------------------------------------- the input is kept
def test_out_equal_to_the_input_in_any_spelling_is_refused(tmp_path: Path, vit_ckpt: Path) -> None:
    """``--out`` naming the input (relative, ``./``, absolute, via a symlink or a hard link) is refused
    with exit 2 without ``--force``; the input keeps its bytes."""
    before = sha256_of(vit_ckpt)
    (tmp_path / "link.safetensors").symlink_to(vit_ckpt)
    os.link(vit_ckpt, tmp_path / "hard.safetensors")
    for spelling in [
        vit_ckpt.name,
        f"./{vit_ckpt.name}",
        str(vit_ckpt),
        "link.safetensors",
        "hard.safetensors",
    ]:
        result = runner.invoke(app, [*REHEAD, "--checkpoint", vit_ckpt.name, "--out", spelling])
        assert result.exit_code == 2, (spelling, result.stderr)
        assert "is the input checkpoint" in _one_error_line(result.stderr)
    assert sha256_of(vit_ckpt) == before


def test_forced_out_equal_to_the_input_replaces_it_atomically(tmp_path: Path, vit_ckpt: Path) -> None:
    """With ``--force`` the input is replaced by a rename, never rewritten in place: a hard link taken
    before still holds the old bytes, the new file records the old file's sha256, no temp file is left."""
    before = sha256_of(vit_ckpt)
    old_inode = vit_ckpt.stat().st_ino
    os.link(vit_ckpt, tmp_path / "old.safetensors")
    result = runner.invoke(app, [*REHEAD, "--checkpoint", str(vit_ckpt), "--out", str(vit_ckpt), "--force"])
    assert result.exit_code == 0, result.stderr
    assert sha256_of(tmp_path / "old.safetensors") == before  # the old inode was never written to
    assert vit_ckpt.stat().st_ino != old_inode
    with safe_open(str(vit_ckpt), "pt") as f:
        assert f.metadata()["modelsurgeon.source_sha256"] == before
        assert f.get_slice("head.weight").get_shape()[0] == 3
    assert _temp_files(tmp_path) == []


# ----------------------------------------------------------------------------------- determinism
def test_same_inputs_and_seed_give_the_same_bytes_from_a_file_or_stdin(vit_ckpt: Path) -> None:
    """The same checkpoint and seed give identical bytes: run twice, read from stdin, written to
    stdout, and (for ``.pth``) twice under different names; another seed gives other bytes."""
    data = vit_ckpt.read_bytes()
    base = [*REHEAD, "--seed", "7"]

    def run(*args: str, stdin: bytes | None = None) -> Any:
        result = runner.invoke(app, [*base, *args], input=stdin)
        assert result.exit_code == 0, result.stderr
        return result

    run("--checkpoint", str(vit_ckpt), "--out", "a.safetensors")
    run("--checkpoint", str(vit_ckpt), "--out", "b.safetensors")
    run("--checkpoint", "-", "--out", "c.safetensors", stdin=data)
    piped = run("--checkpoint", "-", "--out", "-", stdin=data).stdout_bytes
    first = Path("a.safetensors").read_bytes()
    assert Path("b.safetensors").read_bytes() == first
    assert Path("c.safetensors").read_bytes() == first
    assert piped == first
    run("--checkpoint", str(vit_ckpt), "--out", "a.pth")
    run("--checkpoint", str(vit_ckpt), "--out", "other.pth")
    assert Path("a.pth").read_bytes() == Path("other.pth").read_bytes()
    runner.invoke(app, [*REHEAD, "--seed", "8", "--checkpoint", str(vit_ckpt), "--out", "d.safetensors"])
    assert Path("d.safetensors").read_bytes() != first
    assert vit_ckpt.read_bytes() == data
