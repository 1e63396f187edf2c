"""Issue 18 item 5: generate streams prompts and requests, so what it holds follows the engine's window, not the
run's size; resume and the finished-folder check work from compact id hashes. The engine is a stand-in that
implements the real `Engine` interface (these tests are about what generate hands it and when); the real engine's
streaming is covered in test_generate.py."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

import pytest

from r1distill.core.store import StageError, iter_records, read_manifest
from r1distill.generate.engines import Completion, Engine, Request
from r1distill.generate.plan import Plan, disk_summary
from r1distill.generate.prompts import SourceConfig, scan_prompts
from r1distill.generate.stage import GenerateConfig, run


class Window(Engine):
    """Pulls one request at a time and answers it at once; records how many requests existed at each pull."""

    name = "window"

    def __init__(self, made: list[int]):
        self.made = made
        self.seen_at_pull: list[int] = []
        self.ids: list[str] = []

    def generate(self, requests: Iterable[Request]) -> Iterator[Completion]:
        assert not isinstance(requests, list | tuple | dict)  # a stream, not a materialised batch
        for req in requests:
            self.seen_at_pull.append(self.made[0])
            self.ids.append(req.id)
            yield Completion(req.id, f"{req.id}\n</think>\n\n\\boxed{{1}}", "stop", 10, 5)


@pytest.fixture
def counted(monkeypatch) -> list[int]:
    """How many `Request`s generate has built so far."""
    made = [0]

    def counting(*args, **kwargs):
        made[0] += 1
        return Request(*args, **kwargs)

    monkeypatch.setattr("r1distill.generate.stream.Request", counting)
    return made


def prompts_file(tmp_path, count: int):
    path = tmp_path / "p.jsonl"
    path.write_text(
        "".join(json.dumps({"problem": f"What is {i} + 1?", "answer": str(i + 1)}) + "\n" for i in range(count))
    )
    return path


def config(path, n: int) -> GenerateConfig:
    return GenerateConfig(sources=[SourceConfig(name="s", path=str(path))], n=n, sampling={"max_tokens": 8})


def test_requests_are_built_as_the_engine_pulls_them(tmp_path, counted):
    engine = Window(counted)
    manifest = run(config(prompts_file(tmp_path, 50), n=4), None, tmp_path / "out", engine=engine)
    assert manifest["counts"] == {"prompts": 50, "n": 4, "samples": 200}
    # At the k-th pull exactly k requests existed: none is built ahead of the engine asking for it.
    assert engine.seen_at_pull == list(range(1, 201))
    assert len({r["id"] for r in iter_records(tmp_path / "out")}) == 200


def test_resume_asks_only_for_what_is_missing_and_the_check_finds_a_lost_sample(tmp_path, counted):
    path = prompts_file(tmp_path, 10)
    run(config(path, n=2), None, tmp_path / "out", engine=Window(counted))
    more = Window(counted)
    manifest = run(config(path, n=3), None, tmp_path / "out", engine=more)
    assert sorted(more.ids) == sorted(f"s/{i}/2" for i in range(10)) and manifest["counts"]["samples"] == 30
    again = Window(counted)
    run(config(path, n=3), None, tmp_path / "out", engine=again)
    assert again.ids == []  # everything on disk: no request at all

    # A sample that vanished from disk (not by generate) is named when the folder is checked, never skipped.
    shard = sorted((tmp_path / "out").glob("part-*.jsonl"))[0]
    lines = shard.read_text().splitlines(keepends=True)
    gone = json.loads(lines[0])["id"]
    shard.write_text("".join(lines[1:]))
    cfg = config(path, n=3)
    with pytest.raises(StageError, match=f"1 requested samples missing \\(e.g. {gone}\\)"):
        disk_summary(tmp_path / "out", Plan(cfg, None, scan_prompts(cfg.sources)))


def test_duplicate_ids_in_a_source_are_named_from_the_compact_scan(tmp_path):
    path = tmp_path / "p.jsonl"
    rows = [{"id": i % 5 if i < 9 else 3, "problem": f"q{i}", "answer": "1"} for i in range(10)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows[:5] + rows[9:]))
    cfg = GenerateConfig(sources=[SourceConfig(name="s", path=str(path), id_field="id")], n=1)
    with pytest.raises(StageError, match=r"p.jsonl:6: duplicate id '3' \(also at .*p.jsonl:4\)"):
        run(cfg, None, tmp_path / "out", engine=Window([0]))
    assert read_manifest(tmp_path / "out") is None
