"""The CLI as a process: the documented command, streams, exit codes, start-up imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from safetensors.torch import load, load_file

from tests.conftest import run_cli


def test_the_documented_command_works_offline_from_the_hub_cache(
    state_dict_of: Callable[..., dict], hub_cache: Callable[..., Path], tmp_path: Path
) -> None:
    src = hub_cache("vit_base_patch16_224", state_dict_of("vit_base_patch16_224"))
    proc = run_cli(
        "rehead", "--arch", "vit_base_patch16_224", "--classes", "10", "--std", "2e-5", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == b""
    out = load_file(tmp_path / "vit_base_patch16_224-10cls.safetensors")
    w = out["head.weight"]
    assert w.shape == (10, 768)
    assert float(w.abs().max()) < 2e-5 * 6.5  # no value anywhere near the absolute ±2 bounds
    assert abs(float(w.std()) - 2e-5) < 2e-6
    assert b"cut nothing" in proc.stderr  # ±2 is 100,000 std away: warned
    ref = load_file(src)
    assert all(out[k].equal(v) for k, v in ref.items() if not k.startswith("head."))


def test_hub_weights_not_cached_says_pass_checkpoint() -> None:
    from typer.testing import CliRunner

    from modelsurgeon.cli.app import app

    result = CliRunner().invoke(app, ["rehead", "--arch", "resnet18", "--classes", "3"])
    assert result.exit_code == 3
    err = result.stderr.strip().splitlines()
    assert len(err) == 1 and "--checkpoint" in err[0] and "HF_HUB_OFFLINE" in err[0]


def test_torchvision_arch_needs_a_checkpoint() -> None:
    from typer.testing import CliRunner

    from modelsurgeon.cli.app import app

    result = CliRunner().invoke(app, ["rehead", "--arch", "tv:resnet18", "--classes", "3"])
    assert result.exit_code == 2
    assert "--checkpoint" in result.stderr


def test_stdin_to_stdout_pipeline(
    state_dict_of: Callable[..., dict], save_safetensors: Callable[..., Path], tmp_path: Path
) -> None:
    path = save_safetensors(state_dict_of("test_vit"))
    proc = run_cli(
        "rehead", "--arch", "test_vit", "--classes", "4", "--checkpoint", "-", "--out", "-", "--seed", "2",
        input=path.read_bytes(), cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()
    tensors = load(proc.stdout)
    assert tensors["head.weight"].shape[0] == 4
    from_file = run_cli(
        "rehead", "--arch", "test_vit", "--classes", "4", "--checkpoint", str(path), "--out", "f.safetensors",
        "--seed", "2", cwd=tmp_path,
    )  # fmt: skip
    assert from_file.returncode == 0
    assert (tmp_path / "f.safetensors").read_bytes() == proc.stdout  # same bytes from stdin or a file
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_json_is_the_only_thing_on_stdout(
    state_dict_of: Callable[..., dict], save_safetensors: Callable[..., Path], tmp_path: Path
) -> None:
    path = save_safetensors(state_dict_of("test_vit"))
    proc = run_cli(
        "rehead", "--arch", "test_vit", "--classes", "2", "--checkpoint", str(path), "--json", cwd=tmp_path
    )
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["classes"] == 2


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["rehead", "--arch", "no_such_arch_xyz", "--classes", "3"], 2),
        (["rehead", "--arch", "test_vit", "--classes", "-2"], 2),
        (["rehead", "--arch", "test_vit", "--classes", "three"], 2),
        (["rehead", "--arch", "test_vit", "--classes", "3", "--checkpoint", "missing.safetensors"], 3),
        (["no-such-command"], 2),
    ],
)
def test_exit_codes(args: list[str], code: int) -> None:
    from typer.testing import CliRunner

    from modelsurgeon.cli.app import app

    result = CliRunner().invoke(app, args)
    assert result.exit_code == code, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_exit_code_and_one_line_from_a_real_process(tmp_path: Path) -> None:
    proc = run_cli("rehead", "--arch", "test_vit", "--classes", "3", "--checkpoint", "nope.pth", cwd=tmp_path)
    assert proc.returncode == 3
    lines = proc.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "nope.pth" in lines[0]
    assert proc.stdout == b""


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    args = ["rehead", "--arch", "test_vit", "--classes", "3", "--checkpoint", "missing.safetensors"]
    proc = run_cli("--debug", *args, cwd=tmp_path)
    assert proc.returncode != 0 and b"Traceback" in proc.stderr and b"InputError" in proc.stderr


def test_debug_environment_variable_reraises(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from modelsurgeon.cli.app import app
    from modelsurgeon.errors import InputError

    monkeypatch.setenv("MODELSURGEON_DEBUG", "1")
    args = ["rehead", "--arch", "test_vit", "--classes", "3", "--checkpoint", "missing.safetensors"]
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, InputError)


def test_help_and_version_do_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from modelsurgeon.cli.app import main\n"
        "for argv in (['--help'], ['rehead', '--help'], ['--version'], ['archs', '--help'],"
        " ['sample', '--help'], ['inspect', '--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit as exc:\n"
        "        assert exc.code in (0, None), exc.code\n"
        "heavy = ('torch', 'timm', 'torchvision', 'safetensors', 'numpy')\n"
        "heavy = sorted(m for m in heavy if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()


def test_version() -> None:
    from modelsurgeon import __version__

    proc = run_cli("--version")
    assert proc.returncode == 0 and proc.stdout.decode().strip() == f"modelsurgeon {__version__}"
