"""The one answer parser: final answer after </think>, boxed/fbox, "the answer is", last number, choices, code."""

from __future__ import annotations

import pytest

from r1distill.grading.answer import (
    MAX_DEPTH,
    boxes,
    extract_answer,
    extract_choice,
    extract_code,
    final_answer_text,
    last_boxed,
    reference_answer,
    screen,
)


@pytest.mark.parametrize(
    ("text", "value", "method"),
    [
        (r"so \boxed{42}.", "42", "boxed"),
        (r"first \boxed{1} then \boxed{\frac{1}{2}}", r"\frac{1}{2}", "boxed"),
        (r"\boxed{\left\{ x \mid x^{2} > 1 \right\}}", r"\left\{ x \mid x^{2} > 1 \right\}", "boxed"),
        (r"$\boxed{\frac{\sqrt{3}}{{2}}}$", r"\frac{\sqrt{3}}{{2}}", "boxed"),
        (r"\fbox{7} is it", "7", "boxed"),
        (r"so the result is \boxed 5 overall", "5", "boxed"),
        (r"\boxed{\text{(C)}}", r"\text{(C)}", "boxed"),
        ("The answer is $\\frac{3}{4}$.", r"\frac{3}{4}", "answer_is"),
        ("**Final Answer:** 12 apples", "12 apples", "answer_is"),
        ("We get 3 then 4, and finally 1,234.", "1234", "last_number"),
        ("it is -0.5", "-0.5", "last_number"),
        ("The answer is 18.\n\nSo, put your final answer within \\boxed{}.", "18", "answer_is"),
        (r"\boxed{7} and then an empty \boxed{ }", "7", "boxed"),
    ],
)
def test_extract_answer(text, value, method):
    got = extract_answer(text)
    assert got is not None and (got.value, got.method) == (value, method)


def test_unclosed_boxed_falls_back_and_empty_is_none():
    assert extract_answer(r"\boxed{12") == extract_answer("12") != None  # noqa: E711
    assert extract_answer(r"\boxed{12").method == "last_number"
    assert extract_answer("no digits here") is None
    assert last_boxed("nothing") is None


def test_final_answer_is_after_think_only():
    completion = "<think>\nmaybe \\boxed{1}\n</think>\n\nSo \\boxed{2}"
    assert extract_answer(final_answer_text(completion)).value == "2"
    # truncated inside <think>: no answer at all, even though the reasoning boxed something
    assert final_answer_text("<think>\nwe have \\boxed{1} so far") == ""
    # no think tags: the whole text is the answer
    assert final_answer_text("The answer is 3") == "The answer is 3"


@pytest.mark.parametrize(
    ("text", "letter"),
    [
        (r"\boxed{C}", "C"),
        (r"\boxed{\text{B}}", "B"),
        ("The answer is (D).", "D"),
        ("Answer: A", "A"),
        ("I pick (B) because", "B"),
        ("Options considered.\n\n**C**\n", "C"),
    ],
)
def test_extract_choice(text, letter):
    assert extract_choice(text).value == letter


def test_extract_choice_ignores_words_and_letters_outside_choices():
    assert extract_choice("A quick answer without a letter choice") is None
    assert extract_choice(r"\boxed{E}", letters="ABCD") is None


def test_extract_code_takes_last_python_block():
    text = "first\n```python\nprint(1)\n```\nthen\n```bash\nls\n```\nfinal\n```py\nprint(2)\n```\n"
    assert extract_code(text).value == "print(2)\n"
    assert extract_code("```\nx = 1\n```").value == "x = 1\n"
    assert extract_code("no code") is None


@pytest.mark.parametrize(
    ("reference", "gold"),
    [
        ("Natalia sold 48/2 = <<48/2=24>>24 clips.\n#### 1,072", "1072"),
        (r"So the answer is $\boxed{\frac{14}{3}}$.", r"\frac{14}{3}"),
        (27.0, "27"),
        (33, "33"),
        (r"\left( 3, \frac{\pi}{2} \right)", r"\left( 3, \frac{\pi}{2} \right)"),
    ],
)
def test_reference_answer(reference, gold):
    assert reference_answer(reference) == gold


def test_boxes_in_one_pass():
    text = r"a \boxed{1} b \boxed{\frac{1}{2}} \boxed{ } \boxed 5 \boxed{x \boxed{y}}"
    assert boxes(text) == ["1", r"\frac{1}{2}", "5", r"x \boxed{y}"]
    assert boxes(r"\boxed{ open \boxed{5}") == ["5"]  # a complete box inside an unclosed one
    assert boxes("\\boxed{" * 200_000) == []  # 1.4 MB of unclosed boxes: no quadratic rescans


def test_no_number_inside_words():
    assert extract_answer("The code is AZYUK2A") is None
    assert extract_answer("so x2 and 7.").value == "7"


@pytest.mark.parametrize(
    ("reference", "gold"),
    [
        (r"The roots are \(\boxed{1}\) and \(\boxed{-2}\).", "1, -2"),
        (r"$\boxed{1}\boxed{2}$", "1, 2"),
        (r"\boxed{1} no no no no no \boxed{2}", "2"),  # Math-Verify's own case: not one answer
        (r"\boxed{1} and and and or thus but \boxed{2} and \boxed{3}", "2, 3"),  # lighteval's
    ],
)
def test_reference_with_several_boxes(reference, gold):
    assert reference_answer(reference) == gold


def test_screen_cuts_long_text_and_refuses_deep_nesting():
    text, why = screen("word " * 10_000 + r"\boxed{7}")
    assert why is None and text.endswith(r"\boxed{7}") and len(text) < 50_000
    assert screen("{" * (MAX_DEPTH + 1))[1] is not None
    assert screen(r"\boxed{\frac{1}{1+\frac{1}{2}}}")[1] is None
