"""GRPO rewards built from the project's own judges: the grader, the filter's format and repetition checks.

Each reward is a plain function with TRL's reward signature, `(completions, **columns) -> list[float]`, one value
per completion; TRL passes the dataset's columns (`reference`, `domain`, ...) and `completion_ids` as keyword lists.
Settings are keyword-only parameters, bound with `functools.partial` from the recipe:

    rewards:
      accuracy: 1.0                                   # a weight ...
      format: 0.2
      length: {weight: 0.1, cache_tokens: 64}         # ... or a weight with the reward's settings
      repetition: 0.0                                 # weight 0: not computed
      my_pkg.rewards:brevity: 0.5                     # a user's own function, by dotted path

The weights go to `GRPOConfig.reward_weights`; TRL logs each reward as `rewards/<function name>/mean`.
Completions are graded as `prefill + completion`, the text generate would have stored, so a completion is judged
exactly as verify judges a teacher sample.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any

from r1distill.core.config import ConfigError, load_object
from r1distill.core.records import Sample, parse_completion
from r1distill.filter.checks.format import think_format
from r1distill.filter.checks.repetition import dup_ngram_share, word_hashes

Reward = Callable[..., list[float]]


def completion_text(completion: Any, prefill: str = "") -> str:
    """The full assistant text: TRL passes strings, or for chat prompts a message list whose last one is ours."""
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        completion = completion[-1].get("content", "")
    return prefill + str(completion)


def _sample(i: int, text: str, reference: Any = None, domain: str = "math") -> Sample:
    return Sample(f"rl/{i}/0", "rl", str(i), 0, domain, "", [], reference, text, {"finish_reason": "stop"})


def accuracy_reward(
    completions: Sequence[Any],
    reference: Sequence[Any],
    domain: Sequence[str] | None = None,
    *,
    grader: Any,
    prefill: str = "",
    **_: Any,
) -> list[float]:
    """1.0 when the project's `Grader` (math-verify under its deadline, or the code sandbox) says correct, else 0.0.

    The same grader verify uses, so a completion earns the reward exactly when verify would keep it as correct.
    """
    domains = domain or ["math"] * len(completions)
    samples = [
        _sample(i, completion_text(c, prefill), ref, d)
        for i, (c, ref, d) in enumerate(zip(completions, reference, domains, strict=True))
    ]
    return [g.reward for g in grader.grade(samples)]


def format_reward(completions: Sequence[Any], *, prefill: str = "", **_: Any) -> list[float]:
    """1.0 when the filter's `think_format` check keeps the completion (one closed `<think>` block with reasoning,
    then a non-empty answer), else 0.0.

    >>> format_reward(["<think>\\n2+2=4\\n</think>\\n\\n\\\\boxed{4}", "<think>\\nstill thinking"])
    [1.0, 0.0]
    >>> format_reward(["2+2=4\\n</think>\\n4"], prefill="<think>\\n")
    [1.0]
    """
    verdicts = [think_format(_sample(i, completion_text(c, prefill))) for i, c in enumerate(completions)]
    return [1.0 if v.keep else 0.0 for v in verdicts]


def length_reward(
    completions: Sequence[Any],
    completion_ids: Sequence[Sequence[int]],
    *,
    max_tokens: int,
    cache_tokens: int | None = None,
    **_: Any,
) -> list[float]:
    """DAPO's soft overlong punishment of each completion's token count, in [-1, 0]: 0 up to `max_tokens -
    cache_tokens`, then falling linearly to -1 at `max_tokens`. TRL's own (`trl.rewards.get_soft_overlong_punishment`).

    `max_tokens` defaults to GRPOConfig's `max_completion_length`; `cache_tokens` (the width of the linear ramp)
    to a fifth of it, DAPO's 4096 of 20480.

    >>> length_reward(["a", "b", "c"], [[1] * 10, [1] * 90, [1] * 100], max_tokens=100, cache_tokens=20)
    [0.0, -0.5, -1.0]
    """
    from trl.rewards import get_soft_overlong_punishment

    cache = cache_tokens if cache_tokens is not None else max(1, max_tokens // 5)
    if not 0 < cache <= max_tokens:
        raise ValueError(f"cache_tokens must be in 1..max_tokens ({max_tokens}), got {cache}")
    return get_soft_overlong_punishment(max_tokens, cache)(completion_ids=[list(ids) for ids in completion_ids])


def repetition_reward(completions: Sequence[Any], *, ngram: int = 3, prefill: str = "", **_: Any) -> list[float]:
    """Minus the share of repeated word n-grams in reasoning and answer (the filter's `dup_ngram_share`), in [-1, 0]:
    a dense version of the repetition check, as open-r1's repetition penalty (n = 3 there too).

    Not TRL's `get_repetition_penalty_reward`: that one counts token-id n-grams of the raw completion, so a policy
    could learn to pass it while the filter, which reads words of the parsed reasoning and answer, still drops it.

    >>> repetition_reward(["one two three four five six", "go on go on go on go on"])
    [0.0, -0.6666666666666667]
    """
    out = []
    for c in completions:
        parsed = parse_completion(completion_text(c, prefill))
        out.append(0.0 - float(dup_ngram_share(word_hashes(f"{parsed.reasoning}\n{parsed.answer}"), ngram)))
    return out


REWARDS: dict[str, Reward] = {
    "accuracy": accuracy_reward,
    "format": format_reward,
    "length": length_reward,
    "repetition": repetition_reward,
}
DEFAULT_WEIGHTS = {"accuracy": 1.0, "format": 0.2, "length": 0.1, "repetition": 0.0}
# What the stage supplies (when a reward takes it and the recipe does not set it).
INJECTED = ("grader", "prefill", "max_tokens")


def callable_name(fn: Reward) -> str:
    """The name TRL logs a reward under (`rewards/<name>/mean`): the function's, through `functools.partial`."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    return getattr(fn, "__name__", type(fn).__name__)


def _function(name: str, where: str) -> Reward:
    if ":" in name:
        fn = load_object(name, where, "reward", "function")
        if not callable(fn):
            raise ConfigError(f"{where}: {name!r} is not a function")
        return fn
    if name not in REWARDS:
        raise ConfigError(f"{where}: unknown reward {name!r}; built-in: {', '.join(REWARDS)} (or package.module:fn)")
    return REWARDS[name]


def _entry(value: Any, where: str) -> tuple[float, dict[str, Any]]:
    if isinstance(value, bool) or not isinstance(value, (int, float, dict)):
        raise ConfigError(f"{where}: expected a weight or a mapping with 'weight' and settings, got {value!r}")
    if isinstance(value, dict):
        params = dict(value)
        weight = params.pop("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise ConfigError(f"{where}.weight: expected a number, got {weight!r}")
        return float(weight), params
    return float(value), {}


class _NoGrading:
    """Stands in for the Grader when only the settings are checked: it is only ever asked to grade nothing."""

    def grade(self, samples: Sequence[Any]) -> list[Any]:
        if samples:
            raise RuntimeError("rewards.check: a reward was built for checking only and cannot grade")
        return []


def check(spec: dict[str, Any], where: str, max_tokens: int) -> None:
    """`build`'s checks without a grader or a model (for `r1distill run --dry-run`): names, weights, settings."""
    build(spec, where, grader=_NoGrading(), prefill="", max_tokens=max_tokens)


def uses_grader(spec: dict[str, Any]) -> bool:
    """Whether building `spec` needs a Grader (the accuracy reward, or a user's reward taking `grader`)."""
    for name, value in spec.items():
        weight, _ = _entry(value, name)
        if weight and "grader" in inspect.signature(_function(name, name)).parameters:
            return True
    return False


def build(spec: dict[str, Any], where: str, **context: Any) -> tuple[list[Reward], list[float]]:
    """The reward functions (settings bound) and their weights for `GRPOTrainer`/`GRPOConfig.reward_weights`.

    `context` holds what the stage supplies (`grader`, `prefill`, `max_tokens`); each is bound only where the
    function has a keyword-only parameter of that name and the recipe did not set it. Weight-0 rewards are left out.
    """
    funcs: list[Reward] = []
    weights: list[float] = []
    for name, value in spec.items():
        here = f"{where}.{name}"
        weight, params = _entry(value, here)
        if weight == 0:
            continue
        fn = _function(name, here)
        sig = inspect.signature(fn).parameters
        keyword = {n for n, p in sig.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
        unknown = sorted(set(params) - keyword)
        if unknown:
            raise ConfigError(f"{here}: unknown setting {unknown[0]!r}; valid: {', '.join(sorted(keyword)) or 'none'}")
        for key in INJECTED:
            if key in keyword and key not in params and context.get(key) is not None:
                params[key] = context[key]
        missing = [n for n in keyword if sig[n].default is inspect.Parameter.empty and n not in params]
        if missing:
            raise ConfigError(f"{here}: needs the setting {missing[0]!r}")
        bound = functools.partial(fn, **params) if params else fn
        if name in REWARDS:  # a call on an empty batch checks the settings now, not at the first training step
            try:
                bound(completions=[], completion_ids=[], reference=[])
            except (TypeError, ValueError) as e:
                raise ConfigError(f"{here}: {e}") from None
        funcs.append(bound)
        weights.append(weight)
    if not funcs:
        raise ConfigError(f"{where}: every weight is 0; give at least one reward a weight")
    return funcs, weights
