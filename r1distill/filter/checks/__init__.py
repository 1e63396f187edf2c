"""Filter checks: pure functions `Sample -> Verdict`, registered by name, composed into policies (`filters/*.yaml`).

A check is written once as a plain function whose thresholds are keyword-only parameters, plus one registration line:

    def long_paragraph(sample: Sample, *, max_chars: int = 3000) -> Verdict: ...
    register("long_paragraph", long_paragraph)

A policy entry `{check: long_paragraph, max_chars: 2000}` then builds `partial(long_paragraph, max_chars=2000)`.
A drop sets `verdict.evidence` (`evidence(...)`: the offending excerpt, its offset, the threshold) so a person can
judge it without reading the whole trace; the stage writes it to `meta["filter"]["evidence"]`.
Checks that need set-up (a tokenizer) register a factory instead (`register_factory`). A policy may also name a
user's own factory by dotted path, `my_pkg.my_module:factory`; it is called with the entry's parameters and must
return a `Sample -> Verdict` callable.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from r1distill.core.config import ConfigError, load_object
from r1distill.core.records import Sample, Verdict
from r1distill.core.text import excerpt

Check = Callable[[Sample], Verdict]
Factory = Callable[..., Check]

_FACTORIES: dict[str, Factory] = {}


def _params_of(fn: Callable[..., Any]) -> dict[str, inspect.Parameter]:
    return {n: p for n, p in inspect.signature(fn).parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}


def register(name: str, fn: Callable[..., Verdict]) -> Callable[..., Verdict]:
    """Register check function `fn(sample, *, **thresholds)` under `name`; its factory binds the thresholds."""
    allowed = _params_of(fn)

    def factory(**params: Any) -> Check:
        unknown = sorted(set(params) - set(allowed))
        if unknown:
            raise TypeError(f"unknown parameter {unknown[0]!r}; valid: {', '.join(allowed) or '(none)'}")
        return functools.partial(fn, **params)

    factory.__doc__ = fn.__doc__
    register_factory(name, factory)
    return fn


def register_factory(name: str, factory: Factory) -> Factory:
    """Register a factory `(**params) -> Check` for checks that must prepare something (load a tokenizer)."""
    if name in _FACTORIES:
        raise ValueError(f"check {name!r} is registered twice")
    _FACTORIES[name] = factory
    return factory


def evidence(part: str, text: str, start: int, end: int | None, threshold: Any, **extra: Any) -> dict[str, Any]:
    """A drop's evidence (`meta.filter.evidence`): the offending excerpt of `part` (reasoning or answer; at most
    300 characters from `start`), its character offset in that part, and the threshold it crossed."""
    shown, offset = excerpt(text, start, end)
    end = offset + len(shown)
    return {"part": part, "offset": offset, "excerpt": shown, "threshold": threshold, **extra,
            "before": text[max(0, offset - CONTEXT) : offset], "after": text[end : end + CONTEXT]}  # fmt: skip


CONTEXT = 80  # characters of context on each side of an excerpt, for the reports' highlighting


def available() -> list[str]:
    return sorted(_FACTORIES)


def build_check(name: str, params: dict[str, Any], where: str = "policy") -> Check:
    """The check `name` (registered, or `module:factory`) bound to `params`; a bad name/param is a ConfigError."""
    if ":" in name:
        factory = load_object(name, where, "check", "factory")
    else:
        if name not in _FACTORIES:
            raise ConfigError(f"{where}: unknown check {name!r}; registered checks: {', '.join(available())}")
        factory = _FACTORIES[name]
    try:
        check = factory(**params)
    except TypeError as e:
        raise ConfigError(f"{where}: check {name!r}: {e}") from None
    if not callable(check):
        raise ConfigError(f"{where}: {name!r} must return a callable Sample -> Verdict, got {type(check).__name__}")
    return check


# Importing the modules registers their checks (a dict insert each; no work at import time).
from r1distill.filter.checks import (  # noqa: E402,F401
    code_block,
    correct,
    format,
    language,
    length,
    paragraph,
    repetition,
)
