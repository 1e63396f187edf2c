"""The filter stage end to end on a small folder: kept + rejected add up, manifest funnel, report, CLI, workers."""

import json
import random
import textwrap

import pytest

from r1distill.core.store import ShardWriter, iter_records, read_manifest, write_manifest
from r1distill.filter import stage as filter_stage
from r1distill.testing.samples import sample

BENCH_PROBLEM = "Let ABCD be a rhombus whose diagonals intersect at the origin and whose vertices lie on a hyperbola."


def reasoning(seed: int) -> str:
    rng = random.Random(seed)
    words = "so we check the value then compute next term and sum factor prime square root".split()
    paras = [" ".join(rng.choice(words) for _ in range(40)) + "." for _ in range(6)]
    return "Okay, let me think. " + "\n\n".join(paras)


def build_input(path) -> dict[str, int]:
    """A verify-like folder; returns the expected drop count per reason."""
    good = [sample(reasoning(i), f"The answer is {i}.", problem=f"Problem number {i}: add {i} and {i}.",
                   id=f"src/{i}/0", meta={"verify": {"correct": True}}) for i in range(12)]  # fmt: skip
    bad = [
        sample(reasoning(100), "x", problem="Other problem 1", id="src/100/0", meta={"finish_reason": "length"}),
        sample(
            reasoning(101) + "\n\n我们需要重新计算这个和。",
            "The answer is 3.",
            problem="Compute one plus two.",
            id="src/101/0",
            meta={"verify": {"correct": True}},
        ),  # fmt: skip
        sample(
            reasoning(102), "7", problem="Compute three plus five.", id="src/102/0", meta={"verify": {"correct": False}}
        ),  # fmt: skip
        sample(reasoning(103), "2", problem=BENCH_PROBLEM, id="src/103/0", meta={"verify": {"correct": True}}),
        # Same completion as good[0] for another sample of the same prompt row: a duplicate completion.
        sample(
            reasoning(0),
            "The answer is 0.",
            problem="Problem number 0: add 0 and 0.",
            id="src/0/1",
            meta={"verify": {"correct": True}},
        ),  # fmt: skip
        # The problem of row 1 again under another row: all its samples go as a duplicate problem.
        sample(
            reasoning(104),
            "The answer is 1.",
            problem="Problem number 1:  add 1 and 1!",
            id="src/104/0",
            meta={"verify": {"correct": True}},
        ),  # fmt: skip
    ]
    with ShardWriter(path, rows_per_shard=5) as w:
        for s in good + bad:
            w.write(s.to_json())
    write_manifest(path, {"stage": "verify"})
    return {"truncated": 1, "language_mix": 1, "incorrect": 1, "contaminated": 1, "duplicate_completion": 1,
            "duplicate_problem": 1}  # fmt: skip


@pytest.fixture
def cfg(tmp_path):
    bench = tmp_path / "bench.jsonl"
    bench.write_text(json.dumps({"problem": BENCH_PROBLEM}) + "\n")
    return filter_stage.Config(
        policy="filters/r1.yaml",
        decontam=filter_stage.DecontamConfig(benchmarks=[filter_stage.BenchmarkFile(str(bench))]),
    )


def test_filter_end_to_end(tmp_path, cfg):
    inp, out = tmp_path / "verify", tmp_path / "filter"
    expected = build_input(inp)
    manifest = filter_stage.run(cfg, inp, out)
    kept = list(iter_records(out))
    rejected = {d.name: list(iter_records(d)) for d in (out / "rejected").iterdir()}
    assert {r: len(v) for r, v in rejected.items()} == expected
    assert len(kept) + sum(map(len, rejected.values())) == 18 == manifest["counts"]["in"]
    assert manifest["counts"] == {"in": 18, "kept": 12, "rejected": 6}
    assert manifest["reasons"] == expected
    funnel = manifest["funnel"]
    assert [f["step"] for f in funnel][:2] == ["in", "contaminated"] and funnel[-1] == {
        "step": "kept", "count": 12, "remaining": 12}  # fmt: skip
    assert [f["step"] for f in funnel[-3:-1]] == ["duplicate_problem", "duplicate_completion"]
    assert all(
        f["remaining"] == 18 - sum(g.get("dropped", 0) for g in funnel[: i + 1]) for i, f in enumerate(funnel[:-1])
    )
    meta = rejected["language_mix"][0]["meta"]["filter"]
    assert meta["check"] == "language_mix" and meta["reason"] == "language_mix"
    # Every drop carries its evidence: the offending text, where it is, and the threshold.
    ev = meta["evidence"]
    assert (
        ev["excerpt"] == "我们需要重新计算这个和。"
        and ev["part"] == "reasoning"
        and ev["threshold"]["scripts"] == ["latin"]
    )
    assert rejected["language_mix"][0]["completion"].split("<think>\n")[1][ev["offset"] :].startswith(ev["excerpt"])
    for reason, records in rejected.items():
        ev = records[0]["meta"]["filter"]["evidence"]
        assert ev["excerpt"] and "threshold" in ev and isinstance(ev["offset"], int), reason
    assert rejected["contaminated"][0]["meta"]["filter"]["evidence"]["benchmark_excerpt"] == BENCH_PROBLEM
    assert rejected["duplicate_completion"][0]["meta"]["filter"]["evidence"]["duplicate_of"] == "src/0/0"
    assert [e["id"] for e in manifest["evidence"]["language_mix"]] == ["src/101/0"]
    assert rejected["duplicate_problem"][0]["meta"]["filter"]["details"]["duplicate_of"] == "src/1"
    assert manifest["examples"]["truncated"] == ["src/100/0"]
    assert manifest["domains"]["math"]["in"] == 18 and manifest["domains"]["math"]["kept"] == 12
    assert manifest["lengths"]["completion_chars"]["kept"]["n"] == 12
    report = (out / "report.md").read_text()
    assert "| duplicate_problem | dedup_problem | 1 | " in report and "| kept |  |  | 12 |" in report
    assert "### language_mix (1 of 1)" in report and "<mark>我们需要重新计算这个和。</mark>" in report
    assert (out / "funnel.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (out / "lengths.png").exists()
    assert read_manifest(out / "rejected" / "truncated")["rows"] == 1
    assert not (out / ".staging").exists()


def test_run_report_page_shows_the_evidence(tmp_path, cfg):
    """The run's HTML page (filter section): the first drops per reason with the excerpt in <mark>."""
    from r1distill.report.page import render

    build_input(tmp_path / "verify")
    filter_stage.run(cfg, tmp_path / "verify", tmp_path / "run" / "filter")  # a run folder holding only the filter
    (tmp_path / "html").mkdir()
    html = render(tmp_path / "run", tmp_path / "html").read_text(encoding="utf-8")
    assert "<mark>我们需要重新计算这个和。</mark>" in html and "<code>src/101/0</code>" in html
    assert html.count("<mark>") == 6  # one example for each of the six reasons


def test_two_workers_give_the_same_output(tmp_path, cfg):
    inp = tmp_path / "verify"
    build_input(inp)
    one = filter_stage.run(cfg, inp, tmp_path / "a")
    cfg.workers, cfg.batch_size = 2, 3
    two = filter_stage.run(cfg, inp, tmp_path / "b")
    assert one["funnel"] == two["funnel"]
    assert [r["id"] for r in iter_records(tmp_path / "a")] == [r["id"] for r in iter_records(tmp_path / "b")]


def test_skip_when_done_and_rerun_when_the_policy_changes(tmp_path, cfg):
    inp, out = tmp_path / "verify", tmp_path / "filter"
    build_input(inp)
    first = filter_stage.run(cfg, inp, out)
    assert filter_stage.run(cfg, inp, out)["created"] == first["created"]
    policy = tmp_path / "policy.yaml"
    policy.write_text("checks:\n  - check: truncated\n")
    cfg.policy = str(policy)
    assert filter_stage.run(cfg, inp, out)["counts"]["kept"] == 14  # no language/correct checks now
    policy.write_text("checks:\n  - check: think_format\n")
    assert filter_stage.run(cfg, inp, out)["reasons"].get("truncated") is None  # same config, new policy: rerun


def test_cli_with_recipe_and_override(tmp_path, monkeypatch):
    inp, out = tmp_path / "gen", tmp_path / "out"
    build_input(inp)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(textwrap.dedent(f"""
        filter:
          policy: {filter_stage.__file__.rsplit('/r1distill/', 1)[0]}/filters/r1.yaml
          overrides: {{correct: false}}
          dedup: {{near: false}}
    """))  # fmt: skip
    assert filter_stage.main(["-c", str(recipe), "-i", str(inp), "-o", str(out), "filter.workers=2"]) == 0
    assert "incorrect" not in read_manifest(out)["reasons"]
    assert filter_stage.main(["-c", str(recipe), "-i", str(tmp_path / "missing"), "-o", str(out)]) == 2


def test_samples_without_a_problem_are_not_duplicates_of_each_other(tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    with ShardWriter(inp) as w:
        for i in range(3):
            s = sample(reasoning(i), f"Answer {i}.", problem="", id=f"chat/{i}/0")
            s.messages = []
            w.write(s.to_json())
    write_manifest(inp, {"stage": "generate"})
    manifest = filter_stage.run(filter_stage.Config(overrides={"correct": False}), inp, out)
    assert manifest["counts"]["kept"] == 3, manifest["reasons"]


def test_student_tokenizer_reaches_the_length_check(tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    from transformers import PreTrainedTokenizerFast

    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(tmp_path / "tok")
    inp, out = tmp_path / "in", tmp_path / "out"
    with ShardWriter(inp) as w:  # 400 one-letter words: 400 tokens for this tokenizer, ~200 by chars/4
        w.write(sample("a " * 400, "b", meta={"verify": {"correct": True}}).to_json())
    write_manifest(inp, {"stage": "verify"})
    # "a a a ..." is also a loop: the repetition check is off here so the length check is what decides.
    overrides = {"length": {"max_tokens": 300}, "repetition": False}
    cfg = filter_stage.Config(overrides=overrides, tokenizer=str(tmp_path / "tok"))
    manifest = filter_stage.run(cfg, inp, out)
    assert manifest["reasons"] == {"too_long": 1}
    details = next(iter_records(out / "rejected" / "too_long"))["meta"]["filter"]["details"]
    assert details["method"] == "tokenizer" and details["tokens"] >= 400
    cfg.tokenizer = None
    assert filter_stage.run(cfg, inp, tmp_path / "out2")["counts"]["kept"] == 1  # the estimate says ~200


def test_near_duplicates_in_the_stage(tmp_path):
    long_problem = (
        "A bag holds seven red marbles, five blue marbles and three green marbles. Two marbles are drawn at random "
        "without replacement. What is the probability that both marbles have the same colour as each other?"
    )
    ok = {"verify": {"correct": True}}
    rows = [
        sample(reasoning(1), "Answer A.", problem=long_problem, id="s/1/0", meta=ok),
        sample(reasoning(2), "Answer B.", problem=long_problem.replace("seven", "eight"), id="s/2/0", meta=ok),
        sample(
            reasoning(1).replace("Okay", "Alright"), "Answer A.", problem="A different question?", id="s/3/0", meta=ok
        ),
        sample(reasoning(4), "Answer D.", problem="Yet another question entirely?", id="s/4/0", meta=ok),
    ]
    inp, out = tmp_path / "in", tmp_path / "out"
    with ShardWriter(inp) as w:
        for s in rows:
            w.write(s.to_json())
    write_manifest(inp, {"stage": "verify"})
    manifest = filter_stage.run(filter_stage.Config(), inp, out)
    assert manifest["reasons"] == {"near_duplicate_problem": 1, "near_duplicate_completion": 1}
    assert [r["id"] for r in iter_records(out)] == ["s/1/0", "s/4/0"]
    details = next(iter_records(out / "rejected" / "near_duplicate_completion"))["meta"]["filter"]["details"]
    assert details["duplicate_of"] == "s/1/0" and details["jaccard"] >= 0.8
    exact_only = filter_stage.Config(dedup=filter_stage.DedupConfig(near=False))
    assert filter_stage.run(exact_only, inp, tmp_path / "exact")["counts"]["kept"] == 4


def test_explain_prints_every_check(tmp_path, cfg, capsys):
    """`filter --explain ID`: the verdict of every check (not only the first drop) with the evidence, and the
    verdict the run recorded; an unknown id is one line and exit 2."""
    inp, out = tmp_path / "verify", tmp_path / "filter"
    build_input(inp)
    filter_stage.run(cfg, inp, out)
    recipe = tmp_path / "r.yaml"
    bench = cfg.decontam.benchmarks[0].path
    recipe.write_text(f"run_dir: {tmp_path}\nfilter:\n  decontam:\n    benchmarks: [{{path: {bench}}}]\n")
    assert filter_stage.main(["--explain", "src/101/0", "-c", str(recipe), "-i", str(inp), "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "recorded by the last run: language_mix -> language_mix" in text
    assert "language_mix     DROP language_mix" in text and ">>>我们需要重新计算这个和。<<<" in text
    assert "repetition       keep" in text and "correct          keep" in text and "decontam         keep" in text
    args = ["--explain", "src/103/0", "-c", str(recipe), "-i", str(inp), "-o", str(out), "--json"]
    assert filter_stage.main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["decontam"]["reason"] == "contaminated" and result["recorded"]["reason"] == "contaminated"
    assert [c["check"] for c in result["checks"]][:3] == ["truncated", "think_format", "correct"]
    assert filter_stage.main(["--explain", "nope/1/0", "-c", str(recipe), "-i", str(inp), "-o", str(out)]) == 2
    assert "sample 'nope/1/0' not found" in capsys.readouterr().err


@pytest.mark.parametrize(
    "bad, expected",
    [
        (b'{"id": "src/9/0", "domain": "math"', "malformed JSON record"),  # torn: the writer was cut off
        (b"not json at all\n", "malformed JSON record"),
        (b'{"id": "src/9/0", "domain": "math"}\n', "not a sample record"),  # fields missing
        (b'{"id": "src/9/0", "problem": "caf\xe9"}\n', "not UTF-8"),
    ],
)
@pytest.mark.parametrize("workers", [1, 2])
def test_bad_record_names_its_file_and_line(tmp_path, cfg, bad, expected, workers):
    """A bad line in the input (with its manifest agreeing, so the upstream check lets it through) is one error
    naming the shard and the line, never a traceback from a worker process; nothing finished is left behind."""
    inp = tmp_path / "in"
    with ShardWriter(inp) as w:
        for i in range(3):
            w.write(sample(reasoning(i), f"The answer is {i}.", problem=f"Problem {i}", id=f"src/{i}/0").to_json())
    shard = inp / "part-00000.jsonl"
    shard.write_bytes(shard.read_bytes() + bad)
    write_manifest(inp, {"stage": "verify"})
    cfg.workers = workers
    with pytest.raises(filter_stage.StageError) as e:
        filter_stage.run(cfg, inp, tmp_path / "out")
    assert f"{shard}:4" in str(e.value) and expected in str(e.value), str(e.value)
    assert read_manifest(tmp_path / "out") is None
