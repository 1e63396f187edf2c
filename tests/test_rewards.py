"""The GRPO rewards on constructed completions; the accuracy reward against the verify stage's own verdicts."""

from __future__ import annotations

import doctest

import pytest

from r1distill.core.config import ConfigError
from r1distill.core.records import Sample
from r1distill.core.store import ShardWriter, iter_records, write_manifest
from r1distill.filter.checks.repetition import repetition
from r1distill.grading.grader import Grader
from r1distill.train import rewards
from r1distill.train.prompts import _reference
from r1distill.verify.stage import MathConfig, PolicyConfig, VerifyConfig
from r1distill.verify.stage import run as verify_run

PREFILL = "<think>\n"
STDIN_REF = {"tests": [{"input": "2 3\n", "output": "5\n", "testtype": "stdin"}]}
ADD = "```python\na, b = map(int, input().split())\nprint(a {} b)\n```"

# (domain, reference, text the student wrote after the prefill, finish reason, correct?)
CASES = [
    ("math", "\\frac{1}{2}", "halve it\n</think>\n\n\\boxed{0.5}", "stop", True),
    ("math", "\\frac{1}{2}", "halve it\n</think>\n\nThe answer is 1/2.", "stop", True),
    ("math", "Total: 7*6=42\n#### 42", "7*6\n</think>\n\nSo \\boxed{41}", "stop", False),
    ("math", "42", "7*6\n</think>\n\nIt is 42", "stop", True),
    ("math", 12, "4*3\n</think>\n\n\\boxed{12}", "stop", True),  # a number as reference (AIME-style)
    ("math", "3", "1+1 is 2, plus 1 is", "length", False),  # cut inside <think>
    ("math", "3", "1+2=3 and so \\boxed{3}", "stop", False),  # never closed <think>: no answer, as verify says
    ("math", "3", "1+2\n</think>\n\nI give up.", "stop", False),
    ("code", STDIN_REF, "add\n</think>\n\n" + ADD.format("+"), "stop", True),
    ("code", STDIN_REF, "mul\n</think>\n\n" + ADD.format("*"), "stop", False),
    ("science", "B", "think\n</think>\n\nThe answer is (B).", "stop", True),
]


def _generate_folder(folder):
    """A generate-like folder holding CASES as the teacher samples generate writes (prefill + text)."""
    with ShardWriter(folder) as writer:
        for i, (domain, ref, text, finish, _) in enumerate(CASES):
            sample = Sample(
                f"t/{i}/0", "t", str(i), 0, domain, f"problem {i}", [{"role": "user", "content": f"problem {i}"}],
                ref, PREFILL + text, {"finish_reason": finish},
            )  # fmt: skip
            writer.write(sample.to_json())
    write_manifest(folder, {"stage": "generate", "counts": {"samples": len(CASES)}})
    return folder


def test_accuracy_reward_agrees_with_verify(tmp_path):
    cfg = VerifyConfig(policy=PolicyConfig(keep="all"), math=MathConfig(timeout_s=5), workers=2)
    verify_run(cfg, _generate_folder(tmp_path / "generate"), tmp_path / "verify")
    verdicts = {r["id"]: r["meta"]["verify"]["correct"] for r in iter_records(tmp_path / "verify")}
    verify_rewards = [1.0 if verdicts[f"t/{i}/0"] else 0.0 for i in range(len(CASES))]

    with Grader(math_timeout_s=5, workers=2) as grader:
        (accuracy,), _ = rewards.build({"accuracy": 1.0}, "rl.rewards", grader=grader, prefill=PREFILL)
        # as TRL calls it: the dataset's columns (references stored as the rl stage stores them) as keyword lists
        got = accuracy(
            prompts=["p"] * len(CASES),
            completions=[text for _, _, text, _, _ in CASES],
            completion_ids=[[1]] * len(CASES),
            reference=[_reference(ref) for _, ref, _, _, _ in CASES],
            domain=[domain for domain, *_ in CASES],
        )
        # chat-format completions (a list of messages) are graded on the assistant message
        chat = accuracy(completions=[[{"role": "assistant", "content": CASES[0][2]}]], reference=[CASES[0][1]])
    assert got == verify_rewards
    assert got == [1.0 if ok else 0.0 for *_, ok in CASES]
    assert chat == [1.0]


def test_format_reward_follows_the_think_format_check():
    completions = [
        "reasoning\n</think>\n\n\\boxed{4}",  # the prefill opened <think>
        "reasoning without an end",
        "a\n</think>\nb\n<think>\nc\n</think>\nd",  # a second block
        "reasoning\n</think>\n",  # nothing after the block
        "\n</think>\n\n4",  # empty reasoning
    ]
    assert rewards.format_reward(completions, prefill=PREFILL) == [1.0, 0.0, 0.0, 0.0, 0.0]
    assert rewards.format_reward(["<think>\nr\n</think>\n\nx", "no tags at all"]) == [1.0, 0.0]


def test_length_reward_is_dapos_soft_overlong_penalty():
    ids = [[7] * n for n in (10, 80, 81, 90, 99, 100)]
    got = rewards.length_reward(["x"] * len(ids), ids, max_tokens=100, cache_tokens=20)
    assert got[:2] == [0.0, 0.0] and got[-1] == -1.0
    assert got[2] == pytest.approx(-0.05) and got[3] == pytest.approx(-0.5)
    assert all(a > b for a, b in zip(got[1:], got[2:], strict=False))  # strictly falling inside the window
    # the default window is a fifth of max_tokens, which the stage fills from GRPOConfig.max_completion_length
    (length,), _ = rewards.build({"length": 1.0}, "rl.rewards", max_tokens=50)
    assert length(completions=["x", "y"], completion_ids=[[1] * 40, [1] * 45]) == [0.0, -0.5]


def test_repetition_reward_is_minus_the_filters_repeated_ngram_share():
    loop = "Let me check again. " * 80
    varied = " ".join(f"step {i} adds {i * 7} to the running total of {i * i}" for i in range(40))
    got = rewards.repetition_reward([loop, varied, f"{varied}\n</think>\n{loop}"], ngram=10)
    assert got[0] < -0.9 and got[1] == 0.0 and -0.9 < got[2] < 0.0
    # the filter's n-gram signal (the others switched off) reports the same share when it drops the loop
    sample = Sample("x/0/0", "x", "0", 0, "math", "", [], None, "<think>\n" + loop + "\n</think>\n4")
    verdict = repetition(sample, min_compression_ratio=0.0, max_dup_para_frac=1.0, max_dup_line_frac=1.0, loops=False)
    assert verdict.reason == "dup_ngram_share"
    assert -got[0] == pytest.approx(verdict.details["share"], abs=1e-3)


def test_build_weights_names_and_injected_settings():
    spec = {"format": 0.2, "length": {"weight": 0.1, "cache_tokens": 8}, "repetition": 0.0, "accuracy": 0}
    funcs, weights = rewards.build(spec, "rl.rewards", prefill=PREFILL, max_tokens=32)
    assert [rewards.callable_name(f) for f in funcs] == ["format_reward", "length_reward"]
    assert weights == [0.2, 0.1]
    assert funcs[0](completions=["r\n</think>\nx"]) == [1.0]  # the prefill was bound
    assert funcs[1].keywords == {"cache_tokens": 8, "max_tokens": 32}
    # a user's own reward by dotted path, with its settings
    (own,), (w,) = rewards.build(
        {"r1distill.train.rewards:repetition_reward": {"weight": -1, "ngram": 2}}, "rl.rewards"
    )
    assert w == -1.0 and own(completions=["a b a b a b"]) == [-0.6]


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"acuracy": 1.0}, "rl.rewards.acuracy: unknown reward 'acuracy'; built-in: accuracy"),
        ({"length": {"weight": 1, "max_token": 5}}, "rl.rewards.length: unknown setting 'max_token'"),
        ({"length": {"weight": 1, "max_tokens": 10, "cache_tokens": 20}}, "rl.rewards.length: cache_tokens must be"),
        ({"length": 1.0}, "rl.rewards.length: needs the setting 'max_tokens'"),
        ({"format": "high"}, "rl.rewards.format: expected a weight"),
        ({"format": 0}, "rl.rewards: every weight is 0"),
        ({"nowhere.module:fn": 1}, "rl.rewards.nowhere.module:fn: cannot load reward"),
    ],
)
def test_bad_reward_specs_name_the_field(spec, message):
    with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(").replace(".", r"\.")):
        rewards.build(spec, "rl.rewards")


def test_module_doctests_pass():
    result = doctest.testmod(rewards)
    assert result.attempted >= 4 and result.failed == 0
