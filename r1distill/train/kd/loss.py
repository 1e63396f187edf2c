"""The distillation loss: L = a * T^2 * KL(teacher_T || student_T) + (1 - a) * CE(y, student), per assistant token.

Pure tensor functions, so the unit tests exercise exactly what the trainer runs. The teacher is given either as
full logits (online, `full_kl`) or as its top-k (id, logprob) pairs at temperature 1 (offline sidecars, or an
online teacher cut to k: `topk_kl`). Two ways to treat the mass the top-k leave out:

- `tail` (default): the teacher's top-k probabilities plus one bucket holding the rest, against the student's
  probabilities of the same k tokens plus the student's own rest. It is the exact KL of the two distributions
  coarsened to k + 1 outcomes (a lower bound on the full KL, equal to it when k covers the vocabulary), it uses the
  teacher's probabilities as given, and it does not teach the student that every token outside the top-k is
  impossible, which keeps the student's spread (sampling diversity matters for pass@k and for RL after SFT).
- `renormalize`: the top-k rescaled to sum to one, against the student's full distribution; it pushes all of the
  student's mass onto the teacher's top-k (the tail counts as zero).

The temperature divides log-probabilities, which is the same as dividing logits (they differ by a constant per
position). In `tail` mode it is applied to the k + 1 buckets on both sides alike, exact when k is the vocabulary;
for k smaller than the vocabulary the tail is treated as one token, the only choice without the teacher's full
distribution.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

TAIL = "tail"
RENORMALIZE = "renormalize"
MODES = (TAIL, RENORMALIZE)


def _kl(q_logp: torch.Tensor, p_logp: torch.Tensor) -> torch.Tensor:
    """sum_i q_i (log q_i - log p_i) over the last axis; terms with q_i = 0 count zero (even where p_i = 0)."""
    q = q_logp.exp()
    terms = torch.where(q > 0, q * (q_logp - p_logp), torch.zeros_like(q))
    return terms.sum(-1)


def full_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Per-position KL(softmax(z_t / T) || softmax(z_s / T)) over the whole vocabulary: [n, V] x [n, V] -> [n]."""
    t = torch.log_softmax(teacher_logits.float() / temperature, -1)
    s = torch.log_softmax(student_logits.float() / temperature, -1)
    return _kl(t, s)


def topk_kl(
    student_logits: torch.Tensor,
    top_ids: torch.Tensor,
    top_logprobs: torch.Tensor,
    temperature: float = 1.0,
    mode: str = TAIL,
) -> torch.Tensor:
    """Per-position KL against a teacher known by its top-k: [n, V], [n, k] ids (-1 = absent), [n, k] logprobs at
    temperature 1 (-inf = absent) -> [n]. See the module docstring for the two `mode`s."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    valid = top_ids >= 0
    ids = top_ids.clamp(min=0).long()
    t_lp = top_logprobs.float().masked_fill(~valid, float("-inf"))
    z = student_logits.float()
    if mode == RENORMALIZE:
        q = torch.log_softmax(t_lp / temperature, -1)
        s = torch.log_softmax(z / temperature, -1).gather(-1, ids).masked_fill(~valid, float("-inf"))
        return _kl(q, s)
    s_all = torch.log_softmax(z, -1)
    s_top = s_all.gather(-1, ids).masked_fill(~valid, float("-inf"))
    in_top = torch.zeros_like(z, dtype=torch.bool).scatter_(-1, ids, valid)
    s_tail = torch.logsumexp(s_all.masked_fill(in_top, float("-inf")), -1, keepdim=True)
    # The teacher's rest, from float16 logprobs: clamped at zero where rounding pushes the top-k sum past one, and
    # zero where the student has no rest either (k covers the vocabulary).
    t_mass = t_lp.exp().sum(-1, keepdim=True)
    t_tail = torch.log((1 - t_mass).clamp(min=0)).masked_fill(torch.isneginf(s_tail), float("-inf"))
    q = torch.log_softmax(torch.cat([t_lp, t_tail], -1) / temperature, -1)
    s = torch.log_softmax(torch.cat([s_top, s_tail], -1) / temperature, -1)
    return _kl(q, s)


@dataclass
class Losses:
    """The mixed loss that is back-propagated and its two parts (both already divided by the token count)."""

    loss: torch.Tensor
    hard: torch.Tensor
    soft: torch.Tensor


def mix(
    hard_per_token: torch.Tensor,
    kl_per_token: torch.Tensor,
    alpha: float,
    temperature: float,
    num_tokens: torch.Tensor | int,
) -> Losses:
    """a * T^2 * sum(KL) / N + (1 - a) * sum(CE) / N.

    N counts the label tokens (TRL's normalisation, so that `alpha = 0` is exactly the sft loss, and gradient
    accumulation sees the same divisor for both parts); tokens without teacher data add no KL.
    """
    n = torch.as_tensor(num_tokens, device=hard_per_token.device).clamp(min=1)
    hard = hard_per_token.sum() / n
    soft = temperature**2 * kl_per_token.sum() / n
    # a = 0 or 1 leaves the other part out entirely (0 * inf would be nan, and a = 0 must equal plain sft)
    loss = hard if alpha == 0 else soft if alpha == 1 else alpha * soft + (1 - alpha) * hard
    return Losses(loss, hard, soft)
