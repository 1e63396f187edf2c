"""run: every stage of a recipe in order, skipping those already finished with the same config and input.

r1distill run pipelines/quickstart.yaml [--dry-run [--assume KEY=VALUE]] [--force STAGE] [KEY=VALUE ...]

`--force STAGE` reruns that stage, and with it every later stage that reads its output (their input changed).
`--dry-run` runs every stage's own validation without loading a model or touching the network, prints the plan
(stages, what is already done, models and whether they are available, data, resources) and an estimate of teacher
tokens and GPU-hours (r1distill.pipeline.estimate).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from r1distill.core.config import ConfigError, Recipe, load_recipe
from r1distill.core.stage import Stage, get, is_done, setup_logging
from r1distill.core.store import StageError, read_manifest
from r1distill.pipeline import estimate

log = logging.getLogger("r1distill.run")


@dataclass
class Step:
    """One stage of a recipe's plan: the stage object, its validated config, its folders, and whether a finished
    run of this config on this input is already there."""

    stage: str
    runner: Stage
    cfg: Any
    input: Path | None
    output: Path
    done: bool


def plan(recipe: Recipe) -> list[Step]:
    """One step per stage in the recipe, in pipeline order."""
    steps = []
    for name in recipe.stages():
        runner = get(name)
        cfg = recipe.section(name, runner.Config)
        inp, out = runner.resolve_dirs(recipe, None, None)
        out = runner.output_dir(cfg, out)
        steps.append(Step(name, runner, cfg, inp, out, is_done(out, cfg, inp)))
    return steps


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="r1distill run", description=__doc__.strip().splitlines()[0])
    p.add_argument("recipe")
    p.add_argument("--dry-run", action="store_true", help="validate every stage's config and print the plan")
    p.add_argument(
        "--assume", action="append", default=[], metavar="KEY=VALUE", help="change an estimate assumption (dry-run)"
    )
    p.add_argument(
        "--force", action="append", default=[], metavar="STAGE", help="rerun STAGE (and what reads it) even if done"
    )
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = p.parse_intermixed_args(argv)
    setup_logging(args.verbose)
    try:
        recipe = load_recipe(args.recipe, args.overrides)
        steps = plan(recipe)
        if not steps:
            raise StageError(f"{args.recipe}: no stage sections; add e.g. a 'generate:' section")
        unknown = sorted(set(args.force) - {s.stage for s in steps})
        if unknown:
            raise ConfigError(f"--force {unknown[0]}: not a stage of {args.recipe}; its stages: "
                              + ", ".join(s.stage for s in steps))  # fmt: skip
        if args.dry_run:
            return _dry_run(recipe, steps, args)
        for step in steps:
            print(
                f"{step.stage:<9} {_state(step, args.force):<7} {step.input or '-'} -> {step.output}", file=sys.stderr
            )
        t0 = time.monotonic()
        for step in steps:
            # The stage decides whether it is done: an upstream rerun changes its manifest hash, so later stages
            # see a new input and run again; a forced stage runs whatever its state.
            step.runner.run(step.cfg, step.input, step.output, force=step.stage in args.force)
        _print_summary(steps, time.monotonic() - t0)
    except StageError as e:
        print(f"r1distill run: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("r1distill run: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    return 0


def _state(step: Step, force: list[str]) -> str:
    return "done" if step.done and step.stage not in force else "to run"


def _assumptions(items: list[str]) -> dict[str, float]:
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        if key not in estimate.ASSUMPTIONS:
            raise ConfigError(f"--assume {item!r}: unknown key; known: {', '.join(estimate.ASSUMPTIONS)}")
        try:
            out[key] = float(value)
        except ValueError:
            raise ConfigError(f"--assume {item!r}: expected a number after '='") from None
    return out


def _dry_run(recipe: Recipe, steps: list[Step], args) -> int:
    """Every stage's own offline validation, then the plan and the estimate on stdout."""
    assume = _assumptions(args.assume)
    for step in steps:
        step.runner.validate(step.cfg)
    print(f"plan: {recipe.where} -> {recipe.run_dir} ({len(steps)} stages; nothing is run)")
    for step in steps:
        print(f"\n{step.stage:<9} {_state(step, args.force):<7} {step.input or '-'} -> {step.output}")
        for label, text in step.runner.describe(step.cfg, step.input, recipe):
            print(f"  {label:<10} {text}")
    lines, used = estimate.estimate(steps, assume)
    print("\nestimate\n" + estimate.table(lines, used))
    return 0


def _print_summary(steps: list[Step], wall: float) -> None:
    """Per stage: where its output is and what it holds."""
    print(f"\nrun finished in {wall:.0f} s", file=sys.stderr)
    for step in steps:
        manifest = read_manifest(step.output) or {}
        text = step.runner.summary(manifest) if manifest else "not finished"
        print(f"  {step.stage:<9} -> {step.output}\n            {text}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
