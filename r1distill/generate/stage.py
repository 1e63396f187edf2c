"""generate: the teacher writes `<think>` answers, n samples per prompt, streamed to disk as each finishes.

    python -m r1distill.generate --config pipelines/quickstart.yaml [generate.n=4 ...]

Resume: rerunning the same command after a crash (even kill -9) generates only the (prompt, k) pairs that are not
on disk yet; every requested sample ends up in the output exactly once. The manifest is written last.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from r1distill.cluster.sharding import link_shards, parse_shard, shard_dir, shard_of
from r1distill.core.config import config_hash
from r1distill.core.models import BUNDLED, resolve_model
from r1distill.core.stage import Flag, Stage, flag_overrides, output_error, setup_logging
from r1distill.core.store import StageError, atomic_write_text, locked
from r1distill.generate.cli import add_source_flags, recipe_without_file, source_from_flags
from r1distill.generate.engines import ENGINES, Engine, make_engine
from r1distill.generate.engines.openai_http import HTTPSettings
from r1distill.generate.plan import Plan, disk_summary, prompt_check, wanted_on_disk
from r1distill.generate.prompts import SourceConfig, scan_prompts
from r1distill.generate.stream import resume_state, stream

log = logging.getLogger(__name__)

# DeepSeek-R1's recommended sampling; the recipe's `sampling:` is merged over it and handed to SamplingParams.
R1_SAMPLING = {"temperature": 0.6, "top_p": 0.95, "max_tokens": 32768}


@dataclass
class GenerateConfig:
    """The recipe's `generate:` section. `vllm` goes to `vllm.LLM(**...)`, `sampling` to `SamplingParams(**...)`."""

    HASH_EXCLUDE = ("max_in_flight", "rows_per_shard", "http", "ray", "shard", "merge_shards")

    sources: list[SourceConfig] = field(default_factory=list)
    model: str = BUNDLED
    engine: str = "vllm"
    n: int = 4
    limit: int | None = None
    system_prompt: str | None = None
    prompt_template: str = "{problem}"
    prefill: str = "<think>\n"
    sampling: dict[str, Any] = field(default_factory=dict)
    vllm: dict[str, Any] = field(default_factory=dict)
    http: HTTPSettings | None = None
    ray: dict[str, Any] | None = None  # engine "ray": address, init kwargs, vLLMEngineProcessorConfig settings
    tokenizer: str | None = None
    seed: int | None = 0
    logprobs: int | None = None  # capture the teacher's top-k logprobs per token into binary sidecars
    max_in_flight: int | None = None
    rows_per_shard: int = 10_000
    shard: str | None = None  # "i/N": generate only this job's share of the prompts (into OUTPUT/shards/i-of-N)
    merge_shards: int | None = None  # N: check all N shards finished and combine them into OUTPUT


Config = GenerateConfig


def sampling_params(cfg: GenerateConfig) -> dict[str, Any]:
    for key in ("n", "seed", "logprobs"):
        if key in cfg.sampling:
            raise StageError(f"generate.sampling.{key}: set generate.{key} instead (samples are drawn one by one)")
    return {**R1_SAMPLING, **cfg.sampling}


def content_hash(cfg: GenerateConfig, model: str) -> str:
    """What decides a sample's text: resuming into a folder made with a different value would mix two teachers."""
    keys = ("engine", "system_prompt", "prompt_template", "prefill", "seed", "vllm", "logprobs")
    return config_hash({"model": model, "sampling": sampling_params(cfg), **{k: getattr(cfg, k) for k in keys}})


def teacher_model(cfg: GenerateConfig) -> str:
    """What the engine is given: the served model name for `openai`, a checked local path or Hub id otherwise."""
    if cfg.engine not in ENGINES:
        raise StageError(f"generate.engine: unknown engine {cfg.engine!r}; available: {', '.join(ENGINES)}")
    if cfg.engine == "openai":
        if cfg.http is None:
            raise StageError("generate.http: the openai engine needs http.base_urls (e.g. http://127.0.0.1:8000/v1)")
        return cfg.model  # served by the endpoint, not loaded here
    return resolve_model(cfg.model)


def start_engine(cfg: GenerateConfig, model: str | None = None) -> Engine:
    """The engine `cfg` names, started; configuration problems become one-line StageErrors."""
    tokenizer = resolve_model(cfg.tokenizer, tokenizer_only=True) if cfg.tokenizer else None
    try:
        return make_engine(
            cfg.engine, model or teacher_model(cfg), cfg.vllm, cfg.http, cfg.max_in_flight, tokenizer, cfg.ray
        )
    except ValueError as e:
        raise StageError(str(e)) from None


def _check_sampling(sampling: dict[str, Any], where: str = "generate") -> None:
    try:
        from vllm import SamplingParams
    except ImportError:
        return
    try:
        SamplingParams(**sampling)
    except TypeError as e:
        raise StageError(f"{where}.sampling: {e} (keys go to vllm.SamplingParams)") from None
    except ValueError as e:
        raise StageError(f"{where}.sampling: {e}") from None


def check_engine(engine: str, http: HTTPSettings | None, sampling: dict[str, Any], where: str) -> None:
    """The engine settings checks that need no model, for `r1distill run --dry-run`. Sampling keys are checked as
    vLLM's SamplingParams for every engine there (what a vLLM server takes too), so a typo shows before the run."""
    if engine not in ENGINES:
        raise StageError(f"{where}.engine: unknown engine {engine!r}; available: {', '.join(ENGINES)}")
    if engine == "openai" and http is None:
        raise StageError(f"{where}.http: the openai engine needs http.base_urls")
    _check_sampling(sampling, where)


def validate(cfg: GenerateConfig) -> None:
    """Checks that need no model and no data (`r1distill run --dry-run`)."""
    check_engine(cfg.engine, cfg.http, sampling_params(cfg), "generate")


@dataclass
class Job:
    """What `prepare` found, before the output folder is touched: the prompts (as a streamable plan) and the
    resolved teacher."""

    plan: Plan
    model: str
    sampling: dict[str, Any]
    chash: str


class GenerateStage(Stage):
    name, Config, upstream, needs_input = "generate", GenerateConfig, None, False
    flags = {
        "--model": Flag("generate.model", str, "teacher: a local HF folder, a Hub id or bundled:smollm2", "MODEL"),
        "--n": Flag("generate.n", int, "samples per prompt", "N"),
        "--limit": Flag("generate.limit", int, "at most this many prompts from each source", "N"),
        "--shard": Flag("generate.shard", str, "generate only shard i of N (e.g. a Slurm array task)", "i/N"),
        "--merge-shards": Flag("generate.merge_shards", int, "check all N shards finished and combine them", "N"),
        "--temperature": Flag("generate.sampling.temperature", float, "sampling temperature (R1: 0.6)", "T"),
        "--top-p": Flag("generate.sampling.top_p", float, "nucleus sampling (R1: 0.95)", "P"),
        "--max-tokens": Flag("generate.sampling.max_tokens", int, "token budget per answer (R1: 32768)", "N"),
        "--engine": Flag("generate.engine", str, "vllm, openai or ray", "NAME"),
    }

    def parser(self, doc: str | None):
        """The stage's parser, plus the flags that describe one prompt source, so that no recipe is needed:
        `python -m r1distill.generate --model M --dataset data.jsonl --problem-field question --n 8 -o out/`."""
        p = super().parser(doc)
        for action in p._actions:
            if action.dest == "config":
                action.required = False
                action.help = "recipe YAML (optional: the flags below describe a run without one)"
        add_source_flags(p)
        return p

    def main(self, argv: list[str] | None = None, doc: str | None = None) -> int:
        args = self.parser(doc or __doc__).parse_intermixed_args(argv)
        setup_logging(args.verbose)
        try:
            overrides = flag_overrides(self.flags, args)
            if args.config is None and not (args.dataset and args.output):
                raise StageError("generate: give --config RECIPE, or --dataset and --output (see --help)")
            config = args.config if args.config is not None else recipe_without_file(args)
            if args.dataset:
                overrides.append("generate.sources=" + json.dumps([source_from_flags(args)]))
        except StageError as e:
            print(f"r1distill generate: error: {e}", file=sys.stderr)
            return 2
        return self.cli(config, overrides, args.input, args.output, args.force)

    def run(self, cfg: GenerateConfig, input_dir, output_dir, force: bool = False, **kw: Any) -> dict[str, Any]:
        """The base lifecycle, after trying the folder's lock first: a second run on a folder in use is refused
        before the checks below import vLLM and read every prompt (which alone took ~50 s)."""
        folder = self.output_dir(cfg, Path(output_dir)) if not (cfg.shard and cfg.merge_shards) else None
        if folder is not None and folder.is_dir():
            try:
                with locked(folder):
                    pass
            except OSError as e:  # a read-only folder, say: the base words it as it would
                raise output_error(e, folder) from None
        return super().run(cfg, input_dir, output_dir, force=force, **kw)

    def validate(self, cfg: GenerateConfig) -> None:
        validate(cfg)
        if cfg.n < 1:
            raise StageError("generate.n: must be at least 1")
        if cfg.shard and cfg.merge_shards:
            raise StageError("generate: give either shard (run one shard) or merge_shards (combine them), not both")

    def describe(self, cfg: GenerateConfig, inp, recipe) -> list[tuple[str, str]]:
        from r1distill.pipeline import describe

        return [
            describe.model_line("teacher", cfg, recipe.run_dir),
            *[("prompts", describe.source_text(src)) for src in cfg.sources],
            ("sampling", f"n={cfg.n}, {describe.sampling_text(cfg.sampling)}"),
            describe.engine_line(cfg, recipe, sharded=True),
        ]

    def output_dir(self, cfg: GenerateConfig, output_dir: Path) -> Path:
        return shard_dir(output_dir, *parse_shard(cfg.shard)) if cfg.shard else output_dir

    def prepare(self, cfg: GenerateConfig, input_dir: Path | None, output_dir: Path, **kw: Any) -> Job:
        """Every prompt read and checked (rows, unique ids, length against the teacher's context) and the teacher
        resolved, so bad input fails before any engine starts; only the prompts' id hashes are kept."""
        model = teacher_model(cfg)
        sampling = sampling_params(cfg)
        if cfg.engine in ("vllm", "ray"):
            _check_sampling(sampling)
        keep = None
        if cfg.shard:
            i, n = parse_shard(cfg.shard)
            keep = lambda p: shard_of(p.source, p.row, n) == i  # noqa: E731
        keys = scan_prompts(cfg.sources, cfg.limit, keep=keep, each=prompt_check(cfg, model, kw.get("engine")))
        return Job(Plan(cfg, keep, keys), model, sampling, content_hash(cfg, model))

    def work(
        self, cfg: GenerateConfig, input_dir, output_dir: Path, job: Job, engine: Engine | None = None, **kw
    ) -> dict[str, Any]:
        """Generate every missing (prompt, k) sample (`engine`: a running one to reuse), then check the folder holds
        exactly the wanted samples. Prompts and requests are streamed: memory follows the engine's window."""
        plan, model, sampling, chash = job.plan, job.model, job.sampling, job.chash
        if cfg.merge_shards:
            shard_manifests = link_shards(output_dir, cfg.merge_shards, chash)
            extra = {
                "merged_shards": cfg.merge_shards,
                "shard_wall_s": [m.get("last_run", {}).get("wall_s") for m in shard_manifests],
            }
            return _finish(cfg, output_dir, model, chash, sampling, plan, extra)
        done = resume_state(output_dir, chash)
        on_disk = wanted_on_disk(output_dir, plan)
        if len(done) > on_disk:
            log.warning(
                "%s: %d samples on disk are not requested by this config; kept", output_dir, len(done) - on_disk
            )
        todo = plan.wanted - on_disk
        log.info("generate: %d prompts x n=%d: %d on disk, %d to go", len(plan.keys), cfg.n, on_disk, todo)
        pairs = plan.pairs(done) if todo else iter(())
        errors, this_run = stream(cfg, engine, model, sampling, pairs, todo, output_dir, on_disk)
        if errors:
            path = output_dir / "errors.jsonl"
            atomic_write_text(path, "".join(json.dumps(e) + "\n" for e in errors))
            raise StageError(f"{len(errors)} requests failed (first: {errors[0]['error']}); see {path}; rerun to retry")
        (output_dir / "errors.jsonl").unlink(missing_ok=True)
        return _finish(cfg, output_dir, model, chash, sampling, plan, {"last_run": this_run})

    def summary(self, manifest: dict[str, Any]) -> str:
        """One line a person reads at the end of a run."""
        s, last = manifest["stats"], manifest.get("last_run", {})
        finish = ", ".join(f"{k} {v}" for k, v in sorted(s["finish_reasons"].items()))
        rate = f", this run {last['output_tok_per_s']:.0f} output tok/s" if last.get("samples") else ""
        return (
            f"{s['samples']} samples ({manifest['counts']['prompts']} prompts x n={manifest['counts']['n']}), "
            f"{s['completion_tokens']} output tokens (mean {s['mean_completion_tokens']}){rate}; finish: {finish}"
        )


def _finish(cfg, output_dir, model, chash, sampling, plan: Plan, extra) -> dict[str, Any]:
    """The manifest body, once the folder is checked to hold exactly the wanted samples."""
    summary = disk_summary(output_dir, plan)
    return {
        "teacher": model,
        "teacher_ref": cfg.model,
        "content_hash": chash,
        "sampling": sampling,
        "counts": {"prompts": len(plan.keys), "n": cfg.n, "samples": summary["samples"]},
        "stats": summary,
        **extra,
    }


STAGE = GenerateStage()
run, main, summary = STAGE.run, STAGE.main, STAGE.summary


if __name__ == "__main__":
    sys.exit(main())
