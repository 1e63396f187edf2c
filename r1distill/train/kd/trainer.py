"""`KDTrainer`: TRL's SFTTrainer with the loss replaced by the soft + hard mix; data, packing, masking, LoRA,
DeepSpeed and checkpoints stay TRL's.

The student's logits are built only at the positions that have a label (`logits_to_keep`), which is all the loss
needs; the hard part is TRL's token-mean NLL over the same positions, so `alpha = 0` trains exactly as plain sft.
Logged per step beside TRL's metrics: `hard_loss`, `soft_loss` (T^2 * KL, per label token), `kd_loss` (their mix)
and `kd_aligned` (the share of label tokens that had teacher data); with `hidden:` also `hidden_loss` (per label
token, before its weight), which is added to the mix (kd/hidden.py).
"""

from __future__ import annotations

import logging

import torch
from trl import SFTTrainer

from r1distill.train.kd import hidden as hidden_states
from r1distill.train.kd.loss import full_kl, mix, topk_kl

log = logging.getLogger(__name__)


class KDTrainer(SFTTrainer):
    def __init__(self, *args, kd, **kwargs):
        """`kd` is the `KD` bundle from `r1distill.train.kd.setup` (settings plus the teacher source)."""
        super().__init__(*args, **kwargs)
        self.kd = kd
        self.matcher = None
        if kd.hidden is not None:
            self.matcher = hidden_states.build(kd.hidden, self.model, kd.hidden_teacher.model, "sft.kd.hidden")

    def save_model(self, output_dir=None, _internal_call=False):
        """Checkpoints keep the projections (a resume needs them); the final model is the student alone."""
        if _internal_call or self.matcher is None:
            return super().save_model(output_dir, _internal_call)
        with hidden_states.detached(self.model):
            return super().save_model(output_dir, _internal_call)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if self.model.training else "eval"
        cfg = self.kd.config
        labels = inputs["labels"]
        model_inputs = {k: v for k, v in inputs.items() if k != "labels"}
        model_inputs["use_cache"] = False
        target = labels[:, 1:]
        # Logits at position i predict token i + 1: keep the positions whose next token is trained on.
        keep = torch.nonzero((target != -100).any(0)).flatten()
        want_hidden = self.matcher is not None
        outputs = model(**model_inputs, logits_to_keep=keep, output_hidden_states=want_hidden)
        y = target[:, keep]
        mask = y != -100
        teacher_out = None
        if want_hidden:  # one teacher forward for its states and (online) its logits
            teacher_out = self.kd.hidden_teacher.forward(model_inputs, keep if self.kd.online else 1, hidden=True)
        logits = outputs.logits[mask]  # [n, V]
        y = y[mask]
        logp = torch.log_softmax(logits.float(), -1)
        hard = -logp.gather(-1, y[:, None]).squeeze(-1)

        if self.kd.offline is not None:
            top_ids, top_lp = self.kd.offline.batch(inputs)
            top_ids = top_ids[:, 1:][:, keep.cpu()][mask.cpu()].to(logits.device)
            top_lp = top_lp[:, 1:][:, keep.cpu()][mask.cpu()].to(logits.device)
            has = top_ids[:, 0] >= 0
            kl = torch.zeros_like(hard)
            if has.any():
                kl[has] = topk_kl(logits[has], top_ids[has], top_lp[has], cfg.temperature, cfg.top_k_mode)
        else:
            t_out = teacher_out if teacher_out is not None else self.kd.online.forward(model_inputs, keep)
            t_logits = t_out.logits[mask]
            vocab = min(t_logits.shape[-1], logits.shape[-1])  # embedding rows past the tokenizer are padding
            s_logits, t_logits = logits[:, :vocab], t_logits[:, :vocab].float()
            has = torch.ones_like(hard, dtype=torch.bool)
            if cfg.top_k:
                t_top = torch.log_softmax(t_logits, -1).topk(cfg.top_k, -1)
                kl = topk_kl(s_logits, t_top.indices, t_top.values, cfg.temperature, cfg.top_k_mode)
            else:
                kl = full_kl(s_logits, t_logits, cfg.temperature)

        num_tokens = mask.sum() if num_items_in_batch is None else num_items_in_batch
        losses = mix(hard, kl, cfg.alpha, cfg.temperature, num_tokens)
        loss = losses.loss
        feat = None
        if want_hidden:
            # The states at the positions the logits were kept for, then the trained ones among them.
            select = lambda h: h[:, :-1][:, keep][mask]  # noqa: E731
            feat = self.matcher(outputs.hidden_states, teacher_out.hidden_states, select)
            n = torch.as_tensor(num_tokens, device=feat.device).clamp(min=1)
            loss = loss + self.kd.hidden.weight * feat.sum() / n
        # As in TRL: `num_items_in_batch` counts every rank's tokens and DDP averages the gradients.
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * (self.accelerator.num_processes // self.get_tp_size())

        self._log_metrics(mode, inputs, logits, y, hard, kl, has, mask, feat)
        if return_outputs:
            with torch.no_grad():
                outputs = model(**model_inputs)
            return loss, outputs
        return loss

    @torch.no_grad()
    def _log_metrics(self, mode, inputs, logits, y, hard, kl, has, mask, feat=None) -> None:
        gather = self.accelerator.gather_for_metrics
        n = gather(mask.sum()).sum().clamp(min=1)
        t2 = self.kd.config.temperature**2
        hard_mean = (gather(hard.detach().sum()).sum() / n).item()
        soft_mean = (t2 * gather(kl.detach().sum()).sum() / n).item()
        a = self.kd.config.alpha
        m = self._metrics[mode]
        m["hard_loss"].append(hard_mean)
        m["soft_loss"].append(soft_mean)
        m["kd_loss"].append(a * soft_mean + (1 - a) * hard_mean)
        m["kd_aligned"].append((gather(has.sum()).sum() / n).item())
        if feat is not None:
            m["hidden_loss"].append((gather(feat.detach().sum()).sum() / n).item())
        m["mean_token_accuracy"].append((gather((logits.argmax(-1) == y).sum()).sum() / n).item())
        if mode == "train":
            if "attention_mask" in inputs:
                local = inputs["attention_mask"].sum()
            else:
                local = torch.tensor(inputs["input_ids"].numel(), device=inputs["input_ids"].device)
            self._total_train_tokens += gather(local).sum().item() // self._tp_size
        m["num_tokens"] = [self._total_train_tokens]
