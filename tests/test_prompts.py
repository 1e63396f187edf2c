import json

import pytest

from r1distill.core.store import StageError
from r1distill.generate.prompts import SourceConfig, load_prompts, load_source


def jsonl(tmp_path, rows, name="p.jsonl"):
    p = tmp_path / name
    p.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return p


def test_local_jsonl_with_field_mapping(tmp_path):
    p = jsonl(tmp_path, [{"q": "2+2?", "a": "4", "uid": "x/1", "dom": "math"}, {"q": "hi", "a": "", "uid": 7}])
    out = load_source(
        SourceConfig(
            name="s",
            path=str(p),
            problem_field="q",
            answer_field="a",
            id_field="uid",
            domain="science",
            domain_field="dom",
        )
    )
    assert [(x.row, x.problem, x.reference, x.domain) for x in out] == [
        ("x_1", "2+2?", "4", "math"),
        ("7", "hi", "", "science"),
    ]


def test_parquet_and_limit(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "p.parquet"
    pq.write_table(pa.Table.from_pylist([{"problem": f"p{i}", "answer": str(i)} for i in range(10)]), path)
    out = load_source(SourceConfig(name="s", path=str(path), limit=3))
    assert [x.problem for x in out] == ["p0", "p1", "p2"]


def test_builtin_is_deterministic():
    a = load_source(SourceConfig(name="b", builtin="arithmetic", count=8, seed=3))
    b = load_source(SourceConfig(name="b", builtin="arithmetic", count=8, seed=3))
    assert [(x.problem, x.reference) for x in a] == [(x.problem, x.reference) for x in b] and len(a) == 8
    assert all(x.reference.lstrip("-").isdigit() for x in a)


@pytest.mark.parametrize(
    "rows, cfg, message",
    [
        (None, {}, r"prompt file .*missing.jsonl does not exist"),
        (['{"problem": "a", "answer": "1"}', "{broken"], {}, r"p.jsonl:2: malformed JSON"),
        ([{"question": "a", "answer": "1"}], {}, r"p.jsonl:1: missing field 'problem' \(fields: question, answer\)"),
        ([{"problem": "  ", "answer": "1"}], {}, r"p.jsonl:1: field 'problem' is empty"),
        ([{"problem": "a"}], {}, r"p.jsonl:1: missing field 'answer'"),
        (
            [{"problem": "a", "answer": 1, "id": 1}, {"problem": "b", "answer": 2, "id": 1}],
            {"id_field": "id"},
            r"p.jsonl:2: duplicate id '1'",
        ),
    ],
)
def test_bad_input_names_file_line_and_field(tmp_path, rows, cfg, message):
    path = jsonl(tmp_path, rows) if rows is not None else tmp_path / "missing.jsonl"
    with pytest.raises(StageError, match=message):
        load_source(SourceConfig(name="s", path=str(path), **cfg))


def test_sources_need_exactly_one_origin_and_unique_names(tmp_path):
    with pytest.raises(StageError, match="exactly one of path, hub or builtin"):
        load_prompts([SourceConfig(name="s")])
    with pytest.raises(StageError, match="source name 'a' used twice"):
        load_prompts([SourceConfig(name="a", builtin="arithmetic"), SourceConfig(name="a", builtin="arithmetic")])


def test_hub_source_goes_through_datasets_load_dataset(tmp_path):
    """The Hub path is `datasets.load_dataset(id, subset, split=...)`; a local dataset folder takes the same call."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "my_dataset" / "data"
    folder.mkdir(parents=True)
    pq.write_table(
        pa.Table.from_pylist([{"question": f"q{i}", "answer": f"#### {i}"} for i in range(5)]),
        folder / "train-00000-of-00001.parquet",
    )
    out = load_source(SourceConfig(name="h", hub=str(tmp_path / "my_dataset"), problem_field="question"), limit=2)
    assert [(x.problem, x.reference) for x in out] == [("q0", "#### 0"), ("q1", "#### 1")]


def test_global_limit_and_source_limit_take_the_smaller():
    src = SourceConfig(name="b", builtin="arithmetic", count=10, limit=6)
    assert len(load_prompts([src], limit=3)) == 3 and len(load_prompts([src])) == 6
