"""The pieces of a training step: the loss, the learning-rate schedule, weight averaging, batch-norm mode."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from .model import PoseModel

__all__ = ["WeightAverage", "lr_factor", "pose_loss", "set_train_mode"]


def pose_loss(
    outputs: Any, targets: dict[str, torch.Tensor], locref_loss_weight: float = 0.05, absent_weight: float = 1.0
) -> tuple[torch.Tensor, dict[str, float]]:
    """BCE-with-logits on heatmaps + smooth-L1 on locref where a keypoint is labeled.

    A body part that is not labeled in a sample (not visible in the frame, as
    DeepLabCut reads a missing label, or outside the training crop) has an
    all-zero target score map; ``absent_weight`` weighs its heatmap loss
    (1: trained towards "not here" like a labeled part is trained towards
    its place; 0: ignored).
    """
    heatmaps, locref = outputs
    present = targets["weights"]
    weights = (present + (1.0 - present) * float(absent_weight))[..., None, None]  # (B, K, 1, 1)
    bce = F.binary_cross_entropy_with_logits(heatmaps, targets["heatmaps"], reduction="none")
    n_cells = heatmaps.shape[-1] * heatmaps.shape[-2]
    heatmap_loss = (bce * weights).sum() / (weights.sum() * n_cells).clamp(min=1.0)
    lw = targets["locref_weights"]
    sl1 = F.smooth_l1_loss(locref, targets["locref"], reduction="none")
    locref_loss = (sl1 * lw).sum() / lw.sum().clamp(min=1.0)
    total = heatmap_loss + locref_loss_weight * locref_loss
    return total, {"heatmap_loss": float(heatmap_loss.detach()), "locref_loss": float(locref_loss.detach())}


def lr_factor(progress: float, warmup_fraction: float = 0.05, min_factor: float = 0.01) -> float:
    """Learning-rate multiplier at ``progress`` in [0, 1]: linear warm-up to 1, then cosine decay."""
    if warmup_fraction > 0 and progress < warmup_fraction:
        return max(progress / warmup_fraction, 1e-3)
    span = max(1.0 - warmup_fraction, 1e-9)
    p = min(max(progress - warmup_fraction, 0.0) / span, 1.0)
    return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * p))


class WeightAverage:
    """Exponential moving average of a model's weights and buffers (a copy of the model).

    The decay is warmed up as ``min(decay, (1 + n) / (10 + n))`` after ``n``
    updates, so early weights do not linger.
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        import copy

        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.updates = 0

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        mine = self.model.state_dict()
        for name, value in model.state_dict().items():
            target = mine[name]
            if target.is_floating_point():
                target.lerp_(value.detach(), 1.0 - d)
            else:
                target.copy_(value)


def set_train_mode(model: PoseModel, frozen_bn: bool) -> PoseModel:
    """Training mode; with ``frozen_bn`` the backbone's batch norms keep their pretrained statistics.

    Their scale and shift still train; only the running mean and variance
    stay (and normalise with) the ImageNet values, as DeepLabCut's ResNets
    were trained.  Small batches of crops make poor batch statistics.
    """
    model.train()
    if frozen_bn:
        for module in model.backbone.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()
    return model
