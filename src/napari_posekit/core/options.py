"""Defaults shared by the core, the command line, the widgets and the benchmarks.

Every default that more than one place shows to a user is defined here once;
callers read it from here instead of repeating the number.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the data module imports torch; options stay import-light
    from .data import Augmentation

PCUTOFF = 0.6
"""Likelihood below which a keypoint counts as not visible (DeepLabCut's default ``pcutoff``)."""

OUTLIER_EPSILON = 20.0
"""Pixels: the jump and off-track threshold of outlier frames (DeepLabCut's ``epsilon``)."""

ANALYSIS_BATCH_SIZE = 8
"""Frames per forward pass when analysing videos."""

TRAIN_BATCH_SIZE = 8
"""Images per training step."""

TRAIN_MINUTES = 10.0
"""Training budget of ``posekit train`` and the Training widget when no epoch count is given."""

TRAIN_LR = 2e-3
"""Peak learning rate of AdamW (reached after the warm-up)."""

TRAIN_FRACTION = 0.95
"""Share of the labeled images that trains when neither the caller nor the project says (DeepLabCut's default)."""


@dataclass(frozen=True)
class TrainOptions:
    """The hyperparameters of a training run, with their defaults.

    :func:`~napari_posekit.core.train.iter_train` and
    :func:`~napari_posekit.core.workflow.train_project` take one (``options=``)
    and accept every field as a keyword argument too, which replaces the
    field's value (:meth:`merged`).  What a run works on and where it writes
    (data, checkpoint folder, resume, stop, device) is not an option.
    """

    backbone: str = "efficientnet_lite0"
    """Backbone name (see :class:`~napari_posekit.core.model.PoseModel`)."""
    pretrained: bool | str | os.PathLike | None = True
    """ImageNet weights for the backbone: True, False or a weights file."""
    head_stride: int = 4
    """Output stride of the heatmaps (input pixels per heatmap cell)."""
    epochs: int | None = 50
    """Epochs to train (None: until ``max_minutes``)."""
    max_minutes: float | None = None
    """Wall-time budget in minutes (None: until ``epochs``); whichever ends first stops training."""
    batch_size: int = TRAIN_BATCH_SIZE
    """Images per training step (and per forward pass when evaluating)."""
    lr: float = TRAIN_LR
    """Peak learning rate of AdamW."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    warmup_fraction: float = 0.05
    """Share of training spent warming the learning rate up before its cosine decay."""
    input_scale: float | None = None
    """Images are resized by this factor (None: from the labels' spread)."""
    input_size: tuple[int, int] | None = None
    """Training crop ``(H, W)`` (None: the scaled image, at most 224 x 224)."""
    sigma: float = 2.0
    """Width of the target heatmaps' Gaussians, in input pixels."""
    locref_loss_weight: float = 0.05
    """Weight of the location-refinement loss next to the heatmap loss."""
    absent_weight: float = 1.0
    """Heatmap-loss weight of body parts not labeled in a sample."""
    augmentation: Augmentation | bool | None = True
    """True (default augmentation), an :class:`~napari_posekit.core.data.Augmentation`, or False/None."""
    symmetric_pairs: Sequence[tuple[str, str]] | None = None
    """Left/right body-part pairs swapped by flips (None: none; ``train_project`` infers them from the names)."""
    split: str = "random"
    """Train/test split: ``"random"`` or ``"block"`` (the last images are held out)."""
    train_fraction: float | None = None
    """Share of images that trains (None: the project's ``TrainingFraction``, else :data:`TRAIN_FRACTION`)."""
    seed: int = 0
    """Seed of the split, the initial weights, augmentation and batch order."""
    eval_every: int | None = None
    """Evaluate on the held-out images every this many epochs (0: never; None: after the first epoch, then
    whenever the last evaluation took at most 5 % of the training time since it, and after the last epoch)."""
    ema_decay: float | None = 0.995
    """Decay per step of the weight average that is evaluated and saved (None: the raw weights)."""
    frozen_bn: bool | None = None
    """Keep the backbone's batch-norm statistics (None: when pretrained, or as the parent checkpoint did)."""
    frozen_stride: int | None = None
    """The backbone's layers up to its features at this stride keep their weights, e.g. 4 (0: all train; None:
    as the parent checkpoint did, else 0).  About a fifth faster per step, but less accurate per epoch."""
    precision: str = "auto"
    """Arithmetic of the training step: ``"float32"``, ``"bfloat16"`` (mixed: depthwise convolutions, the
    loss and the weights stay float32) or ``"auto"`` (bfloat16 where the hardware computes it natively: CPUs with
    AVX512-BF16 or AMX, CUDA)."""

    def merged(self, **overrides: Any) -> TrainOptions:
        """A copy with ``overrides`` replacing fields; :class:`TypeError` naming any unknown one."""
        unknown = sorted(set(overrides) - set(train_option_names()))
        if unknown:
            raise TypeError(
                f"unknown training option{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                f"the options are {', '.join(train_option_names())}"
            )
        return replace(self, **overrides) if overrides else self

    def check(self) -> None:
        """Raise :class:`ValueError` for values no run can use."""
        if self.epochs is None and self.max_minutes is None:
            raise ValueError("give epochs, max_minutes or both")
        if self.epochs is not None and int(self.epochs) < 1:
            raise ValueError(f"epochs must be at least 1, got {self.epochs}")
        if self.max_minutes is not None and not float(self.max_minutes) > 0:
            raise ValueError(f"max_minutes must be positive, got {self.max_minutes}")
        if self.ema_decay is not None and not 0.0 <= float(self.ema_decay) < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1) or None, got {self.ema_decay}")
        if self.precision not in ("auto", "float32", "bfloat16"):
            raise ValueError(f"precision must be 'auto', 'float32' or 'bfloat16', got {self.precision!r}")
        if self.eval_every is not None and int(self.eval_every) < 0:
            raise ValueError(f"eval_every must be 0 or more, or None, got {self.eval_every}")


def train_option_names() -> tuple[str, ...]:
    """The names of :class:`TrainOptions`' fields, in order."""
    return tuple(f.name for f in fields(TrainOptions))


def train_options(options: TrainOptions | None = None, **overrides: Any) -> TrainOptions:
    """``options`` (default :class:`TrainOptions`) with keyword ``overrides``; unknown names raise TypeError."""
    return (options if options is not None else TrainOptions()).merged(**overrides)
