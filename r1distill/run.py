"""run: every stage of a recipe in order, skipping those already finished with the same config and input.

r1distill run pipelines/quickstart.yaml [--dry-run] [--force STAGE] [KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
import time

from r1distill.config import load_recipe
from r1distill.shards import StageError, read_manifest
from r1distill.stage import is_done, resolve_dirs, setup_logging

log = logging.getLogger("r1distill.run")


def plan(recipe) -> list[dict]:
    """One entry per stage in the recipe: its config (validated), folders and whether it is already done."""
    steps = []
    for stage in recipe.stages():
        module = importlib.import_module(f"r1distill.{stage}")
        cfg = recipe.section(stage, module.Config)
        inp, out = resolve_dirs(recipe, stage, None, None)
        steps.append(
            {"stage": stage, "module": module, "cfg": cfg, "input": inp, "output": out, "done": is_done(out, cfg, inp)}
        )
    return steps


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="r1distill run", description=__doc__.strip().splitlines()[0])
    p.add_argument("recipe")
    p.add_argument("--dry-run", action="store_true", help="validate every stage's config and print the plan")
    p.add_argument("--force", action="append", default=[], metavar="STAGE", help="rerun STAGE even if finished")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = p.parse_intermixed_args(argv)
    setup_logging(args.verbose)
    try:
        recipe = load_recipe(args.recipe, args.overrides)
        steps = plan(recipe)
        if not steps:
            raise StageError(f"{args.recipe}: no stage sections; add e.g. a 'generate:' section")
        for step in steps:
            state = "done" if step["done"] and step["stage"] not in args.force else "to run"
            print(f"{step['stage']:<9} {state:<7} {step['input'] or '-'} -> {step['output']}", file=sys.stderr)
        if args.dry_run:
            return 0
        t0 = time.monotonic()
        for step in steps:
            if step["done"] and step["stage"] not in args.force:
                continue
            # An upstream rerun changes its manifest hash, so later stages are re-checked, not assumed done.
            if is_done(step["output"], step["cfg"], step["input"]) and step["stage"] not in args.force:
                continue
            log.info("stage %s -> %s", step["stage"], step["output"])
            step["module"].run(step["cfg"], step["input"], step["output"])
        _print_summary(steps, time.monotonic() - t0)
    except StageError as e:
        print(f"r1distill run: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("r1distill run: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    return 0


def _print_summary(steps: list[dict], wall: float) -> None:
    """Per stage: where its output is and what it holds (the module's `summary(manifest)` when it has one)."""
    print(f"\nrun finished in {wall:.0f} s", file=sys.stderr)
    for step in steps:
        manifest = read_manifest(step["output"]) or {}
        describe = getattr(step["module"], "summary", None)
        text = describe(manifest) if describe else json.dumps(manifest.get("counts", {}))
        print(f"  {step['stage']:<9} -> {step['output']}\n            {text}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
