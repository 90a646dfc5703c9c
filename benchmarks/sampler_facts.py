"""The README's "why not nn.init.trunc_normal_" figures, measured side by side.

Run: ``.venv/bin/python benchmarks/sampler_facts.py --out docs/sampler-facts.md`` (part of ``make bench``).
Each figure compares timm's ``trunc_normal_`` with modelsurgeon's on the same call, with a fixed seed.
"""

from __future__ import annotations

import argparse
import datetime
import warnings

import timm
import timm.layers
import torch

from modelsurgeon import trunc_normal_
from modelsurgeon.sampler import truncnorm_mean_std

N_TAIL = 10_000
N_SEED = 768 * 1000  # a ViT-B head: 1000 rows of 768


def _tail_6_8() -> list[str]:
    torch.manual_seed(0)
    ours, theirs = torch.empty(N_TAIL), torch.empty(N_TAIL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # timm warns that the mean is far from [a, b]
        timm.layers.trunc_normal_(theirs, a=6.0, b=8.0)
    trunc_normal_(ours, a=6.0, b=8.0)
    exact, _ = truncnorm_mean_std(0.0, 1.0, 6.0, 8.0)
    return [
        f"| N(0, 1) on [6, 8], {N_TAIL:,} float32 values | exact mean {exact:.3f} | "
        f"timm: mean {theirs.mean().item():.3f}, {theirs.unique().numel():,} distinct | "
        f"modelsurgeon: mean {ours.mean().item():.3f}, {ours.unique().numel():,} distinct |"
    ]


def _seed_call() -> list[str]:
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        torch.manual_seed(0)
        ours, theirs = torch.empty(N_SEED, dtype=dtype), torch.empty(N_SEED, dtype=dtype)
        timm.layers.trunc_normal_(theirs, std=2e-5)
        trunc_normal_(ours, std=2e-5)
        far_timm = int((theirs.float().abs() >= 1.0).sum())
        far_ours = int((ours.float().abs() >= 50 * 2e-5).sum())
        rows.append(
            f"| `trunc_normal_(w, std=2e-5)`, {N_SEED:,} {str(dtype).removeprefix('torch.')} values | "
            f"a = -2, b = 2 are {2 / 2e-5:,.0f} std away | timm: {far_timm:,} values with abs(w) >= 1 | "
            f"modelsurgeon: {far_ours:,} values beyond 50 std |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", help="write the Markdown here (default: stdout)")
    args = parser.parse_args()
    lines = [
        "# Sampler facts quoted in the README",
        "",
        f"Made by `.venv/bin/python benchmarks/sampler_facts.py --out docs/sampler-facts.md` on "
        f"{datetime.date.today()}; torch {torch.__version__}, timm {timm.__version__}, torch.manual_seed(0).",
        "",
        "| call | reference | timm `trunc_normal_` | modelsurgeon `trunc_normal_` |",
        "|---|---|---|---|",
        *_tail_6_8(),
        *_seed_call(),
        "",
    ]
    text = "\n".join(lines)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        print(text)


if __name__ == "__main__":
    main()
