"""Policies: registry names, users' own checks by dotted path, overrides, order and domain scoping."""

import sys
import textwrap

import pytest

from r1distill.core.config import ConfigError
from r1distill.filter.checks.policy import load_policy
from r1distill.testing.samples import sample


def write(tmp_path, text: str):
    path = tmp_path / "policy.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_shipped_policies_load():
    for name in ("r1", "strict", "code"):
        policy = load_policy(f"filters/{name}.yaml")
        assert policy.names[:2] == ["truncated", "think_format"]


def test_first_failing_check_names_the_reason(tmp_path):
    policy = load_policy(write(tmp_path, "checks:\n  - check: truncated\n  - check: think_format\n"))
    check, verdict = policy(sample(completion="<think>\nlooping", meta={"finish_reason": "length"}))
    assert (check, verdict.reason) == ("truncated", "truncated")
    assert policy(sample()) == (None, policy(sample())[1]) and policy(sample())[1].keep


def test_users_own_check_by_dotted_path(tmp_path, monkeypatch):
    (tmp_path / "my_checks.py").write_text(
        textwrap.dedent(
            """
            from r1distill.core.records import Verdict

            def no_word(*, word):
                def check(sample):
                    return Verdict.drop("has_word") if word in sample.answer else Verdict.ok()
                return check
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    policy = load_policy(write(tmp_path, "checks:\n  - check: my_checks:no_word\n    name: banned\n    word: boxed\n"))
    assert policy(sample())[0] == "banned" and policy(sample())[1].reason == "has_word"
    assert policy(sample(answer="four"))[1].keep
    sys.modules.pop("my_checks", None)


def test_overrides_update_or_disable(tmp_path):
    path = write(tmp_path, "checks:\n  - check: long_paragraph\n    max_chars: 100\n  - check: think_format\n")
    s = sample(reasoning="word " * 100)
    assert load_policy(path)(s)[1].reason == "long_paragraph"
    assert load_policy(path, {"long_paragraph": {"max_chars": 10_000}})(s)[1].keep
    assert load_policy(path, {"long_paragraph": False}).names == ["think_format"]


def test_errors_name_the_file_and_entry(tmp_path):
    with pytest.raises(ConfigError, match=r"policy.yaml: checks\[0\]: unknown check 'nope'"):
        load_policy(write(tmp_path, "checks:\n  - check: nope\n"))
    with pytest.raises(ConfigError, match="cannot load check 'missing_mod:f'"):
        load_policy(write(tmp_path, "checks:\n  - check: missing_mod:f\n"))
    with pytest.raises(ConfigError, match="'typo' is not a check of policy"):
        load_policy(write(tmp_path, "checks:\n  - check: truncated\n"), {"typo": {}})
    with pytest.raises(ConfigError, match="filter policy not found"):
        load_policy(tmp_path / "absent.yaml")
