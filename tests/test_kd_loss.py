"""The distillation loss (r1distill/train/kd/loss.py) against exact formulas on random logits."""

from __future__ import annotations

import pytest
import torch

from r1distill.core.config import ConfigError
from r1distill.train.kd import parse
from r1distill.train.kd.loss import RENORMALIZE, TAIL, full_kl, mix, topk_kl

V = 50


def logits(n=6, seed=0, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, V, generator=g) * scale


def exact_kl(z_t, z_s, T):
    q = torch.softmax(z_t.double() / T, -1)
    return (q * (q.log() - torch.log_softmax(z_s.double() / T, -1))).sum(-1)


@pytest.mark.parametrize("T", [0.5, 1.0, 2.0, 4.0])
def test_full_kl_is_the_exact_kl(T):
    z_s, z_t = logits(seed=1), logits(seed=2)
    ref = torch.nn.functional.kl_div(
        torch.log_softmax(z_s / T, -1), torch.log_softmax(z_t / T, -1), log_target=True, reduction="none"
    ).sum(-1)
    assert torch.allclose(full_kl(z_s, z_t, T), ref, atol=1e-5)
    assert torch.allclose(full_kl(z_s, z_t, T).double(), exact_kl(z_t, z_s, T), atol=1e-5)


@pytest.mark.parametrize("mode", [TAIL, RENORMALIZE])
@pytest.mark.parametrize("T", [1.0, 2.0, 3.0])
def test_topk_with_the_whole_vocabulary_equals_the_exact_kl(mode, T):
    z_s, z_t = logits(seed=3), logits(seed=4)
    top = torch.log_softmax(z_t, -1).topk(V, -1)  # teacher logprobs at T = 1, as the sidecars hold them
    got = topk_kl(z_s, top.indices, top.values, T, mode)
    assert torch.allclose(got.double(), exact_kl(z_t, z_s, T), atol=1e-4)


def test_tail_is_the_kl_of_the_coarsened_distributions_and_a_lower_bound():
    z_s, z_t = logits(seed=5), logits(seed=6)
    k = 5
    top = torch.log_softmax(z_t, -1).topk(k, -1)
    got = topk_kl(z_s, top.indices, top.values, 1.0, TAIL)
    q, p = torch.softmax(z_t.double(), -1), torch.softmax(z_s.double(), -1)
    qk, pk = q.gather(-1, top.indices), p.gather(-1, top.indices)
    qb = torch.cat([qk, 1 - qk.sum(-1, keepdim=True)], -1)
    pb = torch.cat([pk, 1 - pk.sum(-1, keepdim=True)], -1)
    by_hand = (qb * (qb.log() - pb.log())).sum(-1)
    assert torch.allclose(got.double(), by_hand, atol=1e-5)
    assert bool((got.double() <= exact_kl(z_t, z_s, 1.0) + 1e-6).all())


def test_renormalize_puts_the_whole_teacher_mass_on_its_top_k():
    z_s, z_t = logits(seed=7), logits(seed=8)
    k = 5
    top = torch.log_softmax(z_t, -1).topk(k, -1)
    got = topk_kl(z_s, top.indices, top.values, 2.0, RENORMALIZE)
    q = torch.softmax(top.values.double() / 2.0, -1)
    s = torch.log_softmax(z_s.double() / 2.0, -1).gather(-1, top.indices)
    assert torch.allclose(got.double(), (q * (q.log() - s)).sum(-1), atol=1e-5)


def test_absent_entries_and_float16_sidecars():
    """Sidecar rows with fewer than k entries (-1 / -inf) and float16 logprobs summing past one stay finite."""
    z_s, z_t = logits(seed=9), logits(seed=10, scale=8.0)
    top = torch.log_softmax(z_t, -1).topk(4, -1)
    ids, lp = top.indices.clone(), top.values.half().float()
    ids[0, 2:], lp[0, 2:] = -1, float("-inf")
    for mode in (TAIL, RENORMALIZE):
        got = topk_kl(z_s, ids, lp, 1.5, mode)
        assert torch.isfinite(got).all() and bool((got >= -1e-5).all())
        trimmed = topk_kl(z_s[:1], ids[:1, :2], lp[:1, :2], 1.5, mode)
        assert torch.allclose(got[:1], trimmed, atol=1e-5)  # absent entries change nothing


def test_temperature_scaling():
    """KL at T equals KL of the logits divided by T, and T^2 * KL tends to Hinton's logit-matching limit
    (1 / 2V) * sum((d - mean d)^2), d = z_t - z_s, so the soft gradients keep their size as T grows."""
    z_s, z_t = logits(seed=11), logits(seed=12)
    assert torch.allclose(full_kl(z_s, z_t, 3.0), full_kl(z_s / 3.0, z_t / 3.0, 1.0), atol=1e-6)
    T = 50.0
    d = (z_t - z_s).double()
    limit = ((d - d.mean(-1, keepdim=True)) ** 2).sum(-1) / (2 * V)
    soft = mix(torch.zeros(6), full_kl(z_s, z_t, T), 1.0, T, 6).soft * 6
    assert soft.item() == pytest.approx(limit.sum().item(), rel=1e-2)
    assert (10.0**2 * full_kl(z_s, z_t, 10.0)).sum().item() == pytest.approx(limit.sum().item(), rel=2e-2)


def test_mix_weights_and_alpha_zero_ignores_the_teacher():
    hard, kl = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0.5, 0.5, float("inf")])
    out = mix(hard, kl, 0.0, 2.0, 3)
    assert out.loss.item() == pytest.approx(2.0)  # an infinite KL does not leak into a = 0
    out = mix(hard, torch.tensor([0.5, 0.5, 0.5]), 0.25, 2.0, 4)
    assert out.hard.item() == pytest.approx(6 / 4) and out.soft.item() == pytest.approx(4 * 1.5 / 4)
    assert out.loss.item() == pytest.approx(0.25 * 1.5 + 0.75 * 1.5)


def test_gradients_reach_only_the_student_logits():
    z_s = logits(seed=13).requires_grad_(True)
    z_t = logits(seed=14).requires_grad_(True)
    top = torch.log_softmax(z_t.detach(), -1).topk(8, -1)
    loss = topk_kl(z_s, top.indices, top.values, 2.0).sum() + full_kl(z_s, z_t.detach(), 2.0).sum()
    loss.backward()
    assert z_s.grad is not None and z_s.grad.abs().sum() > 0
    assert z_t.grad is None


@pytest.mark.parametrize(
    ("raw", "field"),
    [({"alpha": 1.5}, "sft.kd.alpha"), ({"temperature": 0}, "sft.kd.temperature"),
     ({"top_k_mode": "x"}, "sft.kd.top_k_mode"), ({"source": "cloud"}, "sft.kd.source"),
     ({"alhpa": 0.5}, "alhpa")],
)  # fmt: skip
def test_bad_settings_name_the_field(raw, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        parse(raw, "sft.kd")
