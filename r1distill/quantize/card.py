"""The quantized model's card: what was compressed, with which scheme, calibrated on what (named by reference: the
dataset's name and hashes, never a path of the machine it ran on)."""

from __future__ import annotations

import json
from typing import Any


def model_card(
    name: str,
    base_model: str,
    scheme: str,
    recipe: str | dict | None,
    calibration: dict[str, Any],
    stats: dict[str, Any],
    config: dict[str, Any],
) -> str:
    """Markdown with Hub front matter; `recipe` (the llmcompressor recipe given instead of a scheme) is quoted."""
    front = {
        "base_model": base_model if "/" in base_model and not base_model.startswith(("/", ".")) else None,
        "library_name": "transformers",
        "tags": ["r1distill", "reasoning", "compressed-tensors", "llmcompressor", scheme.lower()],
    }
    lines = ["---", *(f"{k}: {json.dumps(v)}" for k, v in front.items() if v is not None), "---", ""]
    mib = 2**20
    data = calibration["dataset"]
    hashes = ", ".join(f"{k} `{v[:16]}`" for k, v in calibration.items() if k.endswith("sha256") and v)
    lines += [
        f"# {name}: {scheme} (compressed-tensors)",
        "",
        f"The r1distill student `{name}` (trained from `{base_model}`), compressed with llmcompressor's "
        + (f"`{scheme}` preset" if scheme != "recipe" else "recipe below")
        + ". vLLM loads this folder as it is (`vllm serve` / `LLM(model=...)`, the scheme is read from config.json).",
        "",
        f"- scheme: `{scheme}`; targets `{config['targets']}`, left unquantized: `{config['ignore']}` and the "
        f"embeddings ({config['dtype']})",
        f"- calibration: {calibration['rows']} of the {calibration['of']} `{calibration['split']}` rows of `{data}`"
        + (f" ({hashes})" if hashes else "")
        + f", sampled with seed {calibration['seed']}, rendered with the student's chat template, at most "
        f"{calibration['max_length']} tokens each: the distilled traces the student was trained on",
        f"- size on disk: {stats['size_bytes'] / mib:.1f} MiB (the full student's folder: "
        f"{stats['full_size_bytes'] / mib:.1f} MiB)",
        "",
    ]
    if scheme == "recipe":
        body = recipe if isinstance(recipe, str) else json.dumps(recipe, indent=2)
        lines += ["## llmcompressor recipe", "", "```yaml", body.rstrip(), "```", ""]
    cfg = {k: v for k, v in config.items() if k != "model"}
    lines += ["## r1distill quantize config", "", "```json", json.dumps(cfg, indent=2, sort_keys=True), "```", ""]
    return "\n".join(lines)
