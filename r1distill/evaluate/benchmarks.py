"""Benchmark registry: name -> where its problems come from, how they are prompted, and the published numbers.

Every benchmark yields rows `{"id", "problem", "answer"}` in the shape the graders read: `answer` is a gold
answer string for math, a letter for multiple choice (GPQA), and a code-test dict for code (see
`r1distill.grading.code`). Rows come from a local JSONL file under `data_root` (offline machines, tests) or,
when `data_root` is None, from the Hugging Face Hub. Adding a benchmark is one `Benchmark(...)` entry in `REGISTRY`.

Published numbers are DeepSeek-R1's model card (pass@1 over 64 samples, temperature 0.6, top-p 0.95, 32,768 max
tokens), keyed by model name, so a report can put them beside what it measured.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from r1distill.core.store import StageError, read_jsonl
from r1distill.generate.problems import arithmetic

R1_MATH_TEMPLATE = "{problem}\nPlease reason step by step, and put your final answer within \\boxed{}."
CODE_TEMPLATE = "{problem}\nPlease reason step by step, then give your complete solution in one ```python code block."
GPQA_TEMPLATE = (
    "{problem}\nPlease reason step by step, and put the letter of your final answer (A, B, C or D) within \\boxed{}."
)

_MODELS = ("Qwen-1.5B", "Qwen-7B", "Qwen-14B", "Qwen-32B", "Llama-8B", "Llama-70B")
PUBLISHED_MODELS = tuple(f"DeepSeek-R1-Distill-{m}" for m in _MODELS)  # the names published numbers are keyed by


def _published(*values: float) -> dict[str, float]:
    """The model card's column for one benchmark, in the order of `_MODELS`."""
    return dict(zip(PUBLISHED_MODELS, values, strict=True))


Row = dict[str, Any]


@dataclass(frozen=True)
class Benchmark:
    """One evaluation set. `convert` maps a raw row (local file or Hub) to `{"id", "problem", "answer"}`."""

    name: str
    domain: str
    convert: Callable[[int, Row], Row | None]
    file: str | None = None  # JSONL under data_root, or a callable-free builtin when `builtin` is set
    hub: str | None = None
    subset: str | None = None
    split: str = "test"
    prompt_template: str = R1_MATH_TEMPLATE
    published: dict[str, float] = field(default_factory=dict)
    published_cons: dict[str, float] = field(default_factory=dict)  # cons@64, where published
    builtin: Callable[[], list[Row]] | None = None
    bundled: Path | None = None  # a copy shipped with r1distill, read when data_root does not hold `file`
    note: str = ""

    def local_path(self, data_root: str | Path | None) -> Path | None:
        """The file the rows are read from: `file` under data_root, else the bundled copy; None for Hub/builtin."""
        if self.builtin is not None:
            return None
        if data_root is not None and self.file is not None:
            path = Path(data_root).expanduser() / self.file
            if path.exists() or self.bundled is None:
                return path
        return self.bundled

    def source(self, data_root: str | Path | None) -> dict[str, Any]:
        """Where the rows come from, for the report: a local file with its sha256, a Hub dataset, or builtin."""
        if self.builtin is not None:
            return {"builtin": self.name}
        path = self.local_path(data_root)
        if path is not None and path.exists():
            return {"path": str(path), "sha256": _sha256(path)}
        if data_root is None and self.hub:
            return {"hub": self.hub, "subset": self.subset, "split": self.split, "sha256": None}
        return {"path": str(path) if path else None, "sha256": None}

    def raw_rows(self, data_root: str | Path | None) -> Iterator[Row]:
        if self.builtin is not None:
            yield from self.builtin()
            return
        if self.bundled is not None:
            yield from _read_local(self.local_path(data_root) or self.bundled)
            return
        if data_root is not None:
            if self.file is None:
                raise StageError(f"benchmark {self.name}: no local file; set data_root: null to load {self.hub}")
            path = Path(data_root).expanduser() / self.file
            if not path.exists():
                raise StageError(f"benchmark {self.name}: {path} does not exist (evaluate.data_root)")
            yield from _read_local(path)
            return
        if self.hub is None:
            raise StageError(
                f"benchmark {self.name}: no Hub dataset; set evaluate.data_root to a folder with {self.file}"
            )
        import datasets

        try:
            ds = datasets.load_dataset(self.hub, self.subset, split=self.split)
        except Exception as e:  # the datasets library raises many types for a missing/offline dataset
            raise StageError(f"benchmark {self.name}: cannot load {self.hub!r} ({e})") from None
        yield from ds

    def rows(self, data_root: str | Path | None = None, limit: int | None = None) -> list[Row]:
        """The converted rows (first `limit`), ids unique; raises StageError on an unusable row."""
        return self.convert_rows(self.raw_rows(data_root), limit)

    def convert_rows(self, raw_rows: Iterable[Row], limit: int | None = None) -> list[Row]:
        """`convert` over raw rows in the source's own schema (a local file's or a Hub dataset's), first `limit`."""
        out: list[Row] = []
        seen: set[str] = set()
        for i, raw in enumerate(raw_rows):
            if limit is not None and len(out) >= limit:
                break
            try:
                row = self.convert(i, raw)
            except (KeyError, TypeError, ValueError) as e:
                raise StageError(f"benchmark {self.name}: row {i} is not in the expected shape ({e!r})") from None
            if row is None:
                continue
            row["id"] = str(row["id"]).replace("/", "_")
            if row["id"] in seen:
                raise StageError(f"benchmark {self.name}: duplicate id {row['id']!r}")
            seen.add(row["id"])
            out.append(row)
        if not out:
            raise StageError(f"benchmark {self.name}: no problems loaded")
        return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_local(path: Path) -> Iterator[Row]:
    for _, row in read_jsonl(path, skip_blank=True):
        yield row


def _fields(problem: str, answer: str, ident: str | None = None) -> Callable[[int, Row], Row]:
    """A converter for plain math rows: take `problem`/`answer` fields, id from `ident` or the row number."""

    def convert(i: int, raw: Row) -> Row:
        return {"id": raw[ident] if ident else i, "problem": raw[problem], "answer": raw[answer]}

    return convert


def _mbpp(i: int, raw: Row) -> Row | None:
    """MBPP's test split (task_id 11-510); the first test is shown so the function name is known."""
    if not 11 <= int(raw["task_id"]) <= 510:
        return None
    tests = list(raw["test_list"])
    problem = f"{raw.get('text') or raw.get('prompt')}\nYour code should pass this test:\n{tests[0]}"
    ref = {"test_code": "\n".join(tests), "setup_code": raw.get("test_setup_code") or ""}
    if raw.get("test_imports"):  # the sanitized config's imports its tests need
        ref["test_imports"] = list(raw["test_imports"])
    return {"id": raw["task_id"], "problem": problem, "answer": ref}


def _humaneval(i: int, raw: Row) -> Row:
    """The reference keeps the prompt: the code is graded as the official harness runs it (prompt + completion +
    test + check), so an answer may rely on the prompt's imports and helpers (see `grading.code`)."""
    problem = f"Complete the following Python function; give the whole function.\n```python\n{raw['prompt']}```"
    ref = {"test_code": raw["test"], "entry_point": raw["entry_point"], "prompt": raw["prompt"]}
    return {"id": raw["task_id"], "problem": problem, "answer": ref}


def _livecodebench(i: int, raw: Row) -> Row:
    tests = raw["public_test_cases"]
    if isinstance(tests, str):
        tests = json.loads(tests)
    problem = raw.get("problem") or raw["question_content"]
    starter = raw.get("starter_code") or ""
    if starter:
        problem += f"\nUse this starter code:\n```python\n{starter}\n```"
    else:
        problem += "\nRead the input from stdin and write the answer to stdout."
    ref = {"tests": tests, "starter_code": starter} if starter else {"tests": tests}
    return {"id": raw.get("id", raw.get("question_id", i)), "problem": problem, "answer": ref}


def _gpqa(i: int, raw: Row) -> Row:
    """Multiple choice with the four options shuffled by a seed derived from the question (stable across runs)."""
    question = raw["Question"].strip()
    options = [raw["Correct Answer"], raw["Incorrect Answer 1"], raw["Incorrect Answer 2"], raw["Incorrect Answer 3"]]
    order = list(range(4))
    random.Random(hashlib.sha256(question.encode()).digest()).shuffle(order)
    lines = [f"({'ABCD'[j]}) {str(options[o]).strip()}" for j, o in enumerate(order)]
    return {
        "id": raw.get("Record ID", i),
        "problem": question + "\n\n" + "\n".join(lines),
        "answer": "ABCD"[order.index(0)],
    }


# openai/human-eval's data/HumanEval.jsonl.gz (MIT), shipped with r1distill: see data/README.md for its provenance.
HUMANEVAL_FILE = Path(__file__).parent / "data" / "HumanEval.jsonl.gz"


def _arith_rows() -> list[Row]:
    """The built-in arithmetic set with a seed no generate recipe uses by default (0), so it is held out."""
    return arithmetic(count=32, seed=1000)


def _arith_large_rows() -> list[Row]:
    """256 held-out arithmetic problems (the same seed as `arith`, which are its first 32): enough for a paired CI."""
    return arithmetic(count=256, seed=1000)


def _register(*benchmarks: Benchmark) -> dict[str, Benchmark]:
    return {b.name: b for b in benchmarks}


REGISTRY: dict[str, Benchmark] = _register(
    Benchmark(
        "aime24",
        "math",
        _fields("problem", "answer", "id"),
        file="aime24.jsonl",
        hub="HuggingFaceH4/aime_2024",
        split="train",
        published=_published(28.9, 55.5, 69.7, 72.6, 50.4, 70.0),
        published_cons=_published(52.7, 83.3, 80.0, 83.3, 80.0, 86.7),
    ),
    Benchmark("aime25", "math", _fields("problem", "answer", "id"), file="aime25.jsonl"),
    Benchmark("amc23", "math", _fields("problem", "answer", "id"), file="amc23.jsonl"),
    Benchmark(
        "math500",
        "math",
        _fields("problem", "answer", "unique_id"),
        file="math500.jsonl",
        hub="HuggingFaceH4/MATH-500",
        published=_published(83.9, 92.8, 93.9, 94.3, 89.1, 94.5),
    ),
    Benchmark(
        "gsm8k", "math", _fields("question", "answer"), file="gsm8k_test.jsonl", hub="openai/gsm8k", subset="main"
    ),
    Benchmark(
        "gpqa_diamond",
        "science",
        _gpqa,
        hub="Idavidrein/gpqa",
        subset="gpqa_diamond",
        split="train",
        prompt_template=GPQA_TEMPLATE,
        published=_published(33.8, 49.1, 59.1, 62.1, 49.0, 65.2),
        note="Hub only (gated; its authors ask that questions not be posted in plain text)",
    ),
    Benchmark(
        "livecodebench",
        "code",
        _livecodebench,
        file="livecodebench_public.jsonl",
        prompt_template=CODE_TEMPLATE,
        published=_published(16.9, 37.6, 53.1, 57.2, 39.6, 57.5),
        note="public tests only, no date window: not comparable with the published numbers' hidden tests",
    ),
    Benchmark(
        "humaneval",
        "code",
        _humaneval,
        file="HumanEval.jsonl.gz",
        bundled=HUMANEVAL_FILE,
        prompt_template=CODE_TEMPLATE,
    ),
    Benchmark(
        "mbpp",
        "code",
        _mbpp,
        file="mbpp.jsonl",
        hub="google-research-datasets/mbpp",
        subset="full",
        prompt_template=CODE_TEMPLATE,
    ),
    Benchmark("arith", "math", _fields("problem", "answer", "id"), builtin=_arith_rows, note="built-in, offline"),
    Benchmark("arith256", "math", _fields("problem", "answer", "id"), builtin=_arith_large_rows, note="built-in"),
)


def get(name: str) -> Benchmark:
    """The registered benchmark `name`; a StageError lists the known names otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise StageError(f"evaluate.benchmarks: unknown benchmark {name!r}; known: {', '.join(REGISTRY)}") from None


def published_for(bench: Benchmark, model: str, cons: bool = False) -> float | None:
    """The published number for `model` (matched by its last path part, case-insensitive), or None."""
    table = bench.published_cons if cons else bench.published
    base = Path(str(model)).name.lower()
    for name, value in table.items():
        if name.lower() == base:
            return value
    return None


def names() -> Iterable[str]:
    return REGISTRY.keys()
