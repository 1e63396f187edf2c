"""`python -m r1distill.generate` without a recipe: the flags that describe one prompt source, as users of open-r1
or SkyThought call a generator (`--model M --dataset data.jsonl --problem-field question --n 8 --output out/`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from r1distill.core.store import StageError


def add_source_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("a prompt source without a recipe (replaces the recipe's generate.sources)")
    g.add_argument("--dataset", metavar="PATH|HUB_ID", help="a local .jsonl/.json/.parquet file or a Hub dataset")
    g.add_argument("--problem-field", metavar="FIELD", default="problem", help="the problem text (default: problem)")
    g.add_argument("--answer-field", metavar="FIELD", default="answer", help="the reference answer (default: answer)")
    g.add_argument("--id-field", metavar="FIELD", help="a stable row id (default: the row number)")
    g.add_argument("--split", metavar="NAME", default="train", help="Hub split (default: train)")
    g.add_argument("--subset", metavar="NAME", help="Hub subset/config name")
    g.add_argument("--domain", metavar="NAME", default="math", help="math, code or science (default: math)")
    g.add_argument(
        "--prompt-template", metavar="TEXT", help="with {problem}; default R1's: reason step by step, \\boxed{}"
    )


R1_PROMPT = "{problem}\nPlease reason step by step, and put your final answer within \\boxed{}."


def source_from_flags(args) -> dict[str, Any]:
    """`--dataset` and its field flags as one `generate.sources` entry: a path when the file exists, else a Hub id."""
    from r1distill.core.models import HUB_ID

    where = Path(args.dataset).expanduser()
    if not where.exists() and where.suffix in (".jsonl", ".json", ".parquet", ".gz", ".csv"):
        raise StageError(f"--dataset {args.dataset}: no such file")
    if where.exists():
        src: dict[str, Any] = {"name": where.stem, "path": str(where)}
    elif HUB_ID.match(args.dataset):
        src = {"name": args.dataset.rsplit("/", 1)[-1], "hub": args.dataset, "split": args.split}
        if args.subset:
            src["subset"] = args.subset
    else:
        raise StageError(f"--dataset {args.dataset}: no such file, and not a Hub dataset id (owner/name)")
    src.update(problem_field=args.problem_field, answer_field=args.answer_field, domain=args.domain)
    if args.id_field:
        src["id_field"] = args.id_field
    return src


def recipe_without_file(args) -> dict[str, Any]:
    """A recipe for a run described by flags alone: R1's prompt and sampling unless a flag says otherwise."""
    return {"name": Path(args.output).name, "generate": {"prompt_template": args.prompt_template or R1_PROMPT}}
