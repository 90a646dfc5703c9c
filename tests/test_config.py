"""ReheadConfig: strict keys, coercion, validation, and defaults < config file < flags."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from modelsurgeon.config import ReheadConfig, load_config_file
from modelsurgeon.errors import UsageError


def test_defaults_follow_timm_head_convention() -> None:
    cfg = ReheadConfig()
    assert (cfg.mean, cfg.std, cfg.a, cfg.b, cfg.bounds, cfg.bias) == (0.0, 0.02, -2.0, 2.0, "abs", 0.0)
    assert cfg.verify is True and cfg.force is False and cfg.seed is None


def test_unknown_key_is_named_with_nearest_valid_one() -> None:
    with pytest.raises(UsageError) as info:
        ReheadConfig.from_mapping({"sdt": 0.1}, origin="recipe.yaml")
    assert "'sdt'" in str(info.value) and "recipe.yaml" in str(info.value)
    assert "did you mean 'std'" in str(info.value)


@pytest.mark.parametrize(
    ("mapping", "fragment"),
    [
        ({"std": 0}, "--std"),
        ({"std": -1}, "--std"),
        ({"std": float("inf")}, "--std"),
        ({"mean": float("nan")}, "NaN"),
        ({"a": 1, "b": 1}, "below"),
        ({"a": 2, "b": -2}, "below"),
        ({"classes": -1}, "--classes"),
        ({"bounds": "sigma"}, "--bounds"),
        ({"bias": "ones"}, "bias"),
        ({"classes": 2.5}, "whole number"),
        ({"verify": "maybe"}, "true or false"),
        ({"seed": -3}, "--seed"),
    ],
)
def test_nonsense_values_are_usage_errors(mapping: dict, fragment: str) -> None:
    with pytest.raises(UsageError, match=fragment):
        ReheadConfig.from_mapping(mapping)


def test_precedence_defaults_then_file_then_flags() -> None:
    recipe = {"arch": "resnet18", "std": 1e-3, "classes": 5, "bias": "zeros"}
    flags = {"classes": 7, "std": None, "seed": 3}
    cfg = ReheadConfig.from_sources(recipe, flags, file_origin="r.yaml")
    assert cfg.arch == "resnet18"  # from the file
    assert cfg.std == 1e-3  # flag not given: the file wins over the default
    assert cfg.classes == 7  # the flag wins over the file
    assert cfg.seed == 3 and cfg.a == -2.0  # flag, default


def test_bounds_are_checked_after_merging() -> None:
    # a=3 alone is invalid with the default b=2, but valid with the recipe's b.
    cfg = ReheadConfig.from_sources({"b": 5}, {"a": 3})
    assert (cfg.a, cfg.b) == (3.0, 5.0)


def test_bias_accepts_zeros_or_number_and_kebab_keys() -> None:
    assert ReheadConfig.from_mapping({"bias": "zeros"}).bias == 0.0
    assert ReheadConfig.from_mapping({"bias": "-0.5"}).bias == -0.5
    assert ReheadConfig.from_mapping({"bias": 2}).bias == 2.0
    assert math.isclose(ReheadConfig.from_mapping({"std": "2e-5"}).std, 2e-5)


def test_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("arch: vit_base_patch16_224\nclasses: 10\nstd: 2.0e-5\nverify: false\n")
    cfg = ReheadConfig.from_sources(load_config_file(path), {}, file_origin=str(path))
    assert (cfg.arch, cfg.classes, cfg.std, cfg.verify) == ("vit_base_patch16_224", 10, 2e-5, False)


@pytest.mark.parametrize("text", ["- a\n- b\n", "key: [unclosed\n"])
def test_bad_yaml_is_a_usage_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(text)
    with pytest.raises(UsageError, match=str(path)):
        load_config_file(path)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read config file"):
        load_config_file(tmp_path / "nope.yaml")


@pytest.mark.parametrize("recipe", sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml")))
def test_shipped_recipes_are_valid(recipe: Path) -> None:
    cfg = ReheadConfig.from_sources(load_config_file(recipe), {}, file_origin=str(recipe))
    assert cfg.arch
