"""Wall time and memory of ``modelsurgeon rehead`` against the floor and the seed recipe (issue 5).

Each contender is one whole process (or, for the floor, two), measured from the benchmark process:

- **floor**: ``python -c "import torch, timm"`` then ``cp`` (``cp -r`` for a sharded checkpoint): the
  least any Python tool that imports torch and writes a copy of the checkpoint can take.
- **floor, no teardown**: the same with ``os._exit(0)`` after the imports. modelsurgeon, too, leaves with
  ``os._exit`` once its work is flushed, skipping the interpreter's teardown of torch and timm; this row
  shows what is left of the floor without it, so the cost of the surgery itself can be read off.
- **seed recipe**: ``benchmarks/seed_recipe.py`` (``timm.create_model``, ``load_state_dict``, a new
  ``nn.Linear``, ``trunc_normal_``, ``save_file``).
- **timm overlay**: ``timm.create_model(arch, pretrained=True, num_classes=N,
  pretrained_cfg_overlay=dict(file=CKPT))`` then ``save_file`` (single-file checkpoints only).
- **modelsurgeon**: ``python -m modelsurgeon rehead --arch A --classes 10 --checkpoint CKPT --out OUT
  --force``, verification on (the default).

Checkpoints hold random weights and are made once under ``bench-out/`` (reused afterwards): ViT-B/16 and
ViT-L/16 as single safetensors files, ViT-H/14 (2.5 GB, float32) as ~500 MB shards with an index. Every
file is read once before each round so that it is in the page cache (the page cache can't be dropped
without root, so all numbers are warm-cache numbers). Contenders run round-robin, one of each per
round, the order rotating from round to round; the report gives medians over rounds, and ratios are
medians of the per-round ratios (both sides measured within the same minute or two).

Memory is sampled as described in :mod:`_measure`. Usage::

    .venv/bin/python benchmarks/rehead.py --out docs/performance.md     # make bench
    .venv/bin/python benchmarks/rehead.py --quick                       # ViT-B only, one round
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _measure import Sample, median, run_measured, run_steps, warm

__all__ = ["Case", "main"]

ROOT = Path(__file__).resolve().parent.parent
KEEP_BEGIN = "<!-- analysis: kept when the report is regenerated -->"
KEEP_END = "<!-- end of analysis -->"
PY = sys.executable
# The floor without the interpreter's teardown of torch and timm (about 1 s), which modelsurgeon skips.
NO_TEARDOWN = "floor, no teardown"
_HARD_EXIT = "import os, torch, timm; os._exit(0)"
CLASSES = 10
SHARD_MIB = 500
STARTUP_ROUNDS = 7
MIB = 1024


@dataclass(frozen=True)
class Case:
    """One checkpoint to rehead.

    Args:
        label: Row label in the report.
        arch: timm model name.
        path: The checkpoint (a file, or a directory of shards).
        sharded: Whether ``path`` is a sharded directory.
    """

    label: str
    arch: str
    path: Path
    sharded: bool = False


@dataclass
class Runs:
    """Every sample of one contender on one case, in round order."""

    samples: list[Sample] = field(default_factory=list)

    def wall(self) -> list[float]:
        return [s.wall_s for s in self.samples]

    def cpu(self) -> list[float]:
        return [s.cpu_s for s in self.samples]

    def anon_mib(self) -> float:
        return median([s.anon_kib / MIB for s in self.samples])

    def hwm_mib(self) -> float:
        return median([s.hwm_kib / MIB for s in self.samples])


def _cases(bench: Path, quick: bool) -> list[Case]:
    cases = [Case("ViT-B/16", "vit_base_patch16_224", bench / "vit_base_patch16_224.safetensors")]
    if not quick:
        cases += [
            Case("ViT-L/16", "vit_large_patch16_224", bench / "vit_large_patch16_224.safetensors"),
            Case("ViT-H/14 sharded", "vit_huge_patch14_224", bench / "vit_huge_patch14_224-sharded", True),
        ]
    return cases


def _ensure(case: Case) -> None:
    if case.path.exists():
        return
    print(f"making {case.path} (random weights) …", file=sys.stderr, flush=True)
    shard = str(SHARD_MIB) if case.sharded else "-"
    subprocess.run(
        [PY, str(Path(__file__).with_name("_measure.py")), case.arch, str(case.path), shard], check=True
    )


def _contenders(case: Case, out: Path) -> dict[str, Callable[[], Sample]]:
    ckpt = str(case.path)
    dest = out / ("sharded" if case.sharded else "out.safetensors")
    seed_out = str(out / "seed.safetensors")
    recipe = [PY, str(ROOT / "benchmarks/seed_recipe.py"), "--arch", case.arch, "--checkpoint", ckpt]
    recipe += ["--classes", str(CLASSES), "--out", seed_out]
    cp = ["cp", "-r", ckpt, str(dest)] if case.sharded else ["cp", ckpt, str(dest)]
    surgeon = [PY, "-m", "modelsurgeon", "rehead", "--arch", case.arch, "--classes", str(CLASSES)]
    surgeon += ["--checkpoint", ckpt, "--out", str(dest), "--force"]
    found: dict[str, Callable[[], Sample]] = {
        "floor": lambda: run_steps([[PY, "-c", "import torch, timm"], cp], cwd=str(ROOT)),
        NO_TEARDOWN: lambda: run_steps([[PY, "-c", _HARD_EXIT], cp], cwd=str(ROOT)),
        "seed recipe": lambda: run_measured(recipe, cwd=str(ROOT)),
    }
    if not case.sharded:
        found["timm overlay"] = lambda: run_measured([*recipe, "--recipe", "timm-overlay"], cwd=str(ROOT))
    found["modelsurgeon"] = lambda: run_measured(surgeon, cwd=str(ROOT))
    return found


def _clean(out: Path) -> None:
    for p in out.iterdir():
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()


def _rotate(names: Sequence[str], k: int) -> list[str]:
    k %= len(names)
    return [*names[k:], *names[:k]]


def _bench(cases: Sequence[Case], rounds: int, out: Path, failed: list[str]) -> dict[str, dict[str, Runs]]:
    results: dict[str, dict[str, Runs]] = {c.label: {} for c in cases}
    for r in range(rounds):
        for case in cases:
            warm([case.path])
            contenders = _contenders(case, out)
            for name in _rotate(list(contenders), r):
                os.sync()  # no dirty pages of the previous contender's output left to write back
                try:
                    sample = contenders[name]()
                except RuntimeError as exc:  # report the failure, keep measuring the others
                    print(f"round {r + 1} {case.label} {name} FAILED: {exc}", file=sys.stderr, flush=True)
                    failed.append(f"{case.label} {name}: {str(exc).strip().splitlines()[-1]}")
                    _clean(out)
                    continue
                _clean(out)
                results[case.label].setdefault(name, Runs()).samples.append(sample)
                print(
                    f"round {r + 1}/{rounds} {case.label:<17} {name:<13} {sample.wall_s:7.2f} s "
                    f"(CPU {sample.cpu_s:6.2f} s)  "
                    f"RssAnon {sample.anon_kib / MIB:7.0f} MiB  VmHWM {sample.hwm_kib / MIB:7.0f} MiB",
                    file=sys.stderr,
                    flush=True,
                )
    return results


def _startup(rounds: int) -> dict[str, Runs]:
    exe = str(Path(PY).with_name("modelsurgeon"))
    commands = {
        "python -c pass": [PY, "-c", "pass"],
        "modelsurgeon --help": [exe, "--help"],
        "modelsurgeon --version": [exe, "--version"],
    }
    results = {name: Runs() for name in commands}
    for r in range(rounds):
        for name in _rotate(list(commands), r):
            results[name].samples.append(run_measured(commands[name], cwd=str(ROOT)))
    return results


def _ratio(a: Runs, b: Runs, *, cpu: bool = False) -> float:
    """Median over rounds of a's wall (or CPU) time divided by b's in the same round."""
    xs, ys = (a.cpu(), b.cpu()) if cpu else (a.wall(), b.wall())
    if len(xs) != len(ys):  # a run failed: the rounds no longer pair up
        return median(xs) / median(ys)
    return median([x / y for x, y in zip(xs, ys, strict=True)])


def _best_ratio(a: Runs, b: Runs) -> float:
    """a's fastest wall time divided by b's fastest: the ratio least moved by a slow phase of the machine."""
    return min(a.wall()) / min(b.wall())


def _machine() -> dict[str, str]:
    mem_kib = 0
    with open("/proc/meminfo", encoding="ascii") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    cpu = platform.processor() or platform.machine()
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    import importlib.metadata as md

    return {
        "cpu": cpu,
        "nproc": str(os.cpu_count()),
        "ram": f"{mem_kib / 1024**2:.1f} GiB",
        "python": platform.python_version(),
        "torch": md.version("torch"),
        "timm": md.version("timm"),
        "safetensors": md.version("safetensors"),
        "modelsurgeon": md.version("modelsurgeon"),
        "load": " ".join(f"{x:.1f}" for x in os.getloadavg()),
    }


def _fmt_range(values: Sequence[float]) -> str:
    return f"{median(values):.2f} ({min(values):.2f}–{max(values):.2f})"


def _verdict(ok: bool) -> str:
    return "**pass**" if ok else "**FAIL**"


def _report(
    results: dict[str, dict[str, Runs]],
    startup: dict[str, Runs],
    rounds: int,
    command: str,
    before: dict[str, str],
    after: dict[str, str],
) -> str:
    floors = [s.anon_kib / MIB for case in results.values() for s in case["floor"].samples]
    base = median(floors)
    lines = [
        "# Performance of `modelsurgeon rehead`",
        "",
        f"Made by `{command}` on {datetime.date.today().isoformat()}; "
        f"{rounds} round(s), medians over rounds.",
        "",
        f"Machine: {before['cpu']}, nproc {before['nproc']}, {before['ram']} RAM; Python {before['python']}, "
        f"torch {before['torch']}, timm {before['timm']}, safetensors {before['safetensors']}, "
        f"modelsurgeon {before['modelsurgeon']}. Load average (1/5/15 min) {before['load']} at the start, "
        f"{after['load']} at the end.",
        "",
        "## Rehead, whole process",
        "",
        f"`--classes {CLASSES}`, random float32 weights, warm page cache. Wall: median (min–max) seconds. "
        "×floor and seed÷: medians of the per-round ratios. CPU: user + system seconds of the process "
        "and its threads (less sensitive to a busy machine than wall time, but work overlapped in threads "
        "adds up). RssAnon: median of the per-run peaks; "
        'above import: minus the peak RssAnon of a bare `python -c "import torch, timm"` '
        f"({base:.0f} MiB). "
        "VmHWM: peak resident set including mapped file pages.",
        "",
        "| checkpoint | contender | wall s | × floor | seed ÷ this | CPU s | CPU × floor | peak RssAnon MiB "
        "| above import MiB | VmHWM MiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, runs in results.items():
        for name, r in runs.items():
            lines.append(
                f"| {label} | {name} | {_fmt_range(r.wall())} | {_ratio(r, runs['floor']):.2f} | "
                f"{_ratio(runs['seed recipe'], r):.2f} | {median(r.cpu()):.2f} | "
                f"{_ratio(r, runs['floor'], cpu=True):.2f} | {r.anon_mib():.0f} | "
                f"{round(r.anon_mib() - base):+d} | {r.hwm_mib():.0f} |"
            )
    lines += ["", "## Start-up", "", "| command | wall s | peak RssAnon MiB |", "|---|---|---|"]
    for name, r in startup.items():
        lines.append(f"| `{name}` | {_fmt_range(r.wall())} | {r.anon_mib():.0f} |")
    lines += ["", "## Targets", "", "| target | measured | verdict |", "|---|---|---|"]
    floor_limit = {"ViT-B/16": 1.2, "ViT-L/16": 1.25}
    seed_limit = {"ViT-B/16": 1.15, "ViT-L/16": 1.7}
    for label, runs in results.items():
        ms = runs["modelsurgeon"]
        if label in floor_limit:
            # Judged on the median of the per-round ratios and, so that one slow floor run cannot carry
            # the verdict, on the ratio of the fastest runs as well: both must meet the target.
            x, x_best = _ratio(ms, runs["floor"]), _best_ratio(ms, runs["floor"])
            ok = max(x, x_best) <= floor_limit[label]
            lines.append(
                f"| {label}: wall ≤ {floor_limit[label]}× floor | {x:.2f}× (fastest runs: {x_best:.2f}×) "
                f"| {_verdict(ok)} |"
            )
            y, y_best = _ratio(runs["seed recipe"], ms), _best_ratio(runs["seed recipe"], ms)
            lines.append(
                f"| {label}: ≥ {seed_limit[label]}× faster than the seed recipe | {y:.2f}× "
                f"(fastest runs: {y_best:.2f}×) | {_verdict(min(y, y_best) >= seed_limit[label])} |"
            )
        above = ms.anon_mib() - base
        lines.append(
            f"| {label}: peak RssAnon ≤ 256 MiB above `import torch, timm` | {above:+.0f} MiB | "
            f"{_verdict(above <= 256)} |"
        )
    for label, runs in results.items():
        x = _ratio(runs["modelsurgeon"], runs[NO_TEARDOWN])
        lines.append(f"| {label}: wall ÷ the floor without teardown (no target) | {x:.2f}× | — |")
    for name in ("modelsurgeon --help", "modelsurgeon --version"):
        t = median(startup[name].wall())
        lines.append(f"| `{name}` < 0.3 s | {t:.2f} s | {_verdict(t < 0.3)} |")
    lines += ["", _NOTES]
    return "\n".join(lines) + "\n"


_NOTES = """## How it is measured, and how far to trust it

- Each contender is a fresh process started from an argv list (no shell); wall time runs from just
  before the start to just after the kernel reaps it. The floor is two processes run back to back; their
  wall times add up.
- **Peak RssAnon**: a thread of the benchmark process reads `RssAnon` from `/proc/PID/status` of the
  child every 3 ms. Anonymous memory is what the process allocated; pages of memory-mapped files
  (`RssFile`) are not counted, since the kernel can drop them under pressure. A spike shorter than 3 ms
  can be missed. **VmHWM** is the kernel's peak resident set (`ru_maxrss` from `os.wait4`); it includes
  the mapped checkpoint pages a process touched, so a tool that maps its input shows the checkpoint size
  there even though that memory is reclaimable page cache.
- The page cache is not dropped (that needs root); every checkpoint is read once before each round, so
  all numbers are warm-cache numbers. Outputs are deleted after each run, and `sync` runs before each
  run, both outside the timing: no contender waits on the disk writeback of another's output (only
  modelsurgeon waits for the disk at all: it fsyncs its output before the rename).
- Contenders run round-robin, one of each per round, the order rotating each round, so slow phases of a
  shared machine hit every contender; ratios are taken within a round, then the median over rounds. A
  wall-time target passes only if the ratio of the fastest runs meets it too, so that one slow run of
  the floor cannot carry a verdict.
- The machine may be shared: the load average above says how busy it was. On a busy machine the
  absolute times (mostly `import torch`) stretch several-fold and the ratios move towards 1; re-run
  `make bench` on a quiet machine before reading much into small differences.
- Raw per-run numbers are written to `bench-out/rehead-raw.json`.
"""


def _kept(old: str) -> str:
    """The hand-written analysis section of an earlier report (between the markers), if any."""
    begin, end = old.find(KEEP_BEGIN), old.find(KEEP_END)
    if begin < 0 or end < begin:
        return ""
    return "\n" + old[begin : end + len(KEEP_END)] + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the arguments, run the benchmark, write the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the Markdown report here (default: stdout)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over every contender (default 3)")
    parser.add_argument("--quick", action="store_true", help="ViT-B/16 only, one round (for development)")
    parser.add_argument("--bench-dir", type=Path, default=ROOT / "bench-out", help="checkpoints and outputs")
    args = parser.parse_args(argv)
    rounds = 1 if args.quick else args.rounds
    cases = _cases(args.bench_dir, args.quick)
    out = args.bench_dir / "out"
    out.mkdir(parents=True, exist_ok=True)
    for case in cases:
        _ensure(case)
    before = _machine()
    startup = _startup(3 if args.quick else STARTUP_ROUNDS)
    failed: list[str] = []
    results = _bench(cases, rounds, out, failed)
    after = _machine()
    raw = {
        "rehead": {
            c: {n: [asdict(s) for s in r.samples] for n, r in runs.items()} for c, runs in results.items()
        },
        "startup": {n: [asdict(s) for s in r.samples] for n, r in startup.items()},
    }
    (args.bench_dir / "rehead-raw.json").write_text(json.dumps(raw, indent=1) + "\n", encoding="utf-8")
    command = ".venv/bin/python benchmarks/rehead.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = _report(results, startup, rounds, command.strip(), before, after)
    if failed:
        text += "\n## Failed runs\n\n" + "".join(f"- {line}\n" for line in failed)
    if args.out and args.out.exists():
        text += _kept(args.out.read_text(encoding="utf-8"))
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
