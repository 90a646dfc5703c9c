"""Coverage sweep: plan a 7-class rehead of every timm and torchvision classifier, on the meta device.

For each architecture:

1. ``find_heads(arch, 7)`` plans the surgery;
2. the default-class model and the 7-class model are built on meta (independently of the plan) and the
   plan is checked against them: the body is exactly the default model's keys minus ``dropped``, with the
   same shapes; the 7-class model's keys are exactly body ∪ head tensors; every head tensor that replaces
   a default-model tensor has a 7 in its shape;
3. a meta forward of the 7-class model on ``(1, *input_size)`` must give logits of shape ``(1, 7)``.

Runs in worker processes with a per-arch timeout and writes a Markdown report::

    .venv/bin/python benchmarks/coverage.py --out docs/coverage.md
"""

from __future__ import annotations

import argparse
import collections
import datetime
import multiprocessing as mp
import platform
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Result", "check_arch", "main"]

N = 7

# Archs that are not expected to pass, with the reason. Each is still run; if one starts passing, the
# report says so. Keep this list honest: a bug in the arch itself (say where) or planned work.
_ENCODER = (
    "a feature encoder, not a classifier: timm's builder ({where}) drops `num_classes`, so there is no "
    "head to replace, and `find_heads` says so with a UsageError; the classifier variant `{variant}` passes"
)
EXCLUDED: dict[str, str] = {
    "timm:deepseek_vit_412m_enc": _ENCODER.format(
        where="`_create_deepseek_vit_encoder` in timm/models/deepseek_vit.py", variant="deepseek_vit_412m"
    ),
    **{
        f"timm:gemma4_vit_{size}_enc": _ENCODER.format(
            where="`kwargs_filter=('num_classes',)` in timm/models/gemma4_vit.py",
            variant=f"gemma4_vit_{size}",
        )
        for size in ("167m", "570m")
    },
    **{
        f"timm:qwen3_vit_{size}_enc": _ENCODER.format(
            where="`kwargs_filter=('num_classes', 'drop_rate')` in timm/models/qwen3_vit.py",
            variant=f"qwen3_vit_{size}",
        )
        for size in ("88m", "306m", "416m")
    },
    "timm:mobilenetv5_300m_enc": _ENCODER.format(
        where="`MobileNetV5Encoder` (`encoder=True`) in timm/models/mobilenetv5.py",
        variant="mobilenetv5_300m",
    ),
}


@dataclass(frozen=True)
class Result:
    """Outcome of one architecture."""

    arch: str
    family: str
    status: str  # "pass" | "fail" | "timeout" | "excluded" (failed as EXCLUDED says)
    reason: str
    head_type: str
    heads: str
    seconds: float


class _Timeout(Exception):
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise _Timeout


def _logits(out: Any) -> Any:
    import torch

    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    if isinstance(out, dict) and "logits" in out:
        return out["logits"]
    raise TypeError(f"forward returned {type(out).__name__}, not a tensor")


def _check(spec_text: str) -> tuple[str, str]:
    """Run the checks for one arch; return (head_type, heads) or raise AssertionError / any error."""
    import torch

    from modelsurgeon.archs import build_model
    from modelsurgeon.heads import find_heads

    spec = find_heads(spec_text, N)
    default = {k: tuple(v.shape) for k, v in build_model(spec.arch).state_dict().items()}
    model = build_model(spec.arch, N)
    target = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    body, heads, dropped = dict(spec.body), {t.name: t.shape for t in spec.tensors}, set(spec.dropped)

    if not heads:
        raise AssertionError("no head tensors planned for N=7")
    if set(body) != set(default) - dropped:
        extra = sorted(set(body) ^ (set(default) - dropped))
        raise AssertionError(f"body != default keys - dropped (e.g. {extra[:3]})")
    bad = [k for k in body if body[k] != default[k] or body[k] != target[k]]
    if bad:
        raise AssertionError(f"body shape differs from checkpoint/target: {bad[:3]}")
    if set(target) != set(body) | set(heads) or set(body) & set(heads):
        extra = sorted(set(target) ^ (set(body) | set(heads)))
        raise AssertionError(f"7-class keys != body ∪ head tensors (e.g. {extra[:3]})")
    if any(target[k] != s for k, s in heads.items()):
        raise AssertionError("head tensor shape differs from the 7-class model")
    if any(N not in s for k, s in heads.items() if k in default):
        raise AssertionError("a replaced head tensor has no class dimension of 7")
    unused = dropped - set(default)
    if unused:
        raise AssertionError(f"dropped names keys the default model lacks: {sorted(unused)[:3]}")

    with torch.no_grad():
        out = _logits(model(torch.empty(1, *spec.input_size, device="meta")))
    if tuple(out.shape) != (1, N):
        raise AssertionError(f"logits shape {tuple(out.shape)} != (1, {N}) for input {spec.input_size}")
    return spec.head_type, ", ".join(spec.modules)


def check_arch(job: tuple[str, str, int]) -> Result:
    """Check one architecture (runs in a worker process).

    Args:
        job: ``(arch spec, family, timeout in seconds)``.

    Returns:
        The :class:`Result`.
    """
    spec_text, family, timeout = job
    start = time.perf_counter()
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(timeout)
    try:
        head_type, heads = _check(spec_text)
        status, reason = "pass", ""
    except _Timeout:
        head_type, heads, status, reason = "", "", "timeout", f"over {timeout} s"
    except Exception as exc:  # the sweep records every failure, whatever its type
        head_type, heads, status = "", "", "fail"
        where = traceback.extract_tb(exc.__traceback__)[-1]
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
        reason += f" ({Path(where.filename).name}:{where.lineno})"
    finally:
        signal.alarm(0)
    if status != "pass" and spec_text in EXCLUDED:
        status = "excluded"
    return Result(spec_text, family, status, reason, head_type, heads, time.perf_counter() - start)


def _init_worker() -> None:
    import warnings

    import torch

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")


def _jobs(patterns: list[str] | None, timeout: int) -> list[tuple[str, str, int]]:
    import fnmatch

    import timm
    import torchvision
    from timm.models import model_entrypoint

    jobs = []
    for name in timm.list_models():
        family = "timm." + model_entrypoint(name).__module__.rpartition(".")[2]
        jobs.append((f"timm:{name}", family, timeout))
    for name in sorted(torchvision.models.list_models(module=torchvision.models)):
        fn = torchvision.models.get_model_builder(name)
        jobs.append((f"torchvision:{name}", "torchvision." + fn.__module__.rpartition(".")[2], timeout))
    if patterns:
        jobs = [j for j in jobs if any(fnmatch.fnmatch(j[0].partition(":")[2], p) for p in patterns)]
    return jobs


def _versions() -> str:
    import timm
    import torch
    import torchvision

    return (
        f"torch {torch.__version__}, timm {timm.__version__}, torchvision {torchvision.__version__}, "
        f"Python {platform.python_version()}"
    )


def _summary_row(label: str, rs: list[Result]) -> str:
    ok = sum(r.status == "pass" for r in rs)
    excluded = sum(r.status == "excluded" for r in rs)
    fail = len(rs) - ok - excluded
    rate = f"{100 * ok / (len(rs) - excluded):.1f} %" if len(rs) > excluded else "–"
    return f"| {label} | {len(rs)} | {ok} | {excluded} | {fail} | {rate} |"


def _recheck(results: list[Result], wall: float, command: str) -> str:
    """A section for a partial rerun, appended to the report of the last full run."""
    lines = [
        f"## Recheck: `{command}`",
        "",
        f"- Date: {datetime.date.today().isoformat()}; {_versions()}; wall time {wall / 60:.1f} min",
        f"- These results replace the full run's for the {len(results)} archs they name.",
        "",
        "| source | archs | pass | excluded | fail | pass rate (of archs not excluded) |",
        "|---|---:|---:|---:|---:|---:|",
        _summary_row("rechecked", results),
        "",
    ]
    lines += [f"- `{r.arch}`: {r.status}{': ' + r.reason if r.reason else ''}" for r in results]
    return "\n".join(lines)


def _report(results: list[Result], wall: float, command: str, workers: int) -> str:
    by_source: dict[str, list[Result]] = collections.defaultdict(list)
    by_family: dict[str, list[Result]] = collections.defaultdict(list)
    for r in results:
        by_source[r.arch.partition(":")[0]].append(r)
        by_family[r.family].append(r)
    bad = [r for r in results if r.status != "pass"]
    lines = [
        "# Coverage: every timm and torchvision classifier",
        "",
        f"Each architecture is planned for a {N}-class rehead with `find_heads` and checked on the meta",
        "device: the body is exactly the default model's state dict minus the dropped head tensors (same",
        "shapes),",
        f"the {N}-class model's keys are exactly body ∪ head tensors, every replaced head tensor has a class",
        f"dimension of {N}, and a meta forward on `(1, *input_size)` gives logits of shape `(1, {N})`.",
        "",
        f"Regenerate with `{command}` (or `make coverage`).",
        "",
        f"- Date: {datetime.date.today().isoformat()}; {_versions()}",
        f"- Wall time: {wall / 60:.1f} min with {workers} worker processes on a shared 2-core machine",
        "",
        "## Summary",
        "",
        "| source | archs | pass | excluded | fail | pass rate (of archs not excluded) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for source, rs in [
        ("timm", by_source.get("timm", [])),
        ("torchvision", by_source.get("torchvision", [])),
    ]:
        lines.append(_summary_row(source, rs))
    lines.append(_summary_row("**all**", results))
    lines += ["", "## Failures and exclusions", ""]
    if not bad:
        lines.append("None.")
    for r in sorted(bad, key=lambda r: r.arch):
        note = f" Known: {EXCLUDED[r.arch]}" if r.arch in EXCLUDED else ""
        lines.append(f"- `{r.arch}` ({r.status}): {r.reason}.{note}")
    fixed = sorted(a for a in EXCLUDED if any(r.arch == a and r.status == "pass" for r in results))
    if fixed:
        lines.append(f"- Listed as excluded but now passing: {', '.join(fixed)}")
    types = collections.Counter(r.head_type for r in results if r.status == "pass")
    lines += ["", "## Head types", "", "| head type | archs |", "|---|---:|"]
    lines += [f"| {t} | {c} |" for t, c in types.most_common()]
    lines += [
        "",
        "## Per family",
        "",
        "| family | archs | pass | head modules (first arch) |",
        "|---|---:|---:|---|",
    ]
    for family in sorted(by_family):
        rs = by_family[family]
        ok = sum(r.status == "pass" for r in rs)
        first = next((r for r in rs if r.status == "pass"), None)
        heads = f"`{first.heads}` ({first.head_type})" if first else "–"
        lines.append(f"| {family} | {len(rs)} | {ok} | {heads} |")
    slow = sorted(results, key=lambda r: -r.seconds)[:5]
    lines += ["", "Slowest: " + ", ".join(f"`{r.arch}` {r.seconds:.0f} s" for r in slow), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the sweep and write the report.

    Args:
        argv: Command-line arguments (``--out``, ``--workers``, ``--timeout``, ``--pattern``).

    Returns:
        0 when every arch passes, 1 otherwise.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/coverage.md"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=int, default=300, help="seconds per arch")
    parser.add_argument(
        "--pattern",
        action="append",
        default=None,
        help="only archs matching this glob (repeatable; no prefix)",
    )
    parser.add_argument(
        "--append",
        action="store_true",
        help="append a 'Recheck' section to --out (e.g. --pattern ARCHS after a fix) instead of replacing it",
    )
    args = parser.parse_args(argv)
    command = "python benchmarks/coverage.py " + " ".join(sys.argv[1:] if argv is None else argv)

    start = time.perf_counter()
    jobs = _jobs(args.pattern, args.timeout)
    results: list[Result] = []
    ctx = mp.get_context("fork")
    with ctx.Pool(args.workers, initializer=_init_worker, maxtasksperchild=50) as pool:
        for i, r in enumerate(pool.imap_unordered(check_arch, jobs, chunksize=1), 1):
            results.append(r)
            if r.status != "pass":
                print(f"[{i}/{len(jobs)}] {r.arch}: {r.status}: {r.reason}", file=sys.stderr, flush=True)
            elif i % 50 == 0:
                print(f"[{i}/{len(jobs)}] {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    wall = time.perf_counter() - start
    results.sort(key=lambda r: r.arch)
    if args.append:
        with args.out.open("a") as f:
            f.write("\n" + _recheck(results, wall, command.strip()) + "\n")
    else:
        args.out.write_text(_report(results, wall, command.strip(), args.workers) + "\n")
    print(
        f"wrote {args.out}: {sum(r.status == 'pass' for r in results)}/{len(results)} pass", file=sys.stderr
    )
    return 0 if all(r.status in ("pass", "excluded") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
