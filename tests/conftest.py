"""Shared fixtures: tiny real models, checkpoints made on the fly, an offline Hugging Face cache.

Every test runs in its own temporary working directory with an empty, offline hub cache, so default
output paths and hub look-ups never touch the developer's machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.delenv("MODELSURGEON_DEBUG", raising=False)
    yield


def _state_dict(arch: str, seed: int = 0, **kwargs: object) -> dict:
    import timm
    import torch
    import torchvision

    torch.manual_seed(seed)
    if arch.startswith("torchvision:"):
        name = arch.split(":", 1)[1]
        model = torchvision.models.get_model(name, weights=None, **kwargs)
    else:
        model = timm.create_model(arch, pretrained=False, **kwargs)
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


@pytest.fixture(scope="session")
def state_dict_of() -> Callable[..., dict]:
    """``state_dict_of(arch, seed=0, **kwargs)``: a deterministic random state dict of a real arch."""
    cache: dict[tuple, dict] = {}

    def make(arch: str, seed: int = 0, **kwargs: object) -> dict:
        key = (arch, seed, tuple(sorted(kwargs.items())))
        if key not in cache:
            cache[key] = _state_dict(arch, seed, **kwargs)
        return {k: v.clone() for k, v in cache[key].items()}

    return make


@pytest.fixture
def save_safetensors(tmp_path: Path) -> Callable[..., Path]:
    """``save_safetensors(state, name="model.safetensors", metadata=None) -> Path``."""

    def save(state: dict, name: str = "model.safetensors", metadata: dict | None = None) -> Path:
        from safetensors.torch import save_file

        path = tmp_path / name
        save_file(state, str(path), metadata=metadata)
        return path

    return save


@pytest.fixture
def save_torch(tmp_path: Path) -> Callable[..., Path]:
    """``save_torch(obj, name="model.pth", legacy=False) -> Path``."""

    def save(obj: object, name: str = "model.pth", legacy: bool = False) -> Path:
        import torch

        path = tmp_path / name
        torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
        return path

    return save


@pytest.fixture
def hub_cache(tmp_path: Path) -> Callable[..., Path]:
    """Lay out timm's pretrained weights for an arch in the offline hub cache (``$HF_HOME/hub``)."""

    def lay_out(arch: str, state: dict, rev: str = "0123456789abcdef0123456789abcdef01234567") -> Path:
        import timm
        from safetensors.torch import save_file

        repo_id = timm.models.get_pretrained_cfg(arch).hf_hub_id
        repo = tmp_path / "hf" / "hub" / ("models--" + repo_id.replace("/", "--"))
        snapshot = repo / "snapshots" / rev
        snapshot.mkdir(parents=True)
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text(rev)
        save_file(state, str(snapshot / "model.safetensors"))
        return snapshot / "model.safetensors"

    return lay_out


def sha256_of(path: Path) -> str:
    """The sha256 of a file's bytes, hex."""
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def invoke(*args: str, input: bytes | None = None):
    """Run ``modelsurgeon ARGS`` in-process with typer's CliRunner (stdout and stderr kept apart)."""
    from typer.testing import CliRunner

    from modelsurgeon.cli.app import app

    return CliRunner().invoke(app, list(args), input=input, catch_exceptions=False)


def one_line_error(result, code: int) -> str:
    """Assert ``result`` failed with ``code``: one ``error:`` line on stderr, no traceback, empty stdout."""
    assert result.exit_code == code, (result.exit_code, result.stderr)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    return lines[0]


def run_cli(
    *args: str,
    input: bytes | None = None,
    env: dict | None = None,
    cwd: Path | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess:
    """Run ``python -m modelsurgeon ARGS`` in a subprocess; returns the completed process (bytes)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "modelsurgeon", *args],
        input=input,
        capture_output=True,
        env=full_env,
        cwd=cwd,
        timeout=timeout,
    )
