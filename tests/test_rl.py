"""The rl stage on CPU: TRL's GRPOTrainer on a tiny random model with the project's rewards, resume, selection, LoRA."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from r1distill.core.config import ConfigError, from_dict
from r1distill.core.records import prompt_key
from r1distill.core.stage import is_done
from r1distill.core.store import StageError, read_manifest
from r1distill.testing.models import build_tiny_model
from r1distill.train import rl, selection

REAL_REWARDS = ("accuracy_reward", "format_reward", "length_reward", "repetition_reward")


def low_id_reward(completions, completion_ids, **_):
    """A dense reward a random tiny model can learn in a few steps: the share of its tokens in the lower half of the
    vocabulary (the real rewards are all-or-nothing for a model that writes random tokens)."""
    return [sum(t < 256 for t in ids) / max(len(ids), 1) for ids in completion_ids]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def _section(tiny, **over):
    base = {
        "model": str(tiny),
        "sources": [{"name": "arith", "builtin": "arithmetic", "count": 16}],
        "rewards": {"accuracy": 1.0, "format": 0.2, "length": {"weight": 0.1, "cache_tokens": 8}, "repetition": 0.1},
        "trl": {
            "max_steps": 2,
            "num_generations": 4,
            "per_device_train_batch_size": 8,
            "max_completion_length": 16,
            "beta": 0.04,  # TRL's default 0 loads no reference model and logs no KL
            "learning_rate": 3e-2,
            "save_strategy": "no",
            "seed": 0,
        },
    }
    for key, value in over.items():
        base[key] = {**base[key], **value} if isinstance(value, dict) and key in ("trl", "rewards") else value
    return base


def _cfg(tiny, **over) -> rl.RLStageConfig:
    return from_dict(rl.Config, _section(tiny, **over), "rl")


def test_grpo_logs_every_reward_and_kl_and_a_dense_reward_rises(tmp_path, tiny):
    from transformers import AutoModelForCausalLM

    cfg = _cfg(tiny, rewards={"test_rl:low_id_reward": 1.0}, trl={"max_steps": 12})
    out = tmp_path / "rl"
    manifest = rl.run(cfg, None, out)

    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    steps = [e for e in history if "reward" in e]
    assert len(steps) == 12
    for name in (*REAL_REWARDS, "low_id_reward"):
        assert all(f"rewards/{name}/mean" in e for e in steps), name
    assert all("kl" in e for e in steps) and steps[0]["kl"] == 0.0 and steps[-1]["kl"] > 0.0
    dense = [e["rewards/low_id_reward/mean"] for e in steps]
    first, last = sum(dense[:4]) / 4, sum(dense[-4:]) / 4
    print(f"low_id_reward mean of steps 1-4 {first:.3f}, steps 9-12 {last:.3f}; kl {steps[-1]['kl']:.4f}")
    assert last > first + 0.05

    assert manifest["stage"] == "rl" and manifest["steps"] == 12 and manifest["train_prompts"] == 16
    assert manifest["rewards"] == {
        "accuracy_reward": 1.0, "format_reward": 0.2, "length_reward": 0.1, "repetition_reward": 0.1,
        "low_id_reward": 1.0,
    }  # fmt: skip
    assert manifest["rewards_first"]["low_id_reward"] == dense[0]
    assert manifest["rewards_last"]["low_id_reward"] == dense[-1]
    assert manifest["reward_last"] == steps[-1]["reward"] and manifest["kl_last"] == steps[-1]["kl"]
    assert read_manifest(out) == manifest and is_done(out, cfg, None)
    assert "12 GRPO steps on 16 prompts" in rl.summary(manifest) and "low_id_reward" in rl.summary(manifest)

    # the folder is the trained model, and training changed it
    before = AutoModelForCausalLM.from_pretrained(tiny).state_dict()
    after = AutoModelForCausalLM.from_pretrained(out).state_dict()
    assert any(not (before[k] == after[k]).all() for k in before)
    assert "GRPO" in (out / "README.md").read_text()


def test_a_killed_run_resumes_from_its_checkpoint_through_the_cli(tmp_path, tiny, capsys):
    recipe = tmp_path / "recipe.yaml"
    # no accuracy reward here: its math-verify workers take seconds to start and this test is about the checkpoints
    section = _section(tiny, trl={"max_steps": 4, "save_strategy": "steps", "save_steps": 2})
    section["rewards"] = {"format": 1.0, "length": {"weight": 1.0, "cache_tokens": 8}}
    recipe.write_text(yaml.safe_dump({"name": "t", "run_dir": str(tmp_path / "run"), "rl": section}))
    out = tmp_path / "run" / "rl"
    assert rl.main(["-c", str(recipe)]) == 0
    assert read_manifest(out)["resumed_from"] is None

    # as if killed after the checkpoint at step 2: no later checkpoint, no final model, no manifest
    shutil.rmtree(out / "checkpoints" / "checkpoint-4")
    for path in out.iterdir():
        if path.name not in ("checkpoints", ".lock"):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    assert rl.main(["-c", str(recipe)]) == 0
    manifest = read_manifest(out)
    assert manifest["resumed_from"].endswith("checkpoints/checkpoint-2") and manifest["steps"] == 4
    assert [e["step"] for e in manifest_history(out) if "reward" in e] == [1, 2, 3, 4]

    # finished: a rerun does nothing; another config may not resume these checkpoints
    assert rl.main(["-c", str(recipe)]) == 0 and read_manifest(out)["created"] == manifest["created"]
    assert rl.main(["-c", str(recipe), "rl.trl.learning_rate=0.001"]) == 2
    assert "checkpoints come from another rl config" in capsys.readouterr().err


def manifest_history(out):
    return json.loads((out / "trainer_state.json").read_text())["log_history"]


def test_a_saved_selection_restricts_the_training_prompts(tmp_path, tiny):
    cfg = _cfg(tiny, selection={"k": 4, "low": 0.2, "high": 0.8}, trl={"max_steps": 1})
    model = str(tiny)
    key = selection.selection_hash(
        cfg.selection, rl.generate_config(cfg, model), model, {"lenient_think": False, "math_timeout_s": 5.0}
    )
    prompts = rl.load_prompts(cfg)
    verdicts = [(prompt_key(p.source, p.row), k < i % 5) for i, p in enumerate(prompts) for k in range(4)]
    rows = selection.select(selection.pass_rates(verdicts), 0.2, 0.8)
    out = tmp_path / "rl"
    out.mkdir()
    (out / selection.FILE).write_text("".join(json.dumps({**r, "selection_hash": key}) + "\n" for r in rows))

    manifest = rl.run(cfg, None, out)
    kept = sum(r["kept"] for r in rows)
    assert 0 < kept < len(prompts)
    assert manifest["prompts"] == 16 and manifest["train_prompts"] == kept
    assert manifest["selection"]["kept"] == kept and manifest["selection"]["measured"] == 16
    assert not (out / selection.SAMPLES).exists()  # reused: nothing was sampled
    assert f"selected {kept} of 16 by pass rate" in rl.summary(manifest)


def test_lora_saves_the_merged_model_and_the_adapter(tmp_path, tiny):
    from transformers import AutoModelForCausalLM

    cfg = _cfg(tiny, peft={"r": 4, "lora_alpha": 8, "target_modules": "all-linear"}, trl={"max_steps": 1})
    cfg.rewards = {"length": {"weight": 1.0, "cache_tokens": 8}}
    out = tmp_path / "rl"
    rl.run(cfg, None, out)
    assert (out / "adapter" / "adapter_config.json").exists() and not (out / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(out)
    assert merged.config.hidden_size == 32


def test_user_errors_name_the_field(tmp_path, tiny):
    sft = tmp_path / "sft"
    sft.mkdir()
    with pytest.raises(StageError, match=r"sft: no manifest.json; the sft stage did not finish there"):
        rl.run(from_dict(rl.Config, {**_section(tiny), "model": None}, "rl"), sft, tmp_path / "rl")
    with pytest.raises(ConfigError, match="rl.trl.reward_weights: give the weights in rl.rewards"):
        rl.run(_cfg(tiny, trl={"reward_weights": [1.0]}), None, tmp_path / "rl")
    # the offline check (r1distill run --dry-run) sees bad rewards without a model, data or grader
    rl.validate(_cfg(tiny))
    with pytest.raises(ConfigError, match="rl.rewards.length: cache_tokens must be in 1..max_tokens \\(16\\), got 20"):
        rl.validate(_cfg(tiny, rewards={"length": {"weight": 1, "cache_tokens": 20}}))
    with pytest.raises(ConfigError, match="rl.rewards.acuracy: unknown reward"):
        rl.validate(_cfg(tiny, rewards={"acuracy": 1}))
    with pytest.raises(ConfigError, match="rl.trl: unknown GRPOConfig argument 'max_step'"):
        rl.run(_cfg(tiny, trl={"max_step": 1}), None, tmp_path / "rl")
    with pytest.raises(StageError, match="rl.sources: no prompt source given"):
        rl.run(_cfg(tiny, sources=[]), None, tmp_path / "rl")
    no_answers = [{"name": "a", "builtin": "arithmetic", "count": 2, "answer_field": None}]
    with pytest.raises(StageError, match=r"rl.sources\[0\].answer_field: training needs a reference answer"):
        rl.run(_cfg(tiny, sources=no_answers), None, tmp_path / "rl")
    with pytest.raises(StageError, match="rl: --select-only needs an rl.selection section"):
        rl.run(_cfg(tiny, select_only=True), None, tmp_path / "rl")
