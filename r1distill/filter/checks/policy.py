"""A filter policy: an ordered list of checks with thresholds, read from `filters/*.yaml`.

    name: r1
    checks:
      - check: think_format
      - check: code_block
        domains: [math, science]      # run only for these domains (`skip_domains:` is the opposite)
      - check: my_pkg.my_checks:no_emoji
        max_emoji: 3

The first check that drops a sample decides its reason, so the order is the funnel order of the report.
`overrides` (from the recipe) update an entry's parameters by check name, or disable it with `false`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from r1distill.core.config import ConfigError
from r1distill.core.records import Sample, Verdict
from r1distill.filter.checks import Check, build_check, evidence

_ENTRY_KEYS = ("check", "domains", "skip_domains", "name")


@dataclass
class Entry:
    """One policy step: `name` is what reports and `meta["filter"]["check"]` show."""

    name: str
    check: Check
    params: dict[str, Any]
    domains: frozenset[str] | None = None
    skip_domains: frozenset[str] = frozenset()

    def applies(self, domain: str) -> bool:
        return (self.domains is None or domain in self.domains) and domain not in self.skip_domains


@dataclass
class Policy:
    name: str
    entries: list[Entry]

    def __call__(self, sample: Sample) -> tuple[str | None, Verdict]:
        """(name of the first check that drops the sample, its verdict), or (None, ok)."""
        for entry in self.entries:
            if not entry.applies(sample.domain):
                continue
            verdict = entry.check(sample)
            if not verdict.keep:
                if verdict.evidence is None:  # a user's check that gives none: the reasoning's start, its details
                    verdict.evidence = evidence("reasoning", sample.reasoning, 0, None, entry.params or None)
                return entry.name, verdict
        return None, Verdict.ok()

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.entries]


def load_policy(path: str | Path, overrides: dict[str, Any] | None = None) -> Policy:
    """Read a policy file and build its checks; errors name the file and the entry."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: filter policy not found (policy paths are relative to the current directory)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from None
    raw = data.get("checks")
    if not isinstance(raw, list):
        raise ConfigError(f"{path}: 'checks' must be a list of {{check: NAME, ...params}} entries")
    return build_policy(str(data.get("name") or path.stem), raw, overrides or {}, str(path))


def build_policy(name: str, raw: list[Any], overrides: dict[str, Any], where: str) -> Policy:
    overrides = copy.deepcopy(overrides)
    entries = []
    for i, item in enumerate(raw):
        here = f"{where}: checks[{i}]"
        if not isinstance(item, dict) or "check" not in item:
            raise ConfigError(f"{here}: expected a mapping with a 'check' key, got {item!r}")
        params = {k: v for k, v in item.items() if k not in _ENTRY_KEYS}
        entry_name = str(item.get("name") or item["check"])
        if entry_name in overrides:
            over = overrides.pop(entry_name)
            if over is False:
                continue
            if not isinstance(over, dict):
                raise ConfigError(f"overrides.{entry_name}: expected a mapping of parameters or false, got {over!r}")
            item = {**item, **{k: v for k, v in over.items() if k in ("domains", "skip_domains")}}
            params.update({k: v for k, v in over.items() if k not in _ENTRY_KEYS})
        domains = item.get("domains")
        entries.append(
            Entry(
                name=entry_name,
                check=build_check(str(item["check"]), params, here),
                params=params,
                domains=frozenset(domains) if domains is not None else None,
                skip_domains=frozenset(item.get("skip_domains") or ()),
            )
        )
    if overrides:
        names = ", ".join(e.name for e in entries)
        raise ConfigError(f"overrides: {sorted(overrides)[0]!r} is not a check of policy {name!r} ({names})")
    return Policy(name, entries)


def policy_entry_names(path: str | Path) -> list[str]:
    """The entry names of a policy file, without building its checks (to decide which overrides apply)."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return []
    return [str(e.get("name") or e.get("check")) for e in data.get("checks") or [] if isinstance(e, dict)]
