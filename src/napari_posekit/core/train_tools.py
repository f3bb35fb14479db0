"""The pieces of a training step: the loss, the learning-rate schedule, weight averaging, batch-norm mode."""

from __future__ import annotations

import itertools
import math
import types
from typing import Any

import torch
import torch.nn.functional as F

from .model import PoseModel

__all__ = [
    "WeightAverage",
    "fold_frozen_batchnorm",
    "freeze_early_layers",
    "keep_depthwise_float32",
    "lr_factor",
    "make_optimizer",
    "pose_loss",
    "set_train_mode",
]


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
        targets, values = [], []
        for name, value in model.state_dict().items():
            target = mine[name]
            if target.is_floating_point():
                targets.append(target)
                values.append(value.detach())
            else:
                target.copy_(value)
        # one fused pass over every tensor instead of one small kernel call per tensor
        torch._foreach_lerp_(targets, values, 1.0 - d)


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


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW over all of ``model``'s parameters, as one fused kernel where the device has it.

    Frozen parameters (``requires_grad`` False) are included so that an
    optimiser state saved by any run loads into any other; having no
    gradient, they are skipped by every step.  Loading a saved state keeps
    the fused kernel, whichever kernel the state was saved with.
    """
    params = list(model.parameters())
    device = params[0].device.type if params else "cpu"
    kernel = {"fused": device in ("cpu", "cuda"), "foreach": device not in ("cpu", "cuda")}
    try:
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, **kernel)
    except (RuntimeError, ValueError):  # a dtype without the fused kernel
        kernel = {"fused": False, "foreach": True}
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, **kernel)

    def keep_kernel(opt: torch.optim.Optimizer) -> None:
        # a loaded state brings its own kernel settings (an older run's: the slow per-tensor loop)
        for group in opt.param_groups:
            group.update(kernel)

    optimizer.register_load_state_dict_post_hook(keep_kernel)
    return optimizer


def freeze_early_layers(model: PoseModel, stride: int | None) -> list[str]:
    """Keep the backbone's layers up to its feature level at ``stride`` fixed; the names of the frozen modules.

    Those layers compute edges and textures that ImageNet taught well; they
    run at the highest resolutions, so skipping their gradients saves much of
    a training step's backward pass (at some cost in accuracy per epoch).  Everything that computes the feature
    level at ``stride`` and before it is frozen (its parameters stop needing
    gradients); the head, which reads that level, still trains.  ``stride``
    None or 0 freezes nothing; a stride the backbone has no level at raises
    :class:`ValueError`.
    """
    if not stride:
        return []
    info = model.backbone.feature_info
    reductions = [int(r) for r in info.reduction()]
    if int(stride) not in reductions:
        raise ValueError(f"the backbone has no feature level at stride {stride} (levels: {reductions})")
    last = info.module_name()[reductions.index(int(stride))]
    # the modules that run up to and including ``last``: registration order is the order they run in
    units: list[tuple[str, torch.nn.Module]] = []
    container: torch.nn.Module = model.backbone
    prefix = ""
    for part in last.split("."):
        for name, child in container.named_children():
            if name == part:
                break
            units.append((prefix + name, child))
        else:
            raise ValueError(f"the backbone has no module {last!r}")
        prefix += part + "."
        container = child
    units.append((last, container))
    for _, module in units:
        for p in module.parameters():
            p.requires_grad_(False)
    return [name for name, _ in units]


def _patched_conv_forward(self: torch.nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """A convolution with its frozen batch norm folded in and/or kept in float32 under autocast."""
    weight, bias = self.weight, self.bias
    bn = getattr(self, "_posekit_folded_bn", None)
    if bn is not None:
        scale = torch.rsqrt(bn.running_var + bn.eps)
        if bn.weight is not None:
            scale = bn.weight * scale
        shift = -bn.running_mean * scale
        if bn.bias is not None:
            shift = shift + bn.bias
        if bias is not None:
            shift = shift + bias * scale
        weight, bias = weight * scale.reshape(-1, 1, 1, 1), shift
    if getattr(self, "_posekit_float32", False) and torch.is_autocast_enabled(x.device.type):
        with torch.autocast(x.device.type, enabled=False):
            return self._conv_forward(x.float(), weight, bias)
    return self._conv_forward(x, weight, bias)


def _patch(conv: torch.nn.Conv2d, attribute: str, value: Any) -> None:
    object.__setattr__(conv, attribute, value)  # not a child module: the state dict stays as it is
    conv.forward = types.MethodType(_patched_conv_forward, conv)


def _folded_bn_forward(self: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    act = getattr(self, "act", None)
    drop = getattr(self, "drop", None)
    if drop is not None:
        x = drop(x)
    return act(x) if act is not None else x


def keep_depthwise_float32(module: torch.nn.Module) -> int:
    """Run ``module``'s depthwise convolutions in float32 under autocast; how many there are.

    oneDNN's bfloat16 depthwise convolutions are slower to differentiate than
    its float32 ones, and they are a small share of the arithmetic; the
    other convolutions gain from bfloat16.
    """
    n = 0
    for conv in module.modules():
        if type(conv) is torch.nn.Conv2d and conv.groups > 1 and conv.groups == conv.in_channels:
            _patch(conv, "_posekit_float32", True)
            n += 1
    return n


def fold_frozen_batchnorm(module: torch.nn.Module, example: torch.Tensor | None = None) -> int:
    """Compute each convolution and the frozen batch norm after it as one convolution; how many were folded.

    With its statistics fixed, a batch norm is a per-channel scale and shift,
    so ``bn(conv(x))`` equals a convolution whose weights are scaled and
    which gets a bias.  The folded weights are recomputed from the
    convolution's and the batch norm's own parameters on every call, so
    both keep training with the same gradients as before (up to rounding), the
    state dict is unchanged, and a deep copy stays folded.  What the network
    saves is the batch norm's pass over every activation, forward and
    backward.

    Only pairs that run back to back are folded: a plain ``nn.Conv2d``
    followed, among its parent's children, by a plain ``nn.BatchNorm2d`` or
    timm's ``BatchNormAct2d`` (whose activation stays) with matching channels.
    Call it only while those batch norms are in eval mode and stay there.
    With an ``example`` input, the module's output (in eval mode) is compared
    before and after, and a module whose output changed is left unfolded
    (returning 0): a network that registers a pair but does not run it back
    to back is never folded wrongly.
    """
    from timm.layers import BatchNormAct2d

    pairs = []
    for parent in module.modules():
        children = list(parent.children())
        for conv, bn in itertools.pairwise(children):
            if (
                type(conv) is torch.nn.Conv2d
                and type(bn) in (torch.nn.BatchNorm2d, BatchNormAct2d)
                and bn.num_features == conv.out_channels
                and bn.track_running_stats
                and not hasattr(conv, "_posekit_folded_bn")
            ):
                pairs.append((conv, bn))
    before = _eval_output(module, example) if example is not None and pairs else None
    for conv, bn in pairs:
        _patch(conv, "_posekit_folded_bn", bn)
        bn.forward = types.MethodType(_folded_bn_forward, bn)
    if before is not None and not _same_output(before, _eval_output(module, example)):
        for conv, bn in pairs:  # undo: this network does not run its pairs back to back
            object.__delattr__(conv, "_posekit_folded_bn")
            if not hasattr(conv, "_posekit_float32"):
                del conv.forward
            del bn.forward
        return 0
    return len(pairs)


def _eval_output(module: torch.nn.Module, example: torch.Tensor) -> list[torch.Tensor]:
    modes = {m: m.training for m in module.modules()}
    try:
        with torch.no_grad():
            out = module.eval()(example)
    finally:
        for m, training in modes.items():
            m.train(training)
    return [t.float() for t in (out if isinstance(out, (list, tuple)) else [out])]


def _same_output(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(
        x.shape == y.shape and torch.allclose(x, y, rtol=1e-3, atol=1e-4 * float(x.abs().max()) + 1e-6)
        for x, y in zip(a, b, strict=True)
    )
