"""`r1distill <stage> ...`: one entry point; each stage's module owns its own arguments."""

from __future__ import annotations

import importlib
import sys

from r1distill.core.registry import STAGES

# Commands that are not stages of the pipeline (those come from the registry, in pipeline order).
TOOLS = {
    "run": "r1distill.pipeline.run",
    "submit": "r1distill.cluster.submit",
    "report": "r1distill.report.page",
}
# One line of help per command; the order shown is the pipeline's (the registry's), then the tools.
HELP = {
    "generate": "teacher writes <think> answers to prompts (vLLM)",
    "verify": "grade each answer against its reference; rejection sampling",
    "filter": "R1 rules, dedup and decontamination; every drop explained",
    "build": "turn kept samples into a chat-format SFT dataset with a card",
    "publish": "push a built dataset to the Hugging Face Hub",
    "sft": "fine-tune a student with TRL (+ DeepSpeed, LoRA, soft labels)",
    "distill": "on-policy distillation: the student samples, the teacher scores its tokens",
    "rl": "GRPO with the verifiers as rewards",
    "quantize": "compress the student with llmcompressor (W8A8, W4A16, FP8) for vLLM",
    "evaluate": "pass@1 / cons@k with confidence intervals on benchmarks",
    "run": "run every stage of a recipe in order, skipping finished ones",
    "submit": "render and submit a stage as a Slurm job",
    "report": "one HTML page per run: funnel, lengths, training curves, eval vs published",
}


COMMANDS = {name: HELP.get(name, "") for name in [*STAGES, *TOOLS]}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: r1distill <command> [options]   (r1distill <command> --help for its options)", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, text in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"r1distill: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        return 2
    return importlib.import_module(STAGES.get(command) or TOOLS[command]).main(rest)


if __name__ == "__main__":
    sys.exit(main())
