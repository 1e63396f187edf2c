"""`r1distill run`: the stage registry drives the order, `--force STAGE` reruns that stage and what reads it, and
the dry-run runs every stage's own validation."""

from pathlib import Path

import pytest

from r1distill.core.store import ShardWriter, read_manifest, write_manifest
from r1distill.pipeline import run
from r1distill.testing.samples import sample

REPO = Path(__file__).resolve().parents[1]


def fake_generate(folder: Path, n: int = 6) -> None:
    """A finished generate folder (what the teacher would have written), so the later stages have real input."""
    with ShardWriter(folder) as w:
        for i in range(n):
            s = sample(
                f"Let me add {i} and {i}. Two numbers, same value, so the sum is {2 * i}.",
                f"The answer is \\boxed{{{2 * i}}}.",
                problem=f"What is {i} + {i}?",
                id=f"arith/{i}/0",
            )
            s.reference = str(2 * i)
            w.write(s.to_json())
    write_manifest(folder, {"stage": "generate", "counts": {"prompts": n, "n": 1, "samples": n}})


@pytest.fixture
def recipe(tmp_path, tiny_tokenizer) -> Path:
    fake_generate(tmp_path / "run" / "generate")
    path = tmp_path / "r.yaml"
    path.write_text(
        f"run_dir: {tmp_path / 'run'}\n"
        "verify: {workers: 1}\n"
        "filter: {policy: " + str(REPO / "filters/r1.yaml") + ", workers: 1, overrides: {length: false}}\n"
        f"build: {{tokenizer: {tiny_tokenizer}, validation_fraction: 0}}\n"
    )
    return path


@pytest.fixture(scope="module")
def tiny_tokenizer(tmp_path_factory) -> Path:
    from r1distill.testing.models import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tok") / "qwen2", "qwen2")


def created(run_dir: Path) -> dict[str, str]:
    return {s: read_manifest(run_dir / s)["created"] + read_manifest(run_dir / s)["config_hash"]
            for s in ("verify", "filter", "build")}  # fmt: skip


def test_force_reruns_the_stage_and_what_reads_it(recipe, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    assert run.main([str(recipe)]) == 0
    first = created(run_dir)
    assert read_manifest(run_dir / "build")["counts"]["train"] == 6
    monkeypatch.setattr("time.strftime", lambda *a: "2099-01-01T00:00:00Z")  # a rerun's manifest must differ
    assert run.main([str(recipe)]) == 0
    assert created(run_dir) == first  # finished with the same config and input: nothing reran
    assert run.main([str(recipe), "--force", "filter"]) == 0
    again = created(run_dir)
    assert again["verify"] == first["verify"]  # upstream of filter: untouched
    assert again["filter"] != first["filter"] and again["build"] != first["build"]  # filter, and build that reads it


def test_force_names_a_stage_of_the_recipe(recipe, capsys):
    assert run.main([str(recipe), "--force", "filtr"]) == 2
    assert "--force filtr: not a stage of" in capsys.readouterr().err


@pytest.mark.parametrize(
    "override, expected",
    [
        ("generate.engine=nope", "generate.engine: unknown engine 'nope'"),
        ("generate.n=0", "generate.n: must be at least 1"),
        ("verify.policy.keep=bogus", "verify.policy.keep: 'bogus' is not one of"),
        ("verify.code.isolation=none", "verify.code.isolation"),
        ("filter.overrides={nosuchcheck: {}}", "nosuchcheck"),
        ("build.validation_fraction=2", "build.validation_fraction: must be in [0, 1)"),
        ("sft.trl.no_such_arg=1", "no_such_arg"),
        ("sft.chat_template=nope", "sft.chat_template"),
        ("rl.trl.no_such_arg=1", "no_such_arg"),
        ("evaluate.benchmarks=[nope]", "nope"),
        ("evaluate.n=0", "evaluate.n: must be at least 1"),
    ],
)
def test_dry_run_runs_every_stage_validation(override, expected, tmp_path, capsys):
    """Each stage's own offline checks run in the dry-run (verify's used to be skipped): one line, exit 2."""
    code = run.main([str(REPO / "pipelines/quickstart.yaml"), "--dry-run", f"run_dir={tmp_path}", override])
    err = capsys.readouterr().err
    assert code == 2 and expected in err, err
    assert not (tmp_path / "generate").exists()
