"""Bad input, stage by stage, through the real command line (issue 18): every case exits 2 with one line naming the
file/line/field/key, no traceback, and leaves no finished manifest behind.

The upstream folders are made once by the real stages on a tiny run; the teacher is a stand-in `Engine` (the one
boundary faked: these cases are about input handling, and every one fails before an engine would start). Each case
copies what it breaks. Cases that need a filesystem only root can make (a read-only or a full tmpfs) are skipped,
with the reason, where mounting is not allowed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from r1distill import cli
from r1distill.core.models import BUNDLED
from r1distill.core.store import StageError, read_manifest, write_manifest
from r1distill.generate.engines import Completion, Engine, Request
from r1distill.generate.problems import arithmetic
from r1distill.testing.models import build_tiny_model

REPO = Path(__file__).resolve().parents[1]


class Answering(Engine):
    """A stand-in teacher that writes a short, distinct, correct chain for each request."""

    name = "stand-in"

    def __init__(self, answers: dict[str, str]):
        self.answers = answers

    def generate(self, requests: Iterable[Request]) -> Iterator[Completion]:
        for req in requests:
            problem = req.messages[-1]["content"]
            words = " ".join(f"step{i} {req.id.replace('/', '-')}" for i in range(3))
            text = f"Working it out: {words}.\n</think>\n\nThe answer is \\boxed{{{self.answers[problem]}}}."
            yield Completion(req.id, text, "stop", 20, 40)


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> dict[str, Path]:
    """Finished generate, verify, filter and build folders, a tiny student and the recipe that made them."""
    from r1distill.build import stage as build
    from r1distill.filter import stage as filter_stage
    from r1distill.generate import stage as generate
    from r1distill.generate.prompts import SourceConfig
    from r1distill.verify import stage as verify

    root = tmp_path_factory.mktemp("chain")
    rows = arithmetic(6, seed=1)
    prompts = root / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = {
        "run_dir": str(root / "run"),
        "generate": {"sources": [{"name": "arith", "path": str(prompts)}], "n": 2, "sampling": {"max_tokens": 64}},
        "verify": {"workers": 1},
        "filter": {"policy": str(REPO / "filters" / "r1.yaml")},
        "build": {"tokenizer": BUNDLED, "validation_fraction": 0.0},
        "sft": {"model": str(build_tiny_model(root / "student")), "trl": {"max_length": 256, "max_steps": 1}},
    }
    (root / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    gcfg = generate.GenerateConfig(
        sources=[SourceConfig(name="arith", path=str(prompts))], n=2, sampling={"max_tokens": 64}
    )
    generate.run(gcfg, None, root / "generate", engine=Answering({r["problem"]: r["answer"] for r in rows}))
    verify.run(verify.VerifyConfig(workers=1), root / "generate", root / "verify")
    filter_stage.run(filter_stage.FilterConfig(policy=recipe["filter"]["policy"]), root / "verify", root / "filter")
    build.run(build.BuildConfig(tokenizer=BUNDLED, validation_fraction=0.0), root / "filter", root / "build")
    return {"root": root, "recipe": root / "recipe.yaml", "prompts": prompts, "student": Path(recipe["sft"]["model"])}


UPSTREAM = {"verify": "generate", "filter": "verify", "build": "filter", "sft": "build"}


@dataclass
class Case:
    """Break something for `stage`; its error line must contain `expected`."""

    stage: str
    name: str
    expected: str  # in the error line; "{out}" stands for the output folder
    breaks: Callable[[Path, dict[str, Path]], list[str]]  # (tmp folder, chain) -> extra command-line arguments
    needs_mount: bool = False


def _copy_input(tmp: Path, chain: dict[str, Path], stage: str) -> Path:
    src = chain["root"] / UPSTREAM[stage]
    dst = tmp / UPSTREAM[stage]
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".lock"))
    return dst


def _first_shard(folder: Path) -> Path:
    return sorted(folder.glob("part-*.jsonl"))[0]


def _prompts(text: bytes) -> Callable[[Path, dict[str, Path]], list[str]]:
    def breaks(tmp: Path, chain: dict[str, Path]) -> list[str]:
        path = tmp / "prompts.jsonl"
        path.write_bytes(text)
        return [f"generate.sources=[{{name: arith, path: {path}}}]"]

    return breaks


def _shard(edit: Callable[[list[bytes]], list[bytes]], reseal: bool = True):
    """Rewrite the first shard of a copied upstream folder. `reseal` rewrites its manifest to match, as a faulty
    upstream writer would have (so the record reader must catch it); without, it is damage after the upstream
    stage finished (the check against the manifest must)."""

    def for_stage(stage: str) -> Callable[[Path, dict[str, Path]], list[str]]:
        def breaks(tmp: Path, chain: dict[str, Path]) -> list[str]:
            folder = _copy_input(tmp, chain, stage)
            shard = _first_shard(folder)
            shard.write_bytes(b"".join(edit(shard.read_bytes().splitlines(keepends=True))))
            if reseal:
                manifest = read_manifest(folder)
                manifest.pop("files")
                write_manifest(folder, manifest)
            return ["--input", str(folder)]

        return breaks

    return for_stage


def _drop_field(field: str) -> Callable[[list[bytes]], list[bytes]]:
    def edit(lines: list[bytes]) -> list[bytes]:
        rec = json.loads(lines[0])
        del rec[field]
        return [json.dumps(rec).encode() + b"\n", *lines[1:]]

    return edit


non_utf8 = _shard(lambda lines: [lines[0].replace(b"Working", b"W\xffrking", 1), *lines[1:]])
torn = _shard(lambda lines: [*lines[:-1], lines[-1][: len(lines[-1]) // 2]])
bad_json = _shard(lambda lines: [lines[0], b"{not json\n", *lines[1:]])
lost_lines = _shard(lambda lines: lines[:-1], reseal=False)
missing = {"verify": _shard(_drop_field("completion")), "filter": _shard(_drop_field("completion"))}
missing["build"] = _shard(_drop_field("messages"))


def _cut_parquet(tmp: Path, chain: dict[str, Path]) -> list[str]:
    """A build folder whose train parquet lost its second half after build finished."""
    folder = _copy_input(tmp, chain, "sft")
    part = sorted((folder / "data").glob("train-*.parquet"))[0]
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])
    return ["--input", str(folder)]


def _output_is_a_file(tmp: Path, chain: dict[str, Path]) -> list[str]:
    (tmp / "out").write_text("not a folder\n")
    return []


@contextlib.contextmanager
def _mounted(path: Path, options: str) -> Iterator[None]:
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if proc.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip() or 'mount failed'}); needs root in a container")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


GOOD = b'{"problem": "What is 1 + 1?", "answer": "2"}\n'
CASES = [
    # generate: the prompt files it reads
    Case(
        "generate",
        "non-UTF-8",
        "prompts.jsonl:2: not UTF-8 text",
        _prompts(GOOD + b'{"problem": "caf\xe9?", "a": 1}\n'),
    ),
    Case("generate", "bad JSON line", "prompts.jsonl:2: malformed JSON", _prompts(GOOD + b"{oops\n")),
    Case(
        "generate",
        "missing field",
        "prompts.jsonl:1: missing field 'problem'",
        _prompts(b'{"q": "1+1?", "answer": 2}\n'),
    ),
    Case(
        "generate",
        "200k-character prompt",
        "field 'problem' is 200,000 characters",
        _prompts(json.dumps({"problem": "x" * 200_000, "answer": "1"}).encode() + b"\n"),
    ),  # fmt: skip
    Case("generate", "unknown sampling key", "generate.sampling", lambda t, c: ["generate.sampling.bogus=1"]),
    # sft: the pass-through sections' types
    Case(
        "sft",
        "trl type",
        "sft.trl.num_train_epochs: 'two' is not a valid number",
        lambda t, c: ["sft.trl.num_train_epochs=two"],
    ),
    Case("sft", "peft type", "sft.peft.r: 'sixteen' is not a valid integer", lambda t, c: ["sft.peft={r: sixteen}"]),
    Case(
        "sft",
        "context",
        "sft.trl.max_length=4096 exceeds",
        lambda t, c: ["sft.trl.max_length=4096", "sft.trl.packing=true"],
    ),
    Case("sft", "parquet cut short", "train-00000-of-00001.parquet", lambda t, c: _cut_parquet(t, c)),
    # evaluate
    Case("evaluate", "unknown sampling key", "evaluate.sampling", lambda t, c: ["evaluate.sampling.bogus=1"]),
]
for stage in ("verify", "filter", "build"):
    CASES += [
        Case(stage, "non-UTF-8", "part-00000.jsonl:1", non_utf8(stage)),
        Case(stage, "torn line", "a torn last line", torn(stage)),
        Case(stage, "bad JSON line", "part-00000.jsonl:2", bad_json(stage)),
        Case(stage, "missing field", "part-00000.jsonl:1", missing[stage](stage)),
        Case(stage, "lost lines", "part-00000.jsonl: ", lost_lines(stage)),
    ]
for stage in ("generate", "verify", "filter", "build", "sft", "evaluate"):
    CASES.append(Case(stage, "output is a file", "{out}", _output_is_a_file))
    CASES.append(Case(stage, "read-only output", "{out}", lambda t, c: [], needs_mount=True))


def _argv(case: Case, tmp: Path, chain: dict[str, Path]) -> list[str]:
    argv = [case.stage, "-c", str(chain["recipe"]), "--output", str(tmp / "out")]
    if case.stage in UPSTREAM:
        argv += ["--input", str(chain["root"] / UPSTREAM[case.stage])]
    if case.stage == "evaluate":
        argv += ["--model", str(chain["student"]), "--benchmarks", "humaneval", "--limit", "1", "--n", "1"]
    return argv + case.breaks(tmp, chain)


@pytest.mark.parametrize("case", CASES, ids=[f"{c.stage}-{c.name}" for c in CASES])
def test_bad_input_is_one_line_exit_2_and_nothing_finished(case, chain, tmp_path, capsys):
    argv = _argv(case, tmp_path, chain)
    with _mounted(tmp_path / "out", "ro,size=1m") if case.needs_mount else contextlib.nullcontext():
        code = cli.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err[-20:]
    assert err and err[-1].startswith(f"r1distill {case.stage}: error: "), err[-20:]
    assert case.expected.format(out=tmp_path / "out") in err[-1], err[-1]
    assert not any(line.startswith("Traceback") for line in err)
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_a_second_generate_on_a_locked_folder_is_refused_before_anything_slow(chain, tmp_path):
    """Issue 18 item 9: the lock is tried first, before vLLM is even imported (that import alone took ~50 s)."""
    out = tmp_path / "out"
    out.mkdir()
    probe = "import sys; from r1distill.cli import main; r = main(sys.argv[1:]); print('vllm' in sys.modules); exit(r)"
    with open(out / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        argv = [sys.executable, "-c", probe, "generate", "-c", str(chain["recipe"]), "--output", str(out)]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("r1distill generate: error: ") and "another r1distill process" in last, last
    assert proc.stdout.split() == ["False"]  # refused before vLLM was imported, let alone started


@pytest.mark.parametrize("stage", ["generate", "verify", "filter", "build"])
def test_a_full_disk_is_one_line_naming_the_folder(stage, chain, tmp_path, capsys):
    """Issue 18 item 8: the output on a 4 KiB tmpfs (each stage writes more). generate runs in-process with the
    stand-in teacher (the command line would start vLLM); the others through the command line. sft and evaluate
    are left out: they fill a disk only after training or an engine start."""
    out = tmp_path / "out"
    with _mounted(out, "size=4k"):
        if stage == "generate":
            from r1distill.generate import stage as generate
            from r1distill.generate.prompts import SourceConfig

            rows = [json.loads(line) for line in chain["prompts"].read_text().splitlines()]
            cfg = generate.GenerateConfig(
                sources=[SourceConfig(name="arith", path=str(chain["prompts"]))], n=8, sampling={"max_tokens": 64}
            )
            with pytest.raises(StageError) as e:
                generate.run(cfg, None, out, engine=Answering({r["problem"]: r["answer"] for r in rows}))
            err = [f"r1distill generate: error: {e.value}"]
        else:
            code = cli.main([stage, "-c", str(chain["recipe"]), "--input", str(chain["root"] / UPSTREAM[stage]),
                             "--output", str(out)])  # fmt: skip
            err = capsys.readouterr().err.strip().splitlines()
            assert code == 2, err[-20:]
        assert "no space left" in err[-1] and str(out) in err[-1], err[-1]
        assert not any(line.startswith("Traceback") for line in err)
        assert not (out / "manifest.json").exists()
