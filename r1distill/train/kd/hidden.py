"""Hidden-state matching (feature distillation) for `sft.kd`: the student's intermediate states pulled towards the
teacher's, as FitNets' hint layers, TinyBERT (MSE through a learned projection) and DistilBERT (cosine) do.

    sft:
      kd:
        source: online         # the teacher's hidden states need a teacher model; offline loads it beside the sidecars
        alpha: 0.5
        hidden:
          weight: 1.0          # L = (the soft/hard mix above) + weight * hidden_loss
          loss: cosine         # cosine: 1 - cos(h_s, h_t) per token (DistilBERT) | mse: mean squared error (TinyBERT)
          layers: null         # {student layer: teacher layer}; default evenly spaced: i -> round(i * L_t / L_s)
          projection: null     # null: a learned linear map student -> teacher width only where the widths differ;
                               # true: always (FitNets' regressor); false: never (differing widths are an error)

Layers are numbered as `output_hidden_states` returns them: 0 is the embedding output, 1..L the blocks (in HF
models the last one is after the final norm). The default leaves out the embeddings and maps the student's last block
to the teacher's last, so a half-depth student has i -> 2i. The loss is taken at the positions the soft and hard
losses use (those that predict an assistant token), averaged over the mapped layers, and divided by the same token
count N as the other parts (so gradient accumulation and the mix see one divisor). The projections are trained with
the student (they live on the model as `kd_hidden`, so the optimizer, DDP and checkpoints see them) and are left out
of the final save.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from r1distill.core.config import ConfigError, from_dict

COSINE, MSE = "cosine", "mse"
LOSSES = (COSINE, MSE)
ATTR = "kd_hidden"  # the attribute the matcher is attached under on the student


@dataclass
class HiddenConfig:
    """The recipe's `sft.kd.hidden:` section (see the module docstring)."""

    weight: float = 1.0
    loss: str = COSINE
    layers: dict[int, int] | None = None
    projection: bool | None = None


def parse(raw: dict | HiddenConfig | None, where: str) -> HiddenConfig | None:
    """The checked section, or None when there is none. Layer numbers are checked later, against the models."""
    if raw is None:
        return None
    cfg = raw if isinstance(raw, HiddenConfig) else from_dict(HiddenConfig, raw, where)
    if not cfg.weight > 0:
        raise ConfigError(f"{where}.weight: must be > 0 (remove the hidden section to turn it off), got {cfg.weight!r}")
    if cfg.loss not in LOSSES:
        raise ConfigError(f"{where}.loss: must be one of {', '.join(LOSSES)}, got {cfg.loss!r}")
    if cfg.layers is not None:
        if not cfg.layers:
            raise ConfigError(f"{where}.layers: empty; map at least one student layer, or null for the default")
        cfg.layers = {_layer(s, where): _layer(t, where) for s, t in cfg.layers.items()}
    return cfg


def _layer(x, where: str) -> int:
    """A layer number; a dotted override (`sft.kd.hidden.layers.2=4`) gives the student's as a string."""
    if isinstance(x, str) and x.strip().isdigit():
        return int(x)
    if not isinstance(x, int) or isinstance(x, bool):
        raise ConfigError(f"{where}.layers: {x!r} is not a layer number; map integers, student: teacher")
    return x


def default_map(student_layers: int, teacher_layers: int) -> dict[int, int]:
    """Student block i -> teacher block round(i * L_t / L_s), i = 1..L_s: evenly spaced, last to last."""
    return {i: round(i * teacher_layers / student_layers) for i in range(1, student_layers + 1)}


def layer_map(cfg: HiddenConfig, student_layers: int, teacher_layers: int, where: str) -> dict[int, int]:
    """The map to use, every layer checked against the models (0 = embeddings, 1..L = blocks)."""
    mapping = dict(cfg.layers) if cfg.layers is not None else default_map(student_layers, teacher_layers)
    for s, t in mapping.items():
        for who, layer, n in (("student", s, student_layers), ("teacher", t, teacher_layers)):
            if not 0 <= layer <= n:
                raise ConfigError(
                    f"{where}.layers: {s}: {t}: the {who} has no layer {layer} (it has 0 = embeddings and "
                    f"1..{n} = blocks); map layers that exist"
                )
    return mapping


def per_token(student: torch.Tensor, teacher: torch.Tensor, loss: str) -> torch.Tensor:
    """[n, D] x [n, D] -> [n]: 1 - cosine similarity, or the squared error averaged over the hidden size."""
    s, t = student.float(), teacher.float()
    if loss == COSINE:
        return 1 - nn.functional.cosine_similarity(s, t, dim=-1)
    return (s - t).pow(2).mean(-1)


class HiddenMatcher(nn.Module):
    """The layer map, the loss and the projections (one `Linear(d_s, d_t)` per mapped student layer, or none)."""

    def __init__(self, mapping: dict[int, int], loss: str, student_dim: int, teacher_dim: int, project: bool):
        super().__init__()
        self.mapping = dict(sorted(mapping.items()))
        self.loss = loss
        self.proj = nn.ModuleDict(
            {str(s): nn.Linear(student_dim, teacher_dim, bias=False) for s in self.mapping} if project else {}
        )

    def forward(self, student_states, teacher_states, select) -> torch.Tensor:
        """Per-token loss [n], averaged over the mapped layers: `select` turns one layer's [B, L, D] into the [n, D]
        of the trained positions (the same for student and teacher)."""
        total = None
        for s, t in self.mapping.items():
            h_s = select(student_states[s])
            if str(s) in self.proj:
                proj = self.proj[str(s)]
                h_s = proj(h_s.to(proj.weight.dtype))
            h_t = select(teacher_states[t]).detach()
            term = per_token(h_s, h_t, self.loss)
            total = term if total is None else total + term
        return total / len(self.mapping)


def check(cfg: HiddenConfig, student_config, teacher_config, where: str) -> tuple[dict[int, int], int, int]:
    """(layer map, student width, teacher width) for these model configs, or a ConfigError naming the key."""
    s_cfg = getattr(student_config, "text_config", None) or student_config
    t_cfg = getattr(teacher_config, "text_config", None) or teacher_config
    d_s, d_t = s_cfg.hidden_size, t_cfg.hidden_size
    if cfg.projection is False and d_s != d_t:
        raise ConfigError(
            f"{where}.projection: false, but the student's hidden size {d_s} differs from the teacher's {d_t}; "
            "set it to null (a learned projection where they differ)"
        )
    return layer_map(cfg, s_cfg.num_hidden_layers, t_cfg.num_hidden_layers, where), d_s, d_t


def build(cfg: HiddenConfig, student, teacher, where: str) -> HiddenMatcher:
    """The matcher for this student and teacher, attached to the student as `kd_hidden` (trained with it)."""
    mapping, d_s, d_t = check(cfg, student.config, teacher.config, where)
    matcher = HiddenMatcher(mapping, cfg.loss, d_s, d_t, project=bool(cfg.projection) or d_s != d_t)
    param = next(student.parameters())
    matcher.to(device=param.device, dtype=torch.float32)
    student.add_module(ATTR, matcher)
    return matcher


@contextlib.contextmanager
def detached(model) -> Iterator[None]:
    """The model without its matcher for the duration (the final save holds the student alone)."""
    owner = next((m for m in model.modules() if ATTR in m._modules), None)
    if owner is None:
        yield
        return
    matcher = owner._modules.pop(ATTR)
    try:
        yield
    finally:
        owner._modules[ATTR] = matcher
