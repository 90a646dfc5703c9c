"""The recipes modelsurgeon is measured against: a rehead with timm and safetensors alone.

``--recipe seed`` (the "seed recipe" of issue 5)::

    model = timm.create_model(arch)                      # random init of every weight
    model.load_state_dict(load_file(checkpoint))         # the whole checkpoint in memory
    head = nn.Linear(in_features, classes)                # the new head
    trunc_normal_(head.weight, std=0.02); zeros_(head.bias)
    save_file(model.state_dict(), out)

``--recipe timm-overlay``: timm's own loader does the load and drops the old head::

    model = timm.create_model(arch, pretrained=True, num_classes=classes,
                              pretrained_cfg_overlay=dict(file=checkpoint))
    save_file(model.state_dict(), out)

A sharded checkpoint (a directory holding ``*.safetensors.index.json``, or the index itself) is read
shard by shard into one state dict (seed recipe only). Usage::

    .venv/bin/python benchmarks/seed_recipe.py --arch vit_base_patch16_224 \\
        --checkpoint bench-out/vit_base_patch16_224.safetensors --classes 10 --out /tmp/out.safetensors
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["load_state", "main", "seed_recipe", "timm_overlay"]


def load_state(checkpoint: Path) -> dict[str, torch.Tensor]:
    """Load a safetensors file, or every shard of a sharded one, into memory."""
    from safetensors.torch import load_file

    index = checkpoint
    if checkpoint.is_dir():
        index = next(checkpoint.glob("*.safetensors.index.json"))
    if not index.name.endswith(".index.json"):
        return load_file(str(checkpoint))
    weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
    state: dict[str, torch.Tensor] = {}
    for shard in sorted(set(weight_map.values())):
        state.update(load_file(str(index.parent / shard)))
    return state


def _replace_head(model: nn.Module, classes: int) -> None:
    """Put a new ``nn.Linear`` with ``classes`` outputs where timm's config says the classifier is."""
    from torch import nn

    name = str(model.pretrained_cfg["classifier"])  # type: ignore[index]
    old = model.get_submodule(name)
    if isinstance(old, nn.Linear):
        features = old.in_features
    elif isinstance(old, nn.Identity):  # a headless default (vit_huge_patch14_224 is in21k, num_classes=0)
        features = int(model.head_hidden_size)  # type: ignore[arg-type]
    else:
        raise SystemExit(f"the seed recipe replaces an nn.Linear head; {name} is a {type(old).__name__}")
    head = nn.Linear(features, classes)
    nn.init.trunc_normal_(head.weight, std=0.02)
    nn.init.zeros_(head.bias)
    model.set_submodule(name, head)
    model.num_classes = classes  # type: ignore[assignment]


def seed_recipe(arch: str, checkpoint: Path, classes: int, out: Path) -> None:
    """Build ``arch`` for real, load the checkpoint strictly, replace the head, save as safetensors."""
    import timm
    from safetensors.torch import save_file

    model = timm.create_model(arch)
    model.load_state_dict(load_state(checkpoint))
    _replace_head(model, classes)
    save_file(model.state_dict(), str(out), metadata={"format": "pt"})


def timm_overlay(arch: str, checkpoint: Path, classes: int, out: Path) -> None:
    """Let timm load ``checkpoint`` as the pretrained weights with a new ``classes``-way head, then save."""
    import timm
    from safetensors.torch import save_file

    model = timm.create_model(
        arch, pretrained=True, num_classes=classes, pretrained_cfg_overlay={"file": str(checkpoint)}
    )
    save_file(model.state_dict(), str(out), metadata={"format": "pt"})


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the arguments and run one recipe."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", required=True, help="timm model name")
    parser.add_argument("--checkpoint", required=True, type=Path, help="safetensors file, index or directory")
    parser.add_argument("--classes", required=True, type=int, help="outputs of the new head")
    parser.add_argument("--out", required=True, type=Path, help="output .safetensors")
    parser.add_argument("--recipe", choices=("seed", "timm-overlay"), default="seed")
    args = parser.parse_args(argv)
    recipe = seed_recipe if args.recipe == "seed" else timm_overlay
    recipe(args.arch, args.checkpoint, args.classes, args.out)


if __name__ == "__main__":
    main()
