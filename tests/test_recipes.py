"""Every recipe in pipelines/ and every filter policy in filters/ passes `r1distill run RECIPE --dry-run`: each
stage's config validates offline (no model loaded, no Hub: these machines have neither), the plan names every stage,
its models and data, and the estimate is the recipe's own arithmetic."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from r1distill.core.config import load_recipe
from r1distill.pipeline import estimate, run

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted((REPO / "pipelines").glob("*.yaml"))
POLICIES = sorted((REPO / "filters").glob("*.yaml"))
R1_RECIPES = [p for p in RECIPES if p.name.startswith("r1-distill-")]
TEMPLATES = REPO / "r1distill" / "train" / "templates"


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch):
    monkeypatch.chdir(REPO)  # recipes name policies relative to the repository, as the README runs them


def dry_run(capsys, *argv: str) -> tuple[int, str, str]:
    code = run.main([*argv, "--dry-run"])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_every_recipe_dry_runs_and_plans_every_stage(recipe, tmp_path, capsys):
    rel = recipe.relative_to(REPO)
    code, out, err = dry_run(capsys, str(rel), f"run_dir={tmp_path / 'run'}")
    assert code == 0, err
    stages = load_recipe(rel).stages()
    for stage in stages:
        assert re.search(rf"^{stage}\s+to run\s", out, re.M), stage
    assert "\nestimate\n" in out and re.search(r"^total\s+\S+", out, re.M)
    assert not (tmp_path / "run").exists()  # a dry run writes nothing


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_every_recipe_opens_with_the_command_that_runs_it(recipe):
    first = recipe.read_text().splitlines()[0]
    assert first.startswith("# ") and f"r1distill run pipelines/{recipe.name}" in first, first


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.name)
def test_every_filter_policy_dry_runs(policy, tmp_path, capsys):
    rel = policy.relative_to(REPO)
    code, out, err = dry_run(capsys, "pipelines/quickstart.yaml", f"run_dir={tmp_path}", f"filter.policy={rel}")
    assert code == 0, err
    assert f"policy     {rel}" in out


def test_r1_recipes_share_one_base_and_name_templates(capsys):
    assert {p.stem for p in R1_RECIPES} >= {"r1-distill-qwen-1.5b", "r1-distill-qwen-7b", "r1-distill-llama-8b"}
    for path in R1_RECIPES:
        own = yaml.safe_load(path.read_text())
        merged = load_recipe(path).data
        assert own["extends"] == "base/r1-distill.yaml"
        assert _leaves(own) < 20 < _leaves(merged), (path.name, _leaves(own), _leaves(merged))
        template = merged["sft"]["chat_template"]
        assert (TEMPLATES / f"{template}.jinja").exists() and "{%" not in path.read_text()
        assert merged["sft"]["trl"]["learning_rate"] == 4.0e-5 and merged["sft"]["deepspeed"] == "zero3"
        assert merged["generate"]["sampling"] == {"temperature": 0.6, "top_p": 0.95, "max_tokens": 32768}
        assert merged["filter"]["policy"] == "filters/r1.yaml" and "rl" not in merged
    assert "{%" not in (REPO / "pipelines" / "base" / "r1-distill.yaml").read_text()


def _leaves(node) -> int:
    return sum(_leaves(v) for v in node.values()) if isinstance(node, dict) else 1


def test_dry_run_is_offline_and_says_what_is_not_cached(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    code, out, err = dry_run(capsys, "pipelines/r1-distill-qwen-7b.yaml", f"run_dir={tmp_path / 'run'}")
    assert code == 0, err
    assert "Qwen/Qwen2.5-Math-7B (Hub id, not in local cache" in out
    assert "deepseek-ai/DeepSeek-R1 (served by 1 OpenAI-compatible endpoint" in out


def test_teacher_token_estimate_is_the_recipes_arithmetic(tmp_path):
    recipe = load_recipe(REPO / "pipelines" / "r1-distill-qwen-7b.yaml", [f"run_dir={tmp_path}"])
    gen = recipe.data["generate"]
    prompts = sum(src["limit"] for src in gen["sources"])
    lines, used = estimate.estimate(run.plan(recipe))
    teacher = next(ln for ln in lines if ln.stage == "generate")
    expected = prompts * gen["n"] * gen["sampling"]["max_tokens"] * used["completion_fill"]
    assert teacher.tokens == pytest.approx(expected)
    assert teacher.gpu_hours == pytest.approx(expected / estimate.decode_rate(gen["model"]) / 3600)
    halved, _ = estimate.estimate(run.plan(recipe), {"completion_fill": used["completion_fill"] / 2})
    assert halved[0].tokens == pytest.approx(expected / 2)
    sft = next(ln for ln in lines if ln.stage == "sft")
    assert sft.gpu_hours and sft.tokens and "5 epochs" in sft.basis


def test_a_model_evaluated_under_two_labels_is_costed_once(tmp_path):
    # evaluate samples a model once however many labels name it (same_model_as); the estimate agrees
    rd = f"run_dir={tmp_path}"
    one = load_recipe(REPO / "pipelines" / "quickstart.yaml", [rd, "evaluate.baselines={start: bundled:smollm2}"])
    two = load_recipe(
        REPO / "pipelines" / "quickstart.yaml",
        [rd, "evaluate.baselines={start: bundled:smollm2, teacher: bundled:smollm2}"],
    )
    [ev1], [ev2] = ([ln for ln in estimate.estimate(run.plan(r))[0] if ln.stage == "evaluate"] for r in (one, two))
    assert ev2.tokens == ev1.tokens and "x 2 models" in ev2.basis  # the trained student and its start


def test_a_hub_source_without_limit_is_not_guessed(tmp_path):
    recipe = load_recipe(
        REPO / "pipelines" / "r1-distill-qwen-1.5b.yaml",
        [f"run_dir={tmp_path}", "generate.sources=[{name: m, hub: open-r1/OpenR1-Math-220k, id_field: uuid}]"],
    )
    lines, _ = estimate.estimate(run.plan(recipe))
    assert lines[0].tokens is None and "set generate.sources[i].limit" in lines[0].basis


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("sft.trl.learning_rat=1e-5", "sft.trl: unknown SFTConfig argument 'learning_rat'"),
        ("sft.chat_template=qwen3_think_nope", "sft.chat_template: unknown chat template 'qwen3_think_nope'"),
        ("sft.deepspeed=zero9", "'zero9' is neither a shipped config"),
        ("evaluate.benchmarks=[aime42]", "unknown benchmark 'aime42'"),
        ("generate.sampling.temprature=0.6", "generate.sampling"),
        ("filter.overrides={long_paragraph: {max_char: 10}}", "check 'long_paragraph'"),
    ],
)
def test_dry_run_refuses_bad_stage_settings_with_one_line(override, message, tmp_path, capsys):
    code, out, err = dry_run(capsys, "pipelines/r1-distill-qwen-1.5b.yaml", f"run_dir={tmp_path}", override)
    assert code == 2 and message in err, err
    assert "estimate" not in out


def test_unknown_assumption_is_refused(tmp_path, capsys):
    code = run.main(["pipelines/quickstart.yaml", f"run_dir={tmp_path}", "--dry-run", "--assume", "mfu2=0.5"])
    assert code == 2 and "--assume 'mfu2=0.5': unknown key" in capsys.readouterr().err
