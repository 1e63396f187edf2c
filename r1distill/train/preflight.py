"""Chat-template preflight for SFT: render a real row the way TRL will and check what the student is trained on.

Reasoning distillation fails silently when the template is wrong: a template that strips `<think>` trains answers
without reasoning; one whose assistant mask misses the end-of-turn token, or whose EOS is not the token turns end
with, or that pads with EOS, yields a student that never stops. The loss curve looks healthy in every case. So before
any step, one row goes through the exact call TRL's `assistant_only_loss` makes (`apply_chat_template(...,
return_assistant_tokens_mask=True)`, trl/trainer/sft_trainer.py `tokenize_fn`), and each problem is reported as one
line naming the recipe field to change.

Templates live in `r1distill/train/templates/*.jinja` and recipes name them (`sft.chat_template: chatml_think`).
"""

from __future__ import annotations

import copy
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from r1distill.core.config import ConfigError
from r1distill.core.store import StageError

log = logging.getLogger(__name__)

TEMPLATES_DIR = Path(__file__).parent / "templates"
_MARKER = re.compile(r"\{%-?\s*generation\s*-?%\}")
_COMMENT = re.compile(r"\{#.*?#\}", re.S)
# Tokens that serve as padding in common students' vocabularies (Qwen, SmolLM, Llama-3.1, generic), best first.
_PAD_CANDIDATES = ("<|endoftext|>", "<|finetune_right_pad_id|>", "<|fim_pad|>", "<|pad|>", "<pad>", "[PAD]")


def template_names() -> list[str]:
    return sorted(p.stem for p in TEMPLATES_DIR.glob("*.jinja"))


def template_path(name: str, where: str = "sft.chat_template") -> Path:
    """The shipped `.jinja` file for a template name (also usable as TRL's `chat_template_path`)."""
    path = TEMPLATES_DIR / f"{name}.jinja"
    if not path.exists():
        raise ConfigError(f"{where}: unknown chat template {name!r}; shipped: {', '.join(template_names())}")
    return path


def load_template(name: str, where: str = "sft.chat_template") -> str:
    return template_path(name, where).read_text(encoding="utf-8")


def has_generation_markers(template: str | dict | None) -> bool:
    """Whether a template marks assistant output with `{% generation %}` (jinja comments ignored)."""
    if isinstance(template, dict):
        template = template.get("default")
    return bool(template) and _MARKER.search(_COMMENT.sub("", template)) is not None


def _family(template: str, vocab: dict[str, int]) -> str | None:
    """The shipped think template matching a marker-less template's turn format, when its tokens exist."""
    if "<|im_start|>" in template and {"<|im_start|>", "<|im_end|>"} <= vocab.keys():
        return "qwen2_5_think" if "You are Qwen, created by Alibaba Cloud" in template else "chatml_think"
    if "<|start_header_id|>" in template and {"<|start_header_id|>", "<|eot_id|>"} <= vocab.keys():
        return "llama3_think"
    return None


def prepare_tokenizer(tokenizer: Any, template_name: str | None, where: str = "sft.chat_template") -> Any:
    """The tokenizer with a chat template TRL's assistant-only loss can use (changed in place and returned).

    A named template always wins. Otherwise the model's own is kept when it has generation markers; a missing one
    gets chatml_think (llama3_think for a Llama-3 vocabulary); a marker-less ChatML or Llama-3 one is swapped for the
    matching think template, and one TRL ships a training variant of gets that; anything else is refused.
    """
    if template_name:
        tokenizer.chat_template = load_template(template_name, where)
        log.info("%s: using the shipped template %r", where, template_name)
        return tokenizer
    current = tokenizer.chat_template
    if isinstance(current, dict):
        current = current.get("default")
    vocab = tokenizer.get_vocab()
    if not current:
        name = "llama3_think" if "<|start_header_id|>" in vocab else "chatml_think"
        tokenizer.chat_template = load_template(name, where)
        log.info("%s: the model has no chat template; using the shipped %r", where, name)
        return tokenizer
    if has_generation_markers(current):
        return tokenizer
    name = _family(current, vocab)
    if name:
        tokenizer.chat_template = load_template(name, where)
        log.warning(
            "%s: the model's chat template has no {%% generation %%} markers, which assistant-only loss needs; "
            "replaced by the shipped %r (same turn format). Set `%s: %s` to make this explicit",
            where,
            name,
            where,
            name,
        )
        return tokenizer
    training = _trl_training_template(tokenizer)
    if training:
        tokenizer.chat_template = training
        log.warning("%s: the model's chat template has no generation markers; using TRL's training variant", where)
        return tokenizer
    stage = where.split(".")[0]
    raise ConfigError(
        f"{where}: the model's chat template has no {{% generation %}} markers, so the assistant-only loss cannot "
        f"find the assistant turn, and it is neither ChatML nor Llama-3. Set `{where}: chatml_think` (or another of "
        f"{', '.join(template_names())}), or wrap the assistant content and its end-of-turn token in "
        "{% generation %}...{% endgeneration %} in the model's template, or set "
        f"`{stage}.trl.assistant_only_loss: false` to train on every token"
    )


def _trl_training_template(tokenizer: Any) -> str | None:
    """TRL's own substitute for a known marker-less template (the one SFTTrainer swaps in), or None."""
    from trl.chat_template_utils import get_training_chat_template

    try:
        return get_training_chat_template(tokenizer)
    except ValueError:
        return None


@dataclass
class Preflight:
    """What the preflight found on one row: `problems` stop training, `warnings` are logged."""

    where: str
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    facts: list[tuple[str, str]] = field(default_factory=list)
    input_ids: list[int] = field(default_factory=list)
    assistant_mask: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        state = "PASS" if self.ok else f"FAIL ({len(self.problems)} problem(s))"
        lines = [f"{self.where} chat-template preflight: {state}"]
        lines += [f"  {what:<13} {value}" for what, value in self.facts]
        lines += [f"  PROBLEM: {p}" for p in self.problems] + [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    def raise_if_failed(self) -> None:
        for w in self.warnings:
            log.warning("%s", w)
        if self.problems:
            raise StageError(f"{self.where} preflight failed:\n  - " + "\n  - ".join(self.problems))


def _eos_ids(generation_config: Any) -> list[int]:
    ids = getattr(generation_config, "eos_token_id", None)
    return [] if ids is None else [ids] if isinstance(ids, int) else list(ids)


def _short(text: str, n: int = 60) -> str:
    return repr(text) if len(text) <= 2 * n else f"{text[:n]!r} ... {text[-n:]!r}"


def suggest_pad(tokenizer: Any, avoid: set[int]) -> str | None:
    """A token of this vocabulary that can pad without being EOS or end of turn."""
    vocab = tokenizer.get_vocab()
    for tok in _PAD_CANDIDATES:
        if tok in vocab and vocab[tok] not in avoid:
            return tok
    for tok, i in sorted(tokenizer.get_added_vocab().items(), key=lambda kv: kv[1]):
        if i not in avoid and ("pad" in tok.lower() or "reserved" in tok.lower()):
            return tok
    return None


def check(
    tokenizer: Any,
    messages: list[dict[str, Any]],
    pad_token: str | None = None,
    eos_token: str | None = None,
    generation_config: Any = None,
    max_length: int | None = None,
    where: str = "sft",
) -> Preflight:
    """Render `messages` (a dataset row ending with the assistant turn) as TRL does and check what is trained.

    `pad_token`, `eos_token` and `max_length` are the SFTConfig values (None = TRL's defaults: the tokenizer's pad,
    else its EOS); the tokenizer is not changed. Checks: the last `<think>` block survives; the assistant mask covers
    the whole last assistant turn and its end-of-turn token and no prompt token; that token is the EOS (or in
    `generation_config`'s EOS ids); padding is not EOS; the generation config stops on EOS; the row fits max_length.
    """
    from trl.chat_template_utils import has_generation_markers as trl_has_markers

    report = Preflight(where)
    add, warn, fact = report.problems.append, report.warnings.append, report.facts.append
    if not messages or not all(isinstance(m, dict) and "role" in m and "content" in m for m in messages):
        add(f"{where}: the row's `messages` must be a list of {{role, content}} turns")
        return report
    if messages[-1]["role"] != "assistant":
        add(f"{where}: the row's last turn is {messages[-1]['role']!r}; SFT rows end with the assistant turn")
        return report

    # What SFTTrainer does: keep a template with markers, else swap in TRL's training variant (or fail).
    template = tokenizer.chat_template
    chat_template = None
    if not template or not trl_has_markers(template):
        chat_template = _trl_training_template(tokenizer) if template else None
        if chat_template is None:
            add(
                f"{where}.chat_template: the template has no {{% generation %}} markers, so TRL cannot mask the "
                f"assistant turn; set `{where}.chat_template: chatml_think` (shipped: {', '.join(template_names())})"
            )
            return report
    fact(("template", "TRL's training variant" if chat_template else _template_name(template)))
    kwargs = {"chat_template": chat_template, "tools": None}
    try:
        enc = tokenizer.apply_chat_template(
            messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True, **kwargs
        )
        text = tokenizer.apply_chat_template(messages, tokenize=False, **kwargs)
    except Exception as e:  # jinja raises its own error types, e.g. for a role the template rejects
        add(f"{where}.chat_template: the template fails on this row: {e}")
        return report
    ids, mask = list(enc["input_ids"]), list(enc["assistant_masks"])
    report.input_ids, report.assistant_mask = ids, mask
    trained = [i for i, m in enumerate(mask) if m]
    fact(("row", f"{len(ids)} tokens, {len(trained)} in the assistant mask"))

    content = messages[-1]["content"]
    _check_reasoning(content, text, where, report)
    if not trained:
        add(
            f"{where}.chat_template: no token is in the assistant mask (TRL refuses such a row); the generation "
            "markers must wrap the assistant content"
        )
        return report
    fact(("trained", _short(tokenizer.decode([ids[i] for i in trained]))))
    spans = [enc.token_to_chars(i) for i in range(len(ids))]
    _check_mask(messages, text, spans, mask, tokenizer, ids, where, report)

    ends = _check_eos(tokenizer, ids, trained, eos_token, generation_config, where, report)
    if ends is None:
        return report
    # TRL pads with SFTConfig.pad_token, else the tokenizer's pad token, else its EOS.
    pad = pad_token or tokenizer.pad_token or eos_token or tokenizer.eos_token
    _check_pad(tokenizer, pad, ends, {ids[i] for i in trained}, where, report)
    if max_length is not None and len(ids) > max_length:
        warn(
            f"{where}.trl.max_length={max_length}: this row has {len(ids)} tokens; TRL truncates it and its end "
            "(answer and EOS) is never trained. Raise max_length or drop longer rows"
        )
    return report


def _check_eos(tokenizer, ids, trained, eos_token, generation_config, where: str, report: Preflight) -> set[int] | None:
    """The end-of-turn token is trained and stops generation; returns {EOS id, end-of-turn id} for the pad check."""
    add, warn, fact = report.problems.append, report.warnings.append, report.facts.append
    # The token the student learns to end its turn with: TRL's rule, the last masked non-blank token.
    end_id = next((ids[i] for i in reversed(trained) if tokenizer.decode([ids[i]]).strip()), ids[trained[-1]])
    end = tokenizer.convert_ids_to_tokens(end_id)
    vocab = tokenizer.get_vocab()
    if eos_token is not None and eos_token not in vocab:
        add(f"{where}.trl.eos_token: {eos_token!r} is not in the tokenizer's vocabulary")
        return None
    eos_id = vocab[eos_token] if eos_token is not None else tokenizer.eos_token_id
    gen_eos = _eos_ids(generation_config)
    if eos_token is not None and generation_config is not None and eos_id not in gen_eos:
        gen_eos = [eos_id, *gen_eos]  # SFTTrainer adds SFTConfig.eos_token to the generation config
    eos = tokenizer.convert_ids_to_tokens(eos_id)
    fact(("end of turn", f"{end!r} (id {end_id}); tokenizer EOS {eos!r} (id {eos_id})"))
    if end_id not in set(tokenizer.get_added_vocab().values()):
        add(
            f"{where}.chat_template: the assistant mask ends on content ({end!r}), so the end-of-turn token is never "
            "trained and the student will not stop; put it inside {% generation %}...{% endgeneration %}"
        )
    elif end_id != eos_id:
        msg = (
            f"{where}.trl.eos_token: assistant turns end with {end!r} (id {end_id}) but the tokenizer's EOS is "
            f"{eos!r} (id {eos_id}); set `{where}.trl.eos_token: {end!r}`"
        )
        if end_id in gen_eos:
            warn(msg + " (generation_config stops on it, so generation still ends)")
        else:
            add(msg + ": nothing stops generation where the student learns to end")
    if generation_config is not None:
        fact(("gen. config", f"eos_token_id {gen_eos}"))
        if eos_id not in gen_eos and end_id == eos_id:
            warn(
                f"{where}: generation_config.json eos_token_id {gen_eos} lacks the EOS {end!r} (id {end_id}) that "
                "assistant turns end with; the saved student needs it added (preflight.fix_generation_config)"
            )
    return {eos_id, end_id}


def _template_name(template: str) -> str:
    for name in template_names():
        if load_template(name) == template:
            return f"{name} (shipped)"
    return "the model's own"


def _check_reasoning(content: str, text: str, where: str, report: Preflight) -> None:
    if "</think>" not in content:
        report.warnings.append(f"{where}: the row's assistant turn has no </think>; reasoning survival not checked")
    else:
        head = content[: content.index("</think>") + len("</think>")]
        block = head[head.find("<think>") :] if "<think>" in head else head
        if block not in text:
            report.problems.append(
                f"{where}.chat_template: the template drops the <think> block of the last assistant turn, so the "
                f"student would learn answers without reasoning; set `{where}.chat_template: chatml_think` (or "
                "llama3_think), whose last turn keeps it"
            )
            return
        report.facts.append(("reasoning", f"<think> block kept ({len(block)} chars)"))
    if content.strip() not in text:
        report.problems.append(
            f"{where}.chat_template: the template rewrites the last assistant turn (its text is not in the rendered "
            "row), so the student trains on something else than the teacher wrote"
        )


def _check_mask(messages, text, spans, mask, tokenizer, ids, where: str, report: Preflight) -> None:
    """Every token of the last assistant turn is masked in; no token of a system/user turn is."""

    def tokens_in(start: int, end: int) -> list[int]:
        return [i for i, s in enumerate(spans) if s is not None and s.start < end and s.end > start]

    cursor = 0
    for m in messages[:-1]:
        pos = text.find(m["content"], cursor) if m["content"] else -1
        if pos < 0:
            continue
        cursor = pos + len(m["content"])
        if m["role"] != "assistant":
            leaked = [i for i in tokens_in(pos, cursor) if mask[i]]
            if leaked:
                report.problems.append(
                    f"{where}.chat_template: the assistant mask covers {len(leaked)} token(s) of the {m['role']} "
                    f"turn ({_short(tokenizer.decode([ids[i] for i in leaked]), 30)}), so the student is trained to "
                    "write the prompt; the generation markers must wrap only the assistant turn"
                )
    content = messages[-1]["content"].strip()
    pos = text.rfind(content)
    if pos < 0 or not content:
        return
    missed = [i for i in tokens_in(pos, pos + len(content)) if not mask[i]]
    if missed:
        report.problems.append(
            f"{where}.chat_template: {len(missed)} token(s) of the last assistant turn are outside the assistant mask "
            f"({_short(tokenizer.decode([ids[i] for i in missed]), 30)}); the generation markers must wrap it all"
        )


def _check_pad(tokenizer, pad: str, eos_ids: set[int], trained_ids: set[int], where: str, report: Preflight) -> None:
    vocab = tokenizer.get_vocab()
    if pad not in vocab:
        report.problems.append(f"{where}.trl.pad_token: {pad!r} is not in the tokenizer's vocabulary")
        return
    pad_id = vocab[pad]
    report.facts.append(("pad", f"{pad!r} (id {pad_id})"))
    if pad_id in eos_ids or pad_id in trained_ids:
        fix = suggest_pad(tokenizer, eos_ids | trained_ids)
        how = f"set `{where}.trl.pad_token: {fix!r}`" if fix else "add a pad token to the tokenizer"
        what = "is the EOS / end-of-turn token" if pad_id in eos_ids else "occurs in the trained tokens"
        report.problems.append(
            f"{where}.trl.pad_token: the pad token {pad!r} {what}; collators that mask padding then drop it from the "
            f"loss too and the student never learns to stop; {how}"
        )


def fix_generation_config(generation_config: Any, tokenizer: Any) -> Any:
    """`generation_config` itself when its EOS ids include the tokenizer's EOS, else a copy with it added first
    (as SFTTrainer does for `eos_token`), so generation stops where the student learned to end its turn."""
    eos = tokenizer.eos_token_id
    ids = _eos_ids(generation_config)
    if eos is None or eos in ids:
        return generation_config
    fixed = copy.deepcopy(generation_config)
    fixed.eos_token_id = [eos, *ids] if ids else eos
    log.info("generation_config: eos_token_id %s -> %s (the tokenizer's EOS)", ids, fixed.eos_token_id)
    return fixed
