"""A build-stage folder made locally for training tests: arithmetic problems with `<think>` answers, in the layout
`r1distill build` writes (data/train-*.parquet, data/validation-*.parquet, README.md card, manifest.json last)."""

from __future__ import annotations

import json
from pathlib import Path

from r1distill.build.stage import assistant_content
from r1distill.generate.problems import arithmetic


def rows(count: int, seed: int = 0, system: str | None = None) -> list[dict]:
    out = []
    for i, p in enumerate(arithmetic(count, seed=seed)):
        prompt = [{"role": "user", "content": p["problem"]}]
        if system:
            prompt.insert(0, {"role": "system", "content": system})
        answer = assistant_content(f"Let me compute. {p['solution']}", f"The answer is \\boxed{{{p['answer']}}}.")
        out.append({"id": f"arith/{i}/0", "messages": [*prompt, {"role": "assistant", "content": answer}]})
    return out


def make_build_dir(path: Path, train: int = 32, validation: int = 4, seed: int = 0) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = path / "data"
    data.mkdir(parents=True, exist_ok=True)
    every = rows(train + validation, seed)
    for name, part in (("train", every[:train]), ("validation", every[train:])):
        if part:
            pq.write_table(pa.Table.from_pylist(part), data / f"{name}-00000-of-00001.parquet")
    (path / "README.md").write_text("# test dataset\n")
    (path / "manifest.json").write_text(json.dumps({"stage": "build", "counts": {"train": train}}))
    return path
