"""`r1distill filter --explain SAMPLE_ID -c RECIPE`: every check's verdict on one sample, with its evidence.

The stage stops at the first check that drops a sample; to judge a drop (or a keep) a person wants all of them. This
finds the sample in the filter's output (kept or `rejected/<reason>/`, where the recorded verdict is shown too) or
else in its input, runs decontamination and every check of the recipe's policy on it, and prints one block per
check: `keep`/`DROP reason`, the details, and for a drop the excerpt (highlighted in its context with `>>> <<<`),
its offset and the threshold. Dedup needs the whole corpus, so only the recorded verdict can speak for it.
`--json` prints the same as one JSON object.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

from r1distill.core.config import load_recipe
from r1distill.core.records import Sample
from r1distill.core.stage import setup_logging
from r1distill.core.store import StageError, iter_records

log = logging.getLogger(__name__)


def find_sample(sample_id: str, folders: list[Path | None]) -> tuple[Sample, dict[str, Any] | None, Path]:
    """(the sample, its recorded `meta.filter` or None, the folder it was found in): the filter output first (kept,
    then rejected), then the input. A StageError names the folders searched when the id is in none."""
    searched = []
    for folder in folders:
        if folder is None:
            continue
        places = [folder, *sorted(p for p in (folder / "rejected").glob("*") if p.is_dir())]
        for place in places:
            searched.append(str(place))
            for record in iter_records(place):
                if record.get("id") == sample_id:
                    sample = Sample.from_dict(record)
                    return sample, sample.meta.pop("filter", None), place
    where = ", ".join(searched) or "(no folder)"
    raise StageError(f"sample {sample_id!r} not found in {where}; ids look like source/row/k (see the report)")


def explain(cfg: Any, sample: Sample) -> dict[str, Any]:
    """{"decontam": verdict or None, "checks": [{"check", "applies", "keep", "reason", "details", "evidence"}]}:
    every check of the policy run on `sample`, not only up to the first drop."""
    from r1distill.filter.judge import Judge, problem_text

    worker = Judge(cfg)
    out: dict[str, Any] = {"id": sample.id, "domain": sample.domain, "checks": []}
    hit = worker.decontam.match(problem_text(sample)) if worker.decontam else None
    out["decontam"] = (
        {"reason": "contaminated", "details": hit, "evidence": worker.decontam_evidence(sample, hit)} if hit else None
    )
    for entry in worker.policy.entries:
        row: dict[str, Any] = {"check": entry.name, "applies": entry.applies(sample.domain)}
        if row["applies"]:
            verdict = entry.check(sample)
            row.update(keep=verdict.keep, reason=verdict.reason, details=verdict.details, evidence=verdict.evidence)
        out["checks"].append(row)
    return out


def render(result: dict[str, Any], recorded: dict[str, Any] | None, found_in: Path) -> str:
    """The explanation as a person reads it in a terminal."""
    lines = [f"sample {result['id']} (domain {result['domain']}), read from {found_in}"]
    if recorded:
        lines.append(f"recorded by the last run: {recorded.get('check')} -> {recorded.get('reason')} "
                     f"{json.dumps(recorded.get('details'), ensure_ascii=False)}")  # fmt: skip
    elif found_in.name != "rejected" and found_in.parent.name != "rejected":
        lines.append("recorded by the last run: none (kept, or not filtered yet)")
    blocks = [("decontam", result["decontam"])] + [(c["check"], c) for c in result["checks"]]
    for name, row in blocks:
        if row is None:
            lines.append(f"\n{name:16s} keep")
            continue
        if not row.get("applies", True):
            lines.append(f"\n{name:16s} skipped (not for domain {result['domain']})")
            continue
        verdict = "keep" if row.get("keep") else f"DROP {row['reason']}"
        details = json.dumps(row.get("details") or {}, ensure_ascii=False)
        lines.append(f"\n{name:16s} {verdict}  {details}")
        ev = row.get("evidence")
        if ev and not row.get("keep"):
            lines.append(f"  at {ev.get('part') or 'text'} offset {ev.get('offset')}; "
                         f"threshold {json.dumps(ev.get('threshold'), ensure_ascii=False)}")  # fmt: skip
            for key in ("unit", "count", "sentence", "duplicate_of"):
                if ev.get(key) is not None:
                    lines.append(f"  {key}: {ev[key]!r}")
            shown = f"{ev.get('before', '')}>>>{ev.get('excerpt', '')}<<<{ev.get('after', '')}"
            lines += ["  | " + line for line in shown.split("\n")]
            if ev.get("benchmark_excerpt"):
                lines.append(f"  benchmark: {ev['benchmark_excerpt']!r}")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    """`r1distill filter --explain ID -c RECIPE [-i INPUT] [-o OUTPUT] [--json] [KEY=VALUE ...]`."""
    from r1distill.filter.stage import STAGE, Config

    p = STAGE.parser(__doc__)
    p.add_argument("--explain", required=True, metavar="SAMPLE_ID", help="print every check's verdict on one sample")
    p.add_argument("--json", action="store_true", help="print the explanation as JSON")
    args = p.parse_intermixed_args(argv)
    setup_logging(args.verbose)
    try:
        recipe = load_recipe(args.config, list(args.overrides))
        cfg = recipe.section("filter", Config)
        input_dir, output_dir = STAGE.resolve_dirs(recipe, args.input, args.output)
        sample, recorded, found_in = find_sample(args.explain, [output_dir, input_dir])
        result = explain(cfg, sample)
    except StageError as e:
        print(f"r1distill filter: error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({**result, "recorded": recorded, "found_in": str(found_in)}, ensure_ascii=False, indent=1))
    else:
        sys.stdout.write(render(result, recorded, found_in))
    return 0
