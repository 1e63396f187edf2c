"""What every stage shares: the manifest header, the "already done?" test, and the command line.

A stage module `r1distill/<name>.py` exposes `Config` (a dataclass), `run(cfg, input_dir, output_dir) -> manifest`
and `main(argv)`. `main` is `stage_main(...)`, so `r1distill <name>` and `python -m r1distill.<name>` agree.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from r1distill import __version__
from r1distill.core.config import Recipe, config_hash, load_recipe
from r1distill.core.registry import STAGES, stage_module  # noqa: F401  (the registry, re-read by callers)
from r1distill.core.store import StageError, manifest_hash, read_manifest

log = logging.getLogger("r1distill")

# The folder each stage reads from, inside the run dir (generate reads prompts named by its config).
UPSTREAM = {
    "verify": "generate",
    "filter": "verify",
    "build": "filter",
    "publish": "build",
    "sft": "build",
    "distill": "sft",
    "rl": "sft",
}


def header(stage: str, cfg: Any, input_dir: str | Path | None) -> dict[str, Any]:
    """The fields every manifest starts with."""
    return {
        "stage": stage,
        "r1distill_version": __version__,
        "config_hash": config_hash(cfg),
        "input_hash": manifest_hash(input_dir) if input_dir else None,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join(sys.argv),
    }


def is_done(output_dir: str | Path, cfg: Any, input_dir: str | Path | None) -> bool:
    """True when the folder holds a finished run of this very config on this very input."""
    manifest = read_manifest(output_dir)
    return bool(
        manifest
        and manifest.get("config_hash") == config_hash(cfg)
        and manifest.get("input_hash") == (manifest_hash(input_dir) if input_dir else None)
    )


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )


def make_parser(stage: str, doc: str | None, flags: dict[str, tuple[str, type, str]] | None = None):
    p = argparse.ArgumentParser(prog=f"r1distill {stage}", description=(doc or "").strip().splitlines()[0])
    p.add_argument("--config", "-c", required=True, help=f"recipe YAML (its '{stage}:' section is used)")
    p.add_argument("--input", "-i", help="input stage folder (default: the recipe's run dir)")
    p.add_argument("--output", "-o", help=f"output folder (default: RUN_DIR/{stage})")
    p.add_argument("--force", action="store_true", help="rerun even if a finished run with the same config exists")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=f"dotted overrides, e.g. {stage}.n=4")
    for flag, (key, kind, text) in (flags or {}).items():
        p.add_argument(flag, type=kind, dest=f"flag_{key}", help=f"{text} (same as {key}=...)")
    return p


def stage_main(
    stage: str,
    config_cls: type,
    run: Callable[[Any, Path | None, Path], dict[str, Any]],
    argv: list[str] | None,
    doc: str | None = None,
    flags: dict[str, tuple[str, type, str]] | None = None,
) -> int:
    """Parse the common arguments, load the recipe section, run the stage; user errors exit 2 with one line.

    `flags` maps stage-specific options to dotted overrides, e.g. {"--limit": ("generate.limit", int, "...")}.
    """
    args = make_parser(stage, doc, flags).parse_intermixed_args(argv)
    setup_logging(args.verbose)
    overrides = list(args.overrides)
    for key in (flags or {}).values():
        value = getattr(args, f"flag_{key[0]}")
        if value is not None:
            overrides.append(f"{key[0]}={value}")
    try:
        recipe = load_recipe(args.config, overrides)
        cfg = recipe.section(stage, config_cls)
        input_dir, output_dir = resolve_dirs(recipe, stage, args.input, args.output)
        if not args.force and is_done(output_dir, cfg, input_dir):
            log.info("%s: finished earlier with this config and input; nothing to do (--force reruns)", output_dir)
        elif "force" in inspect.signature(run).parameters:
            run(cfg, input_dir, output_dir, force=args.force)
        else:
            run(cfg, input_dir, output_dir)
    except StageError as e:
        print(f"r1distill {stage}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"r1distill {stage}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    return 0


def upstream(recipe: Recipe, stage: str) -> str | None:
    """The run-dir folder a stage reads; a stage module may choose it with `upstream(recipe)` (evaluate: the student,
    RUN_DIR/rl when the recipe has rl, else RUN_DIR/sft)."""
    hook = getattr(stage_module(stage), "upstream", None)
    return hook(recipe) if hook else UPSTREAM.get(stage)


def resolve_dirs(recipe: Recipe, stage: str, input_dir: str | None, output_dir: str | None) -> tuple[Path | None, Path]:
    up = upstream(recipe, stage)
    inp = Path(input_dir) if input_dir else (recipe.run_dir / up if up else None)
    out = Path(output_dir) if output_dir else recipe.run_dir / stage
    return inp, out
