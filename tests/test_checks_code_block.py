"""code_block and long_paragraph: pass and drop cases, and the per-domain scoping of a policy."""

from r1distill.filter.checks import build_check
from r1distill.filter.checks.policy import build_policy
from r1distill.testing.samples import sample

MATH_REASONING = """We need x such that 2x + 3 = 11.
Subtract 3 from both sides: 2x = 8.
Then x = 4.
Check: 2(4) + 3 = 11, which matches.
$$\\frac{a}{b} = \\left\\{ 1, 2 \\right\\}$$
\\sum_{i=1}^{n} i = \\frac{n(n+1)}{2}
So f(x) = x^2 + 1 and f(2) = 5."""

PASTED = """Let me just compute it in Python.
```python
total = 0
for i in range(1, 101):
    total += i
print(total)
```
So the sum is 5050."""

UNFENCED = """I could write the loop:
int total = 0;
for (int i = 1; i <= 100; i++) {
    total += i;
}
printf("%d", total);
return total;
So the sum is 5050."""


def reason(check: str, s, **params) -> str:
    return build_check(check, params)(s).reason


def test_math_reasoning_is_not_code():
    assert reason("code_block", sample(reasoning=MATH_REASONING)) == "ok"


def test_fenced_code_in_reasoning():
    assert reason("code_block", sample(reasoning=PASTED)) == "code_block"
    assert reason("code_block", sample(reasoning=PASTED), allow_fenced=True) == "ok"


def test_unfenced_code_lines():
    verdict = build_check("code_block", {})(sample(reasoning=UNFENCED))
    assert verdict.reason == "code_block" and verdict.details["kind"] == "unfenced"
    assert reason("code_block", sample(reasoning=UNFENCED), max_code_lines=10) == "ok"


def test_code_block_only_where_the_policy_says():
    policy = build_policy("t", [{"check": "code_block", "domains": ["math", "science"]}], {}, "test")
    assert policy(sample(reasoning=PASTED, domain="math"))[1].reason == "code_block"
    assert policy(sample(reasoning=PASTED, domain="code"))[1].reason == "ok"


def test_long_paragraph():
    short = "\n\n".join(["A reasonable paragraph of thought. " * 20] * 10)
    assert reason("long_paragraph", sample(reasoning=short)) == "ok"
    wall = short + "\n\n" + "One endless paragraph without a break. " * 100
    verdict = build_check("long_paragraph", {"max_chars": 3000})(sample(reasoning=wall))
    assert verdict.reason == "long_paragraph" and verdict.details["chars"] > 3000


def test_long_paragraph_weighs_cjk_and_skips_code():
    chinese = "我们需要计算这个和" * 150  # 1350 characters, ~4000 Latin-equivalent
    assert reason("long_paragraph", sample(reasoning=chinese), max_chars=3000) == "long_paragraph"
    assert reason("long_paragraph", sample(reasoning=chinese), max_chars=3000, cjk_weight=1.0) == "ok"
    code = "Plan:\n\n```python\n" + "x = compute(x)  # one step of the iteration\n" * 100 + "```\n\nDone."
    assert reason("long_paragraph", sample(reasoning=code)) == "ok"
    assert reason("long_paragraph", sample(reasoning=code), ignore_code=False) == "long_paragraph"
