"""Bad input through the real command line: one line naming the culprit, exit 2, no engine start, nothing written
that looks finished."""

import subprocess
import sys

import pytest

RECIPE = """\
generate:
  model: {model}
  sources:
    - {{name: s, path: {path}}}
  n: 1
  sampling: {{max_tokens: 8}}
  vllm: {{max_model_len: 512, enforce_eager: true}}
"""


def run_generate(tmp_path, prompts_text, model="bundled:smollm2", extra=()):
    prompts = tmp_path / "prompts.jsonl"
    if prompts_text is not None:
        prompts.write_text(prompts_text)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE.format(model=model, path=prompts))
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "r1distill.generate", "--config", str(recipe), "--output", str(out), *extra],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc, out


GOOD = '{"problem": "1+1?", "answer": "2"}\n'


@pytest.mark.parametrize(
    "prompts, model, extra, expected",
    [
        (None, "bundled:smollm2", (), "prompts.jsonl does not exist"),
        (GOOD + "{oops\n", "bundled:smollm2", (), "prompts.jsonl:2: malformed JSON"),
        ('{"text": "1+1?", "answer": "2"}\n', "bundled:smollm2", (), "prompts.jsonl:1: missing field 'problem'"),
        ('{"problem": "", "answer": "2"}\n', "bundled:smollm2", (), "prompts.jsonl:1: field 'problem' is empty"),
        (GOOD, "/nonexistent/model", (), "model '/nonexistent/model': no such folder"),
        (GOOD, "bundled:smollm2", ("generate.temprature=0.5",), "unknown key 'temprature'"),
        (GOOD, "bundled:smollm2", ("generate.sampling.n=4",), "generate.sampling.n: set generate.n instead"),
    ],
)
def test_bad_input_fails_fast_with_one_line(tmp_path, prompts, model, extra, expected):
    proc, out = run_generate(tmp_path, prompts, model, extra)
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("r1distill generate: error:") and expected in last, proc.stderr[-2000:]
    assert "EngineCore" not in proc.stderr  # rejected before any engine started
    assert not (out / "manifest.json").exists()


def test_unknown_sampling_key_is_named_before_the_engine(tmp_path):
    proc, out = run_generate(tmp_path, GOOD, extra=("generate.sampling.temprature=0.5",))
    assert proc.returncode == 2
    assert "generate.sampling" in proc.stderr and "temprature" in proc.stderr
    assert "EngineCore" not in proc.stderr
