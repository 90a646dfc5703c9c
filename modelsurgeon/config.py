"""The rehead recipe: defaults, YAML files and command-line flags, merged in that order.

Precedence is ``defaults < config file < flags``: a key in ``--config recipe.yaml`` overrides the
default, and a flag given on the command line overrides both. Keys are the option names in
snake_case (``--no-verify`` is ``verify: false``). Unknown keys are a usage error that names the key
and suggests the nearest valid one. This module imports no torch.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelsurgeon.errors import UsageError

__all__ = ["BOUNDS_MODES", "ReheadConfig", "load_config_file"]

BOUNDS_MODES = ("abs", "std")
# Input paths in a recipe are relative to the recipe's directory; ``out`` stays relative to the cwd.
_FILE_RELATIVE = ("checkpoint", "labels")


def _to_float(key: str, value: Any) -> float:
    if isinstance(value, bool):
        raise UsageError(f"{key} must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{key} must be a number, got {value!r}") from exc


def _to_int(key: str, value: Any) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise UsageError(f"{key} must be a whole number, got {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{key} must be a whole number, got {value!r}") from exc


def _to_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
        return value.lower() in ("true", "yes", "1", "on")
    raise UsageError(f"{key} must be true or false, got {value!r}")


def _to_bias(value: Any) -> float:
    if isinstance(value, str) and value.strip().lower() in ("zeros", "zero"):
        return 0.0
    try:
        bias = float(value)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"bias must be 'zeros' or a number, got {value!r}") from exc
    if not math.isfinite(bias):
        raise UsageError(f"bias must be finite, got {value!r}")
    return bias


def _to_str(key: str, value: Any) -> str:
    if isinstance(value, (str, os.PathLike)):
        return os.fspath(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and key == "arch":
        return str(value)
    raise UsageError(f"{key} must be a string, got {value!r}")


@dataclass(frozen=True)
class ReheadConfig:
    """Everything ``rehead`` needs, validated. Build it with :meth:`from_mapping`.

    ``a`` and ``b`` are absolute bounds (as in ``torch.nn.init.trunc_normal_``) unless
    ``bounds == "std"``, where they are multiples of ``std`` around ``mean`` (TensorFlow's convention).
    """

    arch: str | None = None
    classes: int | None = None
    checkpoint: str | None = None
    out: str | None = None
    mean: float = 0.0
    std: float = 0.02
    a: float = -2.0
    b: float = 2.0
    bounds: str = "abs"
    bias: float = 0.0
    seed: int | None = None
    ema: bool = False
    labels: str | None = None
    head: tuple[str, ...] = field(default_factory=tuple)
    force: bool = False
    link: bool = False
    verify: bool = True
    device: str = "cpu"

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """The valid keys, in declaration order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any], *, origin: str = "config") -> ReheadConfig:
        """Build a config from a mapping of option names (snake_case) to values.

        Args:
            mapping: Keys are option names (``std``, ``classes``...); ``None`` values are ignored.
            origin: Where the mapping came from, for error messages (a file name, ``flags``).

        Returns:
            A validated, frozen config.

        Raises:
            UsageError: An unknown key (the nearest valid one is suggested) or a bad value.
        """
        cls._check_keys(mapping, origin)
        values: dict[str, Any] = {}
        for key, value in mapping.items():
            name = str(key).replace("-", "_")
            if value is None:
                continue
            values[name] = cls._coerce(name, value)
        config = cls(**values)
        config._check()
        return config

    @staticmethod
    def _coerce(name: str, value: Any) -> Any:
        if name in ("mean", "std", "a", "b"):
            return _to_float(name, value)
        if name in ("classes", "seed"):
            return _to_int(name, value)
        if name in ("ema", "force", "link", "verify"):
            return _to_bool(name, value)
        if name == "bias":
            return _to_bias(value)
        if name == "head":
            items = [value] if isinstance(value, str) else list(value)
            return tuple(_to_str(name, v) for v in items)
        return _to_str(name, value)

    def _check(self) -> None:
        if self.classes is not None and self.classes < 0:
            raise UsageError(
                f"--classes must be >= 0, got {self.classes}",
                "use 0 to remove the head (a feature extractor)",
            )
        if self.bounds not in BOUNDS_MODES:
            raise UsageError(f"--bounds must be 'abs' or 'std', got {self.bounds!r}")
        if self.seed is not None and not 0 <= self.seed < 2**63:
            raise UsageError(f"--seed must be in [0, 2**63), got {self.seed}")
        for name in ("mean", "std", "a", "b"):
            if math.isnan(getattr(self, name)):
                raise UsageError(f"--{name} is NaN", "give a number")
        if not (self.std > 0 and math.isfinite(self.std)):
            raise UsageError(f"--std must be a positive finite number, got {self.std}")
        if not math.isfinite(self.mean):
            raise UsageError(f"--mean must be finite, got {self.mean}")
        if not self.a < self.b:
            raise UsageError(f"--a must be below --b, got a={self.a} b={self.b}")

    @classmethod
    def from_sources(
        cls, file_mapping: Mapping[str, Any] | None, flags: Mapping[str, Any], *, file_origin: str = "config"
    ) -> ReheadConfig:
        """Merge ``defaults < config file < flags`` and validate the result once.

        Args:
            file_mapping: The recipe read by :func:`load_config_file`, or ``None``.
            flags: Option values from the command line; ``None`` means "not given".
            file_origin: The recipe's name, for error messages.

        Returns:
            The validated config.
        """
        merged: dict[str, Any] = {}
        if file_mapping:
            cls._check_keys(file_mapping, file_origin)
            merged.update({str(k).replace("-", "_"): v for k, v in file_mapping.items()})
        merged.update({k: v for k, v in flags.items() if v is not None})
        return cls.from_mapping(merged, origin=file_origin if file_mapping else "flags")

    @classmethod
    def _check_keys(cls, mapping: Mapping[str, Any], origin: str) -> None:
        valid = cls.keys()
        for key in mapping:
            name = str(key).replace("-", "_")
            if name not in valid:
                close = difflib.get_close_matches(name, valid, n=1)
                hint = f"did you mean '{close[0]}'?" if close else f"valid keys: {', '.join(valid)}"
                raise UsageError(f"unknown key '{key}' in {origin}", hint)

    def to_dict(self) -> dict[str, Any]:
        """The config as a plain mapping (for reports and provenance)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def load_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML recipe into a plain mapping (not yet validated).

    ``checkpoint`` and ``labels`` paths are resolved relative to the recipe's directory; ``out``
    stays relative to the working directory.

    Args:
        path: A YAML file whose top level is a mapping of option names to values.

    Returns:
        The mapping.

    Raises:
        UsageError: The file is missing, not YAML, or not a mapping.
    """
    import yaml

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read config file {p}: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UsageError(f"config file {p} is not valid YAML: {first}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"config file {p} must be a mapping of option names to values")
    for key in _FILE_RELATIVE:
        value = data.get(key)
        if isinstance(value, str) and value != "-" and not os.path.isabs(value):
            data[key] = os.path.normpath(p.parent / value)
    return data
