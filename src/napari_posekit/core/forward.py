"""From images to keypoints in torch: training's evaluation pipeline.

:func:`forward_decode` resizes float images by the model's input scale, pads
them to a multiple of the network's stride, normalises them, runs the network,
decodes the heatmaps of the unpadded area and maps the keypoints back to the
images' own pixels.  Training's evaluation
(:func:`~napari_posekit.core.evaluation.predict_images`) goes through it;
inference (:class:`~napari_posekit.core.predictor.Predictor`) takes the same
steps in NumPy around whichever backend runs the network, and a test keeps
the two in agreement, so the test error measures what analysis predicts.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .codec import HeatmapCodec
from .data import scale_images, unscale_points

__all__ = ["forward_decode", "pad_multiple"]


def pad_multiple(model: Any, codec: HeatmapCodec) -> int:
    """Input sides are padded to a multiple of this: the backbone's stride or the codec's, the larger."""
    return max(int(getattr(model, "backbone_stride", 32)), codec.stride)


def forward_decode(
    model: Any,
    codec: HeatmapCodec,
    images: torch.Tensor,
    *,
    scale: float = 1.0,
    pad_to: int | None = None,
    network: Callable[[torch.Tensor], Any] | None = None,
    channels_last: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """``(xy (B, K, 2) float64, confidence (B, K) float32)`` for float images ``(B, 3, H, W)`` in [0, 1].

    Keypoints are in the pixels of ``images``.  ``model`` normalises the
    input (its ``normalize``) and, unless ``network`` is given (a traced or
    mixed-precision wrapper of it), runs it; the outputs must be float32
    ``(heatmap logits, locref)``.  ``pad_to`` defaults to
    :func:`pad_multiple`; ``channels_last`` lays the network's input out in
    that memory format.  Call it without gradients.
    """
    if pad_to is None:
        pad_to = pad_multiple(model, codec)
    x = scale_images(images, scale)
    h, w = x.shape[-2:]
    x = F.pad(x, (0, (-w) % pad_to, 0, (-h) % pad_to))
    x = model.normalize(x)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    heatmaps, locref = (network if network is not None else model)(x)
    hc, wc = math.ceil(h / codec.stride), math.ceil(w / codec.stride)
    xy, conf = codec.decode(heatmaps[..., :hc, :wc], locref[..., :hc, :wc], from_logits=True)
    return unscale_points(xy.cpu().numpy(), scale), conf.cpu().numpy()
