"""``make demo``: the documented command on an embedded default, offline.

There is no internet here, so the demo makes a deterministic, randomly initialised ViT-B/16
checkpoint (``torch.manual_seed(0)``), lays it out as timm's pretrained weights in a private, offline
Hugging Face cache (``demo-out/hf``), runs exactly the README's command

    modelsurgeon rehead --arch vit_base_patch16_224 --classes 10 --std 2e-5

and shows what came out with ``modelsurgeon inspect``.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["main"]

ARCH = "vit_base_patch16_224"
COMMAND = ["rehead", "--arch", ARCH, "--classes", "10", "--std", "2e-5"]


def _const(value: torch.Tensor) -> Callable[[], torch.Tensor]:
    return lambda: value


def _lay_out_cache(root: Path) -> Path:
    import timm
    import torch

    from modelsurgeon.checkpoint import OutTensor, write_checkpoint

    cfg = timm.models.get_pretrained_cfg(ARCH)
    repo_id = str(cfg.hf_hub_id if cfg is not None else f"timm/{ARCH}")
    rev = "0" * 40
    repo = root / "hub" / ("models--" + repo_id.replace("/", "--"))
    target = repo / "snapshots" / rev / "model.safetensors"
    if target.exists():
        return target
    print(f"demo: making a random {ARCH} checkpoint (seed 0) as {repo_id} in {root}", file=sys.stderr)
    torch.manual_seed(0)
    state = timm.create_model(ARCH, pretrained=False).state_dict()
    target.parent.mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(rev)
    entries = [OutTensor(k, v.dtype, tuple(v.shape), _const(v)) for k, v in sorted(state.items())]
    write_checkpoint(target, entries, metadata={"format": "pt"}, force=True)
    return target


def main() -> None:
    """Run the demo; exits with the CLI's exit code."""
    out = Path("demo-out").resolve()
    out.mkdir(exist_ok=True)
    _lay_out_cache(out / "hf")
    env = dict(os.environ, HF_HOME=str(out / "hf"), HF_HUB_OFFLINE="1")
    env.pop("HF_HUB_CACHE", None)
    cli = [sys.executable, "-m", "modelsurgeon"]
    result = f"{ARCH}-10cls.safetensors"
    (out / result).unlink(missing_ok=True)  # a rerun shows the same command, not an "exists" error
    print(
        f"\n$ cd demo-out && HF_HUB_OFFLINE=1 modelsurgeon {shlex.join(COMMAND)}", file=sys.stderr, flush=True
    )
    done = subprocess.run([*cli, *COMMAND], cwd=out, env=env)
    if done.returncode:
        sys.exit(done.returncode)
    print(f"\n$ modelsurgeon inspect demo-out/{result}", file=sys.stderr, flush=True)
    sys.exit(subprocess.run([*cli, "inspect", result], cwd=out, env=env).returncode)


if __name__ == "__main__":
    main()
