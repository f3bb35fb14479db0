"""Evaluating a model on labeled images: predictions, pixel errors, PCK and likelihood separation.

:func:`evaluate` is what training runs on its held-out images after an epoch;
:func:`~napari_posekit.core.workflow.evaluate_project` builds the project's
evaluation tables on :func:`predict_images` and :func:`likelihood_separation`.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Sequence
from typing import Any

import numpy as np
import torch

from ._generators import drive
from .codec import HeatmapCodec
from .data import load_image
from .forward import forward_decode, pad_multiple
from .model import PoseModel
from .options import ANALYSIS_BATCH_SIZE, PCUTOFF

__all__ = ["evaluate", "iter_predict_images", "likelihood_separation", "predict_images"]


def _same_size_batches(images: Sequence[Any], batch_size: int):
    """Consecutive images read with :func:`load_image`, up to ``batch_size`` of one size per batch."""
    i, n = 0, len(images)
    while i < n:
        first = load_image(images[i])
        batch = [first]
        while len(batch) < batch_size and i + len(batch) < n:
            nxt = load_image(images[i + len(batch)])
            if nxt.shape != first.shape:
                break
            batch.append(nxt)
        i += len(batch)
        yield batch


def iter_predict_images(
    model: PoseModel,
    codec: HeatmapCodec,
    images: Sequence[np.ndarray | str | os.PathLike] | np.ndarray,
    *,
    input_scale: float = 1.0,
    batch_size: int = ANALYSIS_BATCH_SIZE,
    device: torch.device | str | None = None,
) -> Generator[int, None, tuple[np.ndarray, np.ndarray]]:
    """Generator form of :func:`predict_images`: yields the number of images done after every batch."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    pad_to = pad_multiple(model, codec)
    xy_out, conf_out = [], []
    done = 0
    try:
        for batch in _same_size_batches(images, batch_size):
            with torch.no_grad():
                x = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).to(device=device, dtype=torch.float32)
                xy, conf = forward_decode(model, codec, x / 255.0, scale=input_scale, pad_to=pad_to)
            xy_out.append(xy)
            conf_out.append(conf)
            done += len(batch)
            yield done
    finally:
        model.train(was_training)
    k = model.n_keypoints
    if not xy_out:
        return np.zeros((0, k, 2)), np.zeros((0, k))
    return np.concatenate(xy_out), np.concatenate(conf_out)


def predict_images(
    model: PoseModel,
    codec: HeatmapCodec,
    images: Sequence[np.ndarray | str | os.PathLike] | np.ndarray,
    *,
    input_scale: float = 1.0,
    batch_size: int = ANALYSIS_BATCH_SIZE,
    device: torch.device | str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(xy (N, K, 2), confidence (N, K))`` for whole images, in image pixels.

    Images may differ in size; consecutive images of one size share a batch.
    """
    return drive(
        iter_predict_images(model, codec, images, input_scale=input_scale, batch_size=batch_size, device=device)
    )


def likelihood_separation(
    likelihood: np.ndarray, labeled: np.ndarray, bodyparts: Sequence[str], pcutoff: float
) -> dict[str, dict[str, float]]:
    """How well the likelihood tells a visible part from a missing one, per body part.

    ``labeled_above``: the fraction of labeled keypoints predicted with
    likelihood >= ``pcutoff``; ``absent_below``: the fraction of unlabeled ones
    (not visible, in DeepLabCut's convention) predicted below it; with the
    counts ``n_labeled`` and ``n_absent`` (a fraction is NaN without cases).
    """
    out = {}
    for k, name in enumerate(bodyparts):
        has, conf = labeled[:, k], likelihood[:, k]
        out[name] = {
            "n_labeled": int(has.sum()),
            "n_absent": int((~has).sum()),
            "labeled_above": float((conf[has] >= pcutoff).mean()) if has.any() else float("nan"),
            "absent_below": float((conf[~has] < pcutoff).mean()) if (~has).any() else float("nan"),
        }
    return out


def evaluate(
    model: PoseModel,
    codec: HeatmapCodec,
    images: Sequence[np.ndarray | str | os.PathLike] | np.ndarray,
    xy: np.ndarray,
    *,
    bodyparts: Sequence[str] | None = None,
    input_scale: float = 1.0,
    batch_size: int = ANALYSIS_BATCH_SIZE,
    device: torch.device | str | None = None,
    thresholds: Sequence[float] = (2.0, 5.0, 10.0),
    pcutoff: float = PCUTOFF,
) -> dict[str, Any]:
    """Pixel errors of ``model`` on labeled images.

    Returns ``mean_error_px`` (mean Euclidean distance over labeled
    keypoints, DeepLabCut's "RMSE"), ``per_bodypart`` (dict name -> mean error;
    names default to ``"0", "1", ...``), ``pck@T`` for each threshold ``T`` (the
    fraction of labeled keypoints within ``T`` pixels), ``n_keypoints``, the
    ``predictions`` ``(N, K, 2)`` and their ``likelihoods`` ``(N, K)``, and
    ``separation``: per body part, :func:`likelihood_separation` at ``pcutoff``.
    """
    xy = np.asarray(xy, dtype=np.float64)
    pred, conf = predict_images(model, codec, images, input_scale=input_scale, batch_size=batch_size, device=device)
    err = np.linalg.norm(pred - xy, axis=-1)  # NaN where not labeled
    labeled = ~np.isnan(xy).any(axis=-1)
    names = list(bodyparts) if bodyparts is not None else [str(k) for k in range(xy.shape[1])]
    values = err[labeled]
    result: dict[str, Any] = {
        "mean_error_px": float(values.mean()) if values.size else float("nan"),
        "per_bodypart": {
            name: (float(err[labeled[:, k], k].mean()) if labeled[:, k].any() else float("nan"))
            for k, name in enumerate(names)
        },
        "n_keypoints": int(values.size),
        "predictions": pred,
        "likelihoods": conf,
        "separation": likelihood_separation(conf, labeled, names, pcutoff),
    }
    for t in thresholds:
        result[f"pck@{t:g}"] = float((values <= t).mean()) if values.size else float("nan")
    return result
