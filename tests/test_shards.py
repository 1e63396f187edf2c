import json
import multiprocessing as mp

import pytest

from r1distill.core.store import (
    ShardWriter,
    StageError,
    clear_manifest,
    iter_records,
    locked,
    read_manifest,
    recover,
    require_complete,
    shard_paths,
    write_manifest,
)


def test_writer_seals_every_n_rows_and_reader_sees_all(tmp_path):
    with ShardWriter(tmp_path, rows_per_shard=3) as w:
        for i in range(7):
            w.write({"id": i})
    assert [p.name for p in shard_paths(tmp_path)] == ["part-00000.jsonl", "part-00001.jsonl", "part-00002.jsonl"]
    assert [r["id"] for r in iter_records(tmp_path)] == list(range(7))
    assert not list(tmp_path.glob("*.tmp"))


def test_open_shard_is_invisible_until_sealed(tmp_path):
    w = ShardWriter(tmp_path, rows_per_shard=100)
    w.write({"id": 1})
    assert list(iter_records(tmp_path)) == []  # a .tmp shard is not part of the output
    w.close()
    assert [r["id"] for r in iter_records(tmp_path)] == [1]


def test_recover_drops_torn_last_line_and_keeps_whole_ones(tmp_path):
    (tmp_path / "part-00000.jsonl").write_text('{"id": 0}\n')
    (tmp_path / "part-00001.jsonl.tmp").write_text('{"id": 1}\n{"id": 2}\n{"id": 3, "text": "cut mid-wr')
    assert recover(tmp_path) == 1
    assert [r["id"] for r in iter_records(tmp_path)] == [0, 1, 2]
    # the next writer continues after the recovered shard, never overwriting it
    with ShardWriter(tmp_path) as w:
        w.write({"id": 4})
    assert [r["id"] for r in iter_records(tmp_path)] == [0, 1, 2, 4]


def test_manifest_records_files_and_is_required(tmp_path):
    with pytest.raises(StageError, match="did not finish"):
        require_complete(tmp_path, "generate")
    with ShardWriter(tmp_path) as w:
        w.write({"id": 1})
    m = write_manifest(tmp_path, {"stage": "x"})
    assert m["files"][0]["rows"] == 1 and len(m["files"][0]["sha256"]) == 64
    assert require_complete(tmp_path, "x")["stage"] == "x"
    clear_manifest(tmp_path)
    assert read_manifest(tmp_path) is None


def test_malformed_record_names_file_and_line(tmp_path):
    (tmp_path / "part-00000.jsonl").write_text('{"a": 1}\nnot json\n')
    with pytest.raises(StageError, match=r"part-00000.jsonl:2: malformed"):
        list(iter_records(tmp_path))


def _hold_lock(path, ready, release):
    with locked(path):
        ready.set()
        release.wait(10)


def test_second_writer_on_same_folder_is_refused(tmp_path):
    ready, release = mp.Event(), mp.Event()
    p = mp.Process(target=_hold_lock, args=(tmp_path, ready, release))
    p.start()
    try:
        assert ready.wait(10)
        with pytest.raises(StageError, match="another r1distill process"), locked(tmp_path):
            pass
    finally:
        release.set()
        p.join()
    with locked(tmp_path):  # free again once the holder is gone
        pass


def test_records_with_newlines_are_escaped(tmp_path):
    with ShardWriter(tmp_path) as w:
        w.write({"text": "a\nb"})
    line = (tmp_path / "part-00000.jsonl").read_text()
    assert line.count("\n") == 1 and json.loads(line)["text"] == "a\nb"
