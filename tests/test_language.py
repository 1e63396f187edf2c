"""language_mix: English, Chinese, zh/en mixed at sentence and paragraph level, LaTeX, code, same-script languages."""

from pathlib import Path

from r1distill.filter.checks import build_check
from r1distill.testing.samples import sample

EN_PROMPT = "Find the number of positive integers n less than 100 such that n squared plus one is divisible by five."
EN_REASONING = """Okay, let me think about this problem. We want n^2 + 1 to be divisible by 5.

So n^2 must be congruent to 4 modulo 5, which happens when n is congruent to 2 or 3 modulo 5.

Wait, let me double-check that. The squares modulo 5 are 0, 1, 4, 4, 1, so yes, the residues 2 and 3 work.

Between 1 and 99 there are 20 numbers of each residue, so the count is 40."""
EN_ANSWER = "The residues 2 and 3 modulo 5 work, so the answer is $\\boxed{40}$."

ZH_PROMPT = "给定一个整数数组，请找出其中和最大的连续子数组，并返回其最大和。请说明算法的思路。"
ZH_REASONING = """好的，我现在需要解决最大子数组和的问题。这是一个经典的动态规划问题，可以用Kadane算法来解决。

首先，我们定义dp[i]为以第i个元素结尾的最大子数组和。那么状态转移方程是dp[i] = max(nums[i], dp[i-1] + nums[i])。

然后，我们只需要遍历一次数组，时间复杂度是O(n)，空间复杂度可以优化到O(1)。这个方法使用了greedy的思想。"""
ZH_ANSWER = (
    "使用Kadane算法：遍历数组，维护当前和与最大和。时间复杂度为O(n)。\n\n"
    "```python\ndef max_sub(nums):\n    best = cur = nums[0]\n    return best\n```"
)


def verdict(s, **params):
    return build_check("language_mix", {"reasoning_languages": ["en"], **params})(s)


def test_english_passes():
    assert verdict(sample(EN_REASONING, EN_ANSWER, problem=EN_PROMPT)).reason == "ok"


def test_chinese_prompt_answered_in_chinese_with_technical_terms_passes():
    assert verdict(sample(ZH_REASONING, ZH_ANSWER, problem=ZH_PROMPT)).reason == "ok"


def test_chinese_sentence_in_english_reasoning():
    mixed = EN_REASONING.replace("So n^2 must", "我们需要检查平方的余数。So n^2 must")
    v = verdict(sample(mixed, EN_ANSWER, problem=EN_PROMPT))
    assert v.reason == "language_mix" and v.details["part"] == "reasoning"
    assert v.details["foreign_sentences"] == 1


def test_chinese_words_inside_an_english_sentence():
    mixed = EN_REASONING.replace("the count is 40", "the 总数 is 40")
    assert verdict(sample(mixed, EN_ANSWER, problem=EN_PROMPT)).reason == "language_mix"


def test_english_paragraph_in_chinese_reasoning():
    mixed = ZH_REASONING + "\n\nWait, let me double check whether the empty subarray is allowed here or not."
    v = verdict(sample(mixed, ZH_ANSWER, problem=ZH_PROMPT))
    assert v.reason == "language_mix" and v.details["part"] == "reasoning"


def test_chinese_prompt_answered_in_english():
    v = verdict(
        sample(ZH_REASONING, "Use Kadane's algorithm: keep the running sum and the best sum.", problem=ZH_PROMPT)
    )
    assert v.reason == "language_mismatch" and v.details["part"] == "answer"


def test_latex_heavy_english_is_not_foreign():
    reasoning = (
        "Let $\\theta \\in [0, \\pi]$ and consider $\\sum_{k=1}^{n} \\binom{n}{k} x^k = (1+x)^n - 1$.\n\n"
        "Then \\[ \\int_0^{\\pi} \\sin^2\\theta \\, d\\theta = \\frac{\\pi}{2}, \\] so α + β = π holds.\n\n"
        "With \\text{gcd}(a, b) = 1 we get θ = π/4 and the value is $\\sqrt{2}/2$."
    )
    assert verdict(sample(reasoning, "$\\boxed{\\frac{\\sqrt{2}}{2}}$", problem=EN_PROMPT)).reason == "ok"


def test_code_heavy_answer_with_foreign_comments_is_not_foreign():
    answer = (
        "Here is the solution.\n\n```cpp\n// 计算最大子数组和\nint maxSub(vector<int>& nums) {\n"
        "    int best = nums[0]; // 当前最大值\n    return best;\n}\n```\n\nIt runs in O(n) time."
    )
    assert verdict(sample(EN_REASONING, answer, problem=EN_PROMPT)).reason == "ok"


def test_russian_prompt_english_thinking_is_a_policy_choice():
    prompt = (
        "Посчитай, сколько существует положительных целых чисел меньше ста, квадрат которых плюс один делится на пять."
    )
    answer = "Подходят остатки 2 и 3 по модулю 5, поэтому ответ: $\\boxed{40}$."
    s = sample(EN_REASONING, answer, problem=prompt)
    assert verdict(s).reason == "ok"
    strict = build_check("language_mix", {"reasoning_languages": []})(s)
    assert strict.reason == "language_mismatch" and strict.details["part"] == "reasoning"


def test_same_script_language_switch_needs_the_detector():
    prompt = "Viết một đoạn văn ngắn giải thích vì sao bầu trời có màu xanh vào ban ngày cho học sinh tiểu học."
    english = "The sky looks blue because air molecules scatter short blue wavelengths of sunlight more than red ones."
    v = verdict(sample(EN_REASONING, english, problem=prompt))
    assert v.reason == "language_mismatch" and v.details["lang"] == "en"
    vietnamese = (
        "Bầu trời có màu xanh vì các phân tử không khí tán xạ ánh sáng xanh của mặt trời nhiều hơn ánh sáng đỏ."
    )
    assert verdict(sample(EN_REASONING, vietnamese, problem=prompt)).reason == "ok"


def test_spanish_paragraph_in_english_reasoning():
    spanish = (
        "Entonces necesitamos contar cuántos números cumplen la condición, y para eso vamos a revisar cada "
        "residuo posible módulo cinco con mucho cuidado, porque es fácil equivocarse cuando hay tantos casos."
    )
    v = verdict(sample(EN_REASONING + "\n\n" + spanish, EN_ANSWER, problem=EN_PROMPT))
    assert v.reason == "language_mix" and v.details["langs"] == ["es"]


def test_prompt_naming_a_language_allows_it():
    prompt = "Please translate the following sentence into Chinese: the weather is lovely today."
    reasoning = "The user wants a translation. 'Weather' is 天气 and 'lovely' could be 很好."
    assert verdict(sample(reasoning, "今天天气很好。", problem=prompt)).reason == "ok"


def test_japanese_with_kanji_only_sentence():
    prompt = "袋の中に赤玉が3個、白玉が5個ある。2個同時に取り出すとき、両方とも赤玉である確率を求めよ。"
    reasoning = (
        "まず、全体の取り出し方を数えます。\n\n全事象数二十八通。\n\n赤玉2個の選び方は3通りなので、確率は3/28です。"
    )
    assert verdict(sample(reasoning, "確率は 3/28 です。", problem=prompt)).reason == "ok"


def test_deterministic_across_processes():
    """The detector's seed must be set by the check itself: each verdict comes from a fresh interpreter, so no
    state cached by an earlier call in the same process can make the verdicts agree."""
    import subprocess
    import sys

    code = (
        "import sys; sys.path.insert(0, 'tests'); import test_language as t; "
        "s = t.sample(t.EN_REASONING + '\\n\\nEntonces necesitamos contar los casos posibles con cuidado y paciencia "
        "ahora. Luego sumamos todo.', t.EN_ANSWER, problem=t.EN_PROMPT); print(t.verdict(s))"
    )
    root = Path(__file__).resolve().parents[1]
    runs = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root).stdout for _ in range(3)
    }
    assert len(runs) == 1 and next(iter(runs)).strip(), runs
