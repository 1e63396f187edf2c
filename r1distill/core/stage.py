"""The one stage lifecycle: every stage is a `Stage` subclass that implements only its own work.

The base owns what each stage used to redo by hand, in this order::

    validate(cfg)           offline checks (also what `r1distill run --dry-run` runs)
    input check             the upstream folder is finished and its shards still match its manifest (rows, bytes)
    done?                   a finished run of this very config on this very input is reused unless forced
    prepare(...)            checks that read the input or the config's sources, before the output is touched
    lock + clear manifest   one process per output folder; an output being rewritten never looks finished
    work(...)               the stage's own work; returns the manifest body
    manifest                header + body + each shard's rows/bytes/sha256, written last, atomically
    summary line            one line a person reads

`main(argv)` is the command line (`r1distill <stage>` and `python -m r1distill.<stage>`): user errors (bad config,
bad input, an unwritable or full output folder) exit 2 with one line naming the file, line, field or key.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from r1distill import __version__
from r1distill.core.config import Recipe, config_hash, load_recipe
from r1distill.core.registry import stage_module
from r1distill.core.store import (
    StageError,
    check_shards,
    clear_manifest,
    locked,
    manifest_hash,
    read_manifest,
    require_complete,
    write_manifest,
)

log = logging.getLogger("r1distill")


@dataclass(frozen=True)
class Flag:
    """A stage's own command-line option, standing for a dotted recipe override (`--limit 8` = `generate.limit=8`)."""

    key: str
    type: type
    help: str
    metavar: str | None = None


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


def output_error(e: OSError, folder: Path) -> StageError:
    """An OSError met while writing a stage's output, as one line naming the path and what to do."""
    where = e.filename or folder
    if e.errno == errno.ENOSPC:
        return StageError(f"{where}: no space left on the device holding {folder}; free some and rerun to resume")
    if e.errno == errno.EROFS:
        return StageError(f"{where}: read-only file system; pass an --output on a writable disk")
    if e.errno in (errno.EEXIST, errno.ENOTDIR):
        return StageError(f"{where}: a file stands where a folder is needed; pass another --output or move it")
    if e.errno in (errno.EACCES, errno.EPERM):
        return StageError(f"{where}: permission denied; pass an --output you can write to")
    return StageError(f"{where}: {e.strerror or e}")


class Stage:
    """Base of every pipeline stage. A subclass sets `name`, `Config` and `upstream`, and implements `work`.

    `upstream` names the stage whose finished folder is the default input (RUN_DIR/<upstream>); None means the stage
    reads what its config names (generate's prompt sources). `distributed` stages (training) run `work` on every rank,
    while rank 0 alone takes the lock and writes the manifest.
    """

    name: ClassVar[str]
    Config: ClassVar[type]
    upstream: ClassVar[str | None] = None
    needs_input: ClassVar[bool] = True
    distributed: ClassVar[bool] = False
    input_key: ClassVar[str | None] = None  # a key of the stage's section that names its input instead (sft.dataset)
    flags: ClassVar[dict[str, Flag]] = {}

    # --- what a stage may override -------------------------------------------------------------------------------
    def validate(self, cfg: Any) -> None:
        """Checks that need no model, data or network (also `r1distill run --dry-run`); raise ConfigError/StageError."""

    def describe(self, cfg: Any, inp: Path | None, recipe: Recipe) -> list[tuple[str, str]]:
        """(label, text) lines for the dry-run plan: models, data, resources."""
        return []

    def input_stage(self, recipe: Recipe) -> str | None:
        """The run-dir folder this stage reads in `recipe`: none when its section names the input (`input_key`)."""
        section = recipe.data.get(self.name) or {}
        if self.input_key and isinstance(section, dict) and section.get(self.input_key):
            return None
        return self.upstream

    def output_dir(self, cfg: Any, output_dir: Path) -> Path:
        """Where this config writes, given the folder asked for (generate: a shard's own subfolder)."""
        return output_dir

    def prepare(self, cfg: Any, input_dir: Path | None, output_dir: Path, **kw: Any) -> Any:
        """Checks and loading that read the input or the config's sources, before the output folder is touched
        (`kw`: what the caller handed `run`, e.g. a running engine whose limits the checks can use)."""
        return None

    def work(self, cfg: Any, input_dir: Path | None, output_dir: Path, prepared: Any, **kw: Any) -> dict | None:
        """The stage's own work, inside the lock. Returns the manifest body (None: nothing to record, e.g. on a
        non-zero rank)."""
        raise NotImplementedError

    def summary(self, manifest: dict[str, Any]) -> str:
        """One line a person reads at the end of a run."""
        return json.dumps(manifest.get("counts", {}))

    def is_main_process(self) -> bool:
        # Read before the process group exists (the trainer opens it, see train/common.trainer_args): the launcher's
        # RANK is then the only safe source; asking accelerate here would open the group too early.
        return not self.distributed or int(os.environ.get("RANK", "0")) == 0

    # --- the lifecycle -----------------------------------------------------------------------------------------
    def run(
        self, cfg: Any, input_dir: str | Path | None, output_dir: str | Path, force: bool = False, **kw: Any
    ) -> dict[str, Any]:
        """Run the stage unless a finished run of the same config and input is there (`force` reruns); returns the
        manifest ({} on a rank that writes none). `kw` goes to `work` (e.g. a running engine to reuse)."""
        self.validate(cfg)
        input_dir = Path(input_dir) if input_dir is not None else None
        output_dir = self.output_dir(cfg, Path(output_dir))
        if input_dir is None and self.needs_input:
            raise StageError(f"{self.name}: no input folder; pass --input or run {self.upstream} first")
        if input_dir is not None and self.upstream:
            check_input(input_dir, self.upstream)
        if not force and is_done(output_dir, cfg, input_dir):
            log.info("%s: %s finished earlier with this config and input; nothing to do", self.name, output_dir)
            return read_manifest(output_dir) or {}
        main = self.is_main_process()
        try:
            prepared = self.prepare(cfg, input_dir, output_dir, **kw)
            with locked(output_dir, enabled=main):
                if main:
                    clear_manifest(output_dir)
                body = self.work(cfg, input_dir, output_dir, prepared, force=force, **kw)
                if body is None or not main:
                    return {}
                manifest = write_manifest(output_dir, {**header(self.name, cfg, input_dir), **body})
        except OSError as e:
            raise output_error(e, output_dir) from None
        log.info("%s: %s -> %s", self.name, self.summary(manifest), output_dir)
        return manifest

    def resolve_dirs(self, recipe: Recipe, input_dir: str | None, output_dir: str | None) -> tuple[Path | None, Path]:
        up = self.input_stage(recipe)
        inp = Path(input_dir) if input_dir else (recipe.run_dir / up if up else None)
        out = Path(output_dir) if output_dir else recipe.run_dir / self.name
        return inp, out

    def parser(self, doc: str | None) -> argparse.ArgumentParser:
        p = argparse.ArgumentParser(prog=f"r1distill {self.name}", description=(doc or "").strip().splitlines()[0])
        p.add_argument("--config", "-c", required=True, metavar="RECIPE", help=f"recipe YAML ('{self.name}:' section)")
        p.add_argument("--input", "-i", metavar="DIR", help="input stage folder (default: in the recipe's run dir)")
        p.add_argument("--output", "-o", metavar="DIR", help=f"output folder (default: RUN_DIR/{self.name})")
        p.add_argument("--force", action="store_true", help="rerun even if a finished run with the same config exists")
        p.add_argument("-v", "--verbose", action="store_true")
        p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=f"dotted overrides, e.g. {self.name}.seed=1")
        for flag, f in self.flags.items():
            p.add_argument(
                flag, type=f.type, dest=_dest(f.key), metavar=f.metavar or f.key.rsplit(".", 1)[-1].upper(),
                help=f"{f.help} (same as {f.key}=...)",
            )  # fmt: skip
        return p

    def main(self, argv: list[str] | None = None, doc: str | None = None) -> int:
        """The command line: parse, load the recipe section, run; user errors exit 2 with one line."""
        args = self.parser(doc or sys.modules[type(self).__module__].__doc__).parse_intermixed_args(argv)
        setup_logging(args.verbose)
        return self.cli(args.config, flag_overrides(self.flags, args), args.input, args.output, args.force)

    def cli(
        self, config: str | Path | dict, overrides: list[str], inp: str | None, out: str | None, force: bool
    ) -> int:
        try:
            recipe = load_recipe(config, overrides)
            cfg = recipe.section(self.name, self.Config)
            input_dir, output_dir = self.resolve_dirs(recipe, inp, out)
            self.run(cfg, input_dir, output_dir, force=force)
        except StageError as e:
            print(f"r1distill {self.name}: error: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"r1distill {self.name}: interrupted; rerun the same command to resume", file=sys.stderr)
            return 130
        return 0


def _dest(key: str) -> str:
    return "flag_" + key.replace(".", "__")


def flag_overrides(flags: dict[str, Flag], args: argparse.Namespace) -> list[str]:
    """The dotted overrides: the positional KEY=VALUE ones, then one per stage flag given."""
    out = list(args.overrides)
    for f in flags.values():
        value = getattr(args, _dest(f.key))
        if value is not None:
            out.append(f"{f.key}={value}")
    return out


def check_input(input_dir: Path, stage: str) -> dict[str, Any]:
    """The upstream folder's manifest, after checking it finished and that its shards are still what it recorded."""
    manifest = require_complete(input_dir, stage)
    check_shards(input_dir, manifest, stage)
    return manifest


def get(stage: str) -> Stage:
    """The registered stage object (each stage module exposes it as `STAGE`)."""
    return stage_module(stage).STAGE


def resolve_dirs(recipe: Recipe, stage: str, input_dir: str | None, output_dir: str | None) -> tuple[Path | None, Path]:
    return get(stage).resolve_dirs(recipe, input_dir, output_dir)
