"""Recipe YAML -> typed stage configs.

A recipe has a few top-level keys (`name`, `run_dir`, `extends`) and one section per stage. Each stage declares a
dataclass; `section()` builds it, rejecting unknown keys with the list of valid ones. Fields typed `dict` are the
upstream libraries' own settings (`vllm:`, `sampling:`, `trl:`, ...): passed through untouched, never mirrored.

Overrides use dotted paths: `generate.n=4`, `generate.sampling.max_tokens=64` (values parsed as YAML).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import importlib
import json
import re
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from r1distill.core.registry import STAGES
from r1distill.core.store import StageError

TOP_LEVEL = ("name", "run_dir", "extends", "description", "slurm")


_SCI = re.compile(r"^[-+]?\d+(\.\d*)?[eE][-+]?\d+$")


class ConfigError(StageError):
    """A bad recipe or override; the message names the file, key and the valid choices."""


def _load_yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise ConfigError(f"{path}: recipe file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ConfigError(f"{where}: invalid YAML: {e.problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe must be a mapping of sections, got {type(data).__name__}")
    return data


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def apply_override(data: dict[str, Any], override: str) -> None:
    """Apply one `dotted.key=value` override in place."""
    if "=" not in override:
        raise ConfigError(f"override {override!r}: expected dotted.key=value, e.g. generate.n=4")
    key, raw = override.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"override {override!r}: empty key segment")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {override!r}: {part!r} is a value, not a section")
        node = child
    value = yaml.safe_load(raw) if raw.strip() else ""
    if isinstance(value, str) and _SCI.match(value):
        value = float(value)  # YAML 1.1 reads 1e-4 (no dot) as a string; on a command line it means a number
    node[parts[-1]] = value


def load_object(spec: str, where: str, what: str, kind: str) -> Any:
    """The object a `package.module:name` path names (a user's own check or reward); a bad path is a ConfigError
    naming `where`."""
    module_name, _, attr = spec.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as e:
        raise ConfigError(f"{where}: cannot load {what} {spec!r} ({e}); use 'package.module:{kind}'") from None


class Recipe:
    """A loaded recipe: raw sections plus where they came from, so errors can name the file."""

    def __init__(self, path: str | Path | None, data: dict[str, Any]):
        self.path = Path(path) if path else None
        self.data = data
        unknown = sorted(set(data) - set(STAGES) - set(TOP_LEVEL))
        if unknown:
            raise ConfigError(
                f"{self.where}: unknown section {unknown[0]!r}; valid sections: {', '.join(TOP_LEVEL + tuple(STAGES))}"
            )

    @property
    def where(self) -> str:
        return str(self.path) if self.path else "<recipe>"

    @property
    def name(self) -> str:
        return str(self.data.get("name") or (self.path.stem if self.path else "run"))

    @property
    def run_dir(self) -> Path:
        return Path(self.data.get("run_dir") or Path("runs") / self.name)

    def stages(self) -> list[str]:
        return [s for s in STAGES if s in self.data]

    def section(self, stage: str, cls: type) -> Any:
        raw = self.data.get(stage)
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{self.where}: section {stage!r} must be a mapping")
        return from_dict(cls, raw, f"{self.where}: {stage}")


def load_recipe(path: str | Path | dict[str, Any], overrides: list[str] | None = None) -> Recipe:
    """Read a recipe, follow `extends:` (a path relative to the recipe), then apply overrides. A dict is a recipe
    made in memory (e.g. from command-line flags)."""
    if isinstance(path, dict):
        data = copy.deepcopy(path)
        for override in overrides or []:
            apply_override(data, override)
        return Recipe(None, data)
    path = Path(path)
    data = _load_yaml(path)
    seen = {path.resolve()}
    while "extends" in data:
        base_path = (path.parent / str(data.pop("extends"))).resolve()
        if base_path in seen:
            raise ConfigError(f"{path}: 'extends' cycle through {base_path}")
        seen.add(base_path)
        base = _load_yaml(base_path)
        data = deep_merge(base, data)
    for override in overrides or []:
        apply_override(data, override)
    return Recipe(path, data)


def _check_type(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_type(value, arg, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(tp, value, where)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_check_type(v, args[0], f"{where}[{i}]") if args else v for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool):
        if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
            raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
        return value
    return value


def from_dict(cls: type, data: dict[str, Any], where: str) -> Any:
    """Build dataclass `cls` from `data`; unknown keys and wrong types raise ConfigError naming the key."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; valid keys: {', '.join(fields)}")
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _check_type(data[name], hints[name], f"{where}.{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}: missing required key {name!r}")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:  # a config's own __post_init__ validation
        raise ConfigError(f"{where}: {e}") from None


def config_hash(obj: Any, exclude: tuple[str, ...] = ()) -> str:
    """A short stable hash of a config (dataclass or dict), ignoring fields in `exclude` and in the config's own
    `HASH_EXCLUDE` (settings such as worker counts that do not change the output), and including what its
    `hash_extra()` returns (the content of files it names, such as a filter policy, so an edit counts)."""
    data = dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else dict(obj)
    extra = getattr(obj, "hash_extra", None)
    if callable(extra):
        data["__extra__"] = extra()
    for key in (*exclude, *getattr(obj, "HASH_EXCLUDE", ())):
        data.pop(key, None)
    blob = json.dumps(data, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
