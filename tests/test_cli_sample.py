"""`modelsurgeon sample` and the terminal histogram renderer."""

import json
import math
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from modelsurgeon.cli._plot import render_histogram
from modelsurgeon.cli.app import app
from modelsurgeon.errors import UsageError

runner = CliRunner()

KEYS = {"mean", "std", "exact_mean", "exact_std", "quantiles", "at_bounds", "n", "dtype", "seed", "a", "b"}


def _json(*args: str) -> dict:
    result = runner.invoke(app, ["sample", "--json", *args])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    return json.loads(result.stdout)


def test_json_keys_and_defaults() -> None:
    out = _json("--n", "5000", "--seed", "3")
    assert KEYS <= out.keys()
    assert (out["n"], out["dtype"], out["seed"], out["a"], out["b"]) == (5000, "float32", 3, -2.0, 2.0)
    assert set(out["quantiles"]) == {"p", "empirical", "exact"}
    assert out["at_bounds"] == {"a": 0, "b": 0}


def test_empirical_matches_exact_for_fixed_seed() -> None:
    # Tolerance: 5 standard errors of the mean (exact std / sqrt(n)), a false alarm below 1e-6.
    n = 50_000
    out = _json("--n", str(n), "--seed", "11", "--mean", "1", "--std", "2", "--a", "0", "--b", "inf")
    assert abs(out["mean"] - out["exact_mean"]) <= 5 * out["exact_std"] / math.sqrt(n)
    assert out["exact_mean"] > 1.0  # the truncation [0, inf) pushes the mean above 1
    assert all(
        lo <= hi for lo, hi in zip(out["quantiles"]["exact"], out["quantiles"]["exact"][1:], strict=False)
    )


def test_bounds_std_and_infinite_json() -> None:
    out = _json(
        "--n",
        "1000",
        "--seed",
        "1",
        "--mean",
        "10",
        "--std",
        "2",
        "--a",
        "-1",
        "--b",
        "inf",
        "--bounds",
        "std",
    )
    assert out["a"] == 8.0 and out["b"] == "inf"
    assert min(out["quantiles"]["empirical"]) >= 8.0


def test_same_seed_same_draw_and_seed_reported() -> None:
    assert _json("--n", "100", "--seed", "9") == _json("--n", "100", "--seed", "9")
    drawn = _json("--n", "100")
    assert isinstance(drawn["seed"], int)


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bfloat16"])
def test_dtypes(dtype: str) -> None:
    out = _json("--n", "2000", "--seed", "2", "--dtype", dtype, "--a", "0.5", "--b", "1.5")
    assert out["dtype"] == dtype
    assert 0.5 <= out["quantiles"]["empirical"][0] <= out["quantiles"]["empirical"][-1] <= 1.5


def test_human_report_goes_to_stderr_only() -> None:
    result = runner.invoke(app, ["sample", "--n", "2000", "--seed", "4"])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "exact" in result.stderr and "┃" in result.stderr and "values exactly at a" in result.stderr


@pytest.mark.parametrize(
    "args",
    [["--std", "0"], ["--std", "-1"], ["--a", "3", "--b", "1"], ["--mean", "nan"], ["--b", "nan"]],
)
def test_bad_parameters_are_usage_errors(args: list[str]) -> None:
    result = runner.invoke(app, ["sample", "--n", "10", *args])
    assert result.exit_code == UsageError.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot sample"), lines
    assert " — " in lines[0]  # message — hint


def test_bad_parameters_exit_2_with_one_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "modelsurgeon", "sample", "--std", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "std" in lines[0]


def test_sample_module_does_not_import_torch() -> None:
    code = "import sys, modelsurgeon.cli.sample, modelsurgeon.cli._plot; print('torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "False", proc.stderr


def test_render_histogram_marks_expected_counts() -> None:
    text = render_histogram([10, 0, 5], [0.0, 1.0, 2.0, 3.0], [0.2, 0.2, 0.2], width=10)
    lines = text.splitlines()
    assert len(lines) == 3
    # total 15, expected 3 per bin: the marker sits at 3/10 of the width; the first bar is full width.
    assert lines[0].startswith("[0, 1) ███┃██████ ")  # 10 full cells, marker at cell 3
    assert all(line.count("┃") == 1 for line in lines)
    assert lines[1].index("┃") == lines[2].index("┃")
    assert lines[0].rstrip().endswith("10") and lines[1].rstrip().endswith("0")


def test_render_histogram_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="edges"):
        render_histogram([1, 2], [0.0, 1.0], [0.1, 0.1])
