from dataclasses import dataclass, field

import pytest

from r1distill.core.config import ConfigError, config_hash, load_recipe
from r1distill.generate.stage import GenerateConfig


def write(tmp_path, text, name="r.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_unknown_stage_key_names_it_and_valid_keys(tmp_path):
    r = load_recipe(write(tmp_path, "generate:\n  modle: x\n"))
    with pytest.raises(ConfigError) as e:
        r.section("generate", GenerateConfig)
    assert "unknown key 'modle'" in str(e.value) and "model" in str(e.value) and "r.yaml" in str(e.value)


def test_unknown_section_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match="unknown section 'generat'"):
        load_recipe(write(tmp_path, "generat: {}\n"))


def test_nested_source_key_error_has_path(tmp_path):
    r = load_recipe(write(tmp_path, "generate:\n  sources:\n    - {name: a, builtin: arithmetic, problem: x}\n"))
    with pytest.raises(ConfigError, match=r"generate.sources\[0\]: unknown key 'problem'"):
        r.section("generate", GenerateConfig)


def test_wrong_type_is_named(tmp_path):
    r = load_recipe(write(tmp_path, "generate:\n  n: four\n"))
    with pytest.raises(ConfigError, match=r"generate.n: expected int, got 'four'"):
        r.section("generate", GenerateConfig)


def test_overrides_and_passthrough_sections(tmp_path):
    r = load_recipe(
        write(tmp_path, "generate:\n  sampling: {temperature: 0.6}\n"),
        ["generate.n=8", "generate.sampling.max_tokens=64", "generate.vllm.some_future_kwarg=true"],
    )
    cfg = r.section("generate", GenerateConfig)
    assert cfg.n == 8
    assert cfg.sampling == {"temperature": 0.6, "max_tokens": 64}
    assert cfg.vllm == {"some_future_kwarg": True}  # upstream settings pass through untouched


def test_bad_override_syntax(tmp_path):
    with pytest.raises(ConfigError, match="expected dotted.key=value"):
        load_recipe(write(tmp_path, "{}\n"), ["generate.n"])


def test_extends_merges_base(tmp_path):
    write(tmp_path, "generate:\n  n: 4\n  sampling: {temperature: 0.6, max_tokens: 100}\n", "base.yaml")
    r = load_recipe(write(tmp_path, "extends: base.yaml\ngenerate:\n  sampling: {max_tokens: 7}\n"))
    cfg = r.section("generate", GenerateConfig)
    assert cfg.n == 4 and cfg.sampling == {"temperature": 0.6, "max_tokens": 7}


def test_invalid_yaml_names_line(tmp_path):
    with pytest.raises(ConfigError, match=r"r.yaml:3:\d+: invalid YAML"):
        load_recipe(write(tmp_path, "generate:\n  n: 1\n   bad: [\nx: 2\n"))


def test_hash_ignores_declared_runtime_fields():
    @dataclass
    class C:
        HASH_EXCLUDE = ("workers",)
        a: int = 1
        workers: int = 2
        d: dict = field(default_factory=dict)

    assert config_hash(C(workers=2)) == config_hash(C(workers=16))
    assert config_hash(C(a=1)) != config_hash(C(a=2))
