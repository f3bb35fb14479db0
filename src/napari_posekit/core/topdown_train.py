"""Training the top-down multi-animal model: the finder, then the centred pose network.

Both are trained by :func:`~napari_posekit.core.train.iter_train`, so they
share its options, checkpoints, schedule and evaluation with single-animal
models.  :func:`iter_train_topdown` takes arrays (images and ``(N, I, K, 2)``
keypoints) and writes a model folder::

    <folder>/finder/checkpoint.pt   whole frames, downscaled: one keypoint per individual (its anchor)
    <folder>/pose/checkpoint.pt     full-resolution crops centred on an anchor: the body parts
    <folder>/multianimal.json       individuals, body parts, anchor, crop size, finder scale, format version
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .topdown_data import anchor_points, animal_extents, choose_anchor, crop_size_for, finder_scale_for, pose_crops

__all__ = [
    "FINDER_SHARE",
    "MULTIANIMAL_FILE",
    "MULTIANIMAL_KIND",
    "MULTIANIMAL_VERSION",
    "iter_train_topdown",
    "write_model_description",
]

MULTIANIMAL_FILE = "multianimal.json"
MULTIANIMAL_KIND = "napari-posekit-multianimal"
MULTIANIMAL_VERSION = 1
FINDER_SHARE = 0.25
"""Share of a time budget that trains the finder (the pose network, with more samples, gets the rest)."""

_FINDER_JITTER = 0.15
FINDER_CROP = 128
"""Side of the finder's training windows (of the downscaled frame); it predicts on whole frames."""
_POSE_JITTER = 0.08  # the pose network's crops stay near the centre, as they are centred at prediction
ROTATION_DEG = 180.0
"""Rotation range of both networks' augmentation: animals filmed from above face every way."""


def write_model_description(folder: str | os.PathLike, description: dict[str, Any]) -> Path:
    """Write ``multianimal.json`` in ``folder`` atomically (temporary file, then :func:`os.replace`)."""
    path = Path(folder) / MULTIANIMAL_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(description, indent=2))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _check_names(individuals: Sequence[str], bodyparts: Sequence[str], xy: np.ndarray) -> None:
    names = [str(n) for n in individuals]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates or any(not n for n in names):
        raise ValueError(f"individual names must be unique and non-empty, got {names}")
    if xy.shape[1] != len(names) or xy.shape[2] != len(bodyparts):
        raise ValueError(
            f"keypoints of shape {xy.shape} do not fit {len(names)} individuals and {len(bodyparts)} body parts"
        )


def _stage_options(overrides: dict[str, Any], stage: str) -> dict[str, Any]:
    """Options for one network: shared ones plus ``finder_<name>`` / ``pose_<name>`` ones for that network."""
    shared = {k: v for k, v in overrides.items() if not k.startswith(("finder_", "pose_"))}
    prefix = f"{stage}_"
    shared.update({k[len(prefix) :]: v for k, v in overrides.items() if k.startswith(prefix)})
    return shared


def _frame_shape(image: Any) -> tuple[int, int]:
    from .data import load_image

    return (
        tuple(np.asarray(image).shape[:2]) if not isinstance(image, (str, os.PathLike)) else load_image(image).shape[:2]
    )


def iter_train_topdown(
    images: Sequence[np.ndarray | str | os.PathLike] | np.ndarray,
    xy: np.ndarray,
    individuals: Sequence[str],
    bodyparts: Sequence[str],
    *,
    folder: str | os.PathLike,
    minutes: float | None = None,
    epochs: int | None = None,
    anchor: str | None = None,
    crop_size: int | None = None,
    finder_scale: float | None = None,
    skeleton: Sequence[tuple[str, str]] = (),
    stop: Callable[[], bool] | None = None,
    device: Any = None,
    finder_share: float = FINDER_SHARE,
    **overrides: Any,
) -> Generator[dict[str, Any], None, Path]:
    """Train the finder and the pose network on multi-animal labels; yield progress, return ``folder``.

    ``images`` are whole frames (arrays or image files) and ``xy`` their
    ``(N, I, K, 2)`` keypoints (NaN = not labeled; an individual may be absent
    from a frame).  Training stops after ``epochs`` epochs of each network or
    ``minutes`` minutes in all (``finder_share`` of them for the finder, the
    rest, with what the finder left unused, for the pose network), whichever
    comes first.  ``anchor``, ``crop_size`` and ``finder_scale`` default to
    what the labels suggest (:mod:`~napari_posekit.core.topdown_data`).  Other
    keywords are :class:`~napari_posekit.core.options.TrainOptions` fields for
    both networks, or for one with a ``finder_`` / ``pose_`` prefix
    (``pose_batch_size=16``).  Events are ``iter_train``'s with ``stage``
    (``"finder"`` or ``"pose"``) and ``overall`` (0..1) added.
    """
    from .data import Augmentation, load_image
    from .train import iter_train
    from .training_labels import infer_symmetric_pairs

    if minutes is None and epochs is None and not {"finder_epochs", "pose_epochs"} <= overrides.keys():
        raise ValueError("give minutes, epochs or both")
    xy = np.asarray(xy, dtype=np.float64)
    individuals, bodyparts = [str(n) for n in individuals], [str(b) for b in bodyparts]
    _check_names(individuals, bodyparts, xy)
    if len(images) != len(xy):
        raise ValueError(f"{len(images)} images but {len(xy)} rows of keypoints")
    folder = Path(folder)
    anchor_index = bodyparts.index(anchor) if anchor is not None else choose_anchor(xy, bodyparts)
    side = int(crop_size) if crop_size else crop_size_for(xy)
    shape = _frame_shape(images[0])
    scale = float(finder_scale) if finder_scale else finder_scale_for(xy, shape)
    finder_size = tuple(max(32, min(FINDER_CROP, math.ceil(v * scale / 32) * 32)) for v in shape)
    t0 = time.monotonic()
    budget = 60.0 * float(minutes) if minutes is not None else None

    # ---- finder: whole frames, one keypoint per individual
    finder_options = {
        "epochs": epochs,
        "max_minutes": budget * finder_share / 60.0 if budget is not None else None,
        "input_scale": scale,
        "input_size": finder_size,
        "augmentation": Augmentation(crop_jitter=_FINDER_JITTER, rotation_deg=ROTATION_DEG),
        **_stage_options(overrides, "finder"),
    }
    gen = iter_train(
        images,
        anchor_points(xy, anchor_index),
        individuals,
        checkpoint_dir=folder / "finder",
        stop=stop,
        device=device,
        **finder_options,
    )
    finder_checkpoint = yield from _staged(gen, "finder", 0.0, finder_share)
    if stop is not None and stop():
        return folder

    # ---- pose: full-resolution crops centred on each labeled animal
    frames = [load_image(im) for im in images]
    crops, crop_xy, _ = pose_crops(frames, xy, anchor_index, side)
    del frames
    left = budget - (time.monotonic() - t0) if budget is not None else None
    pose_options = {
        "epochs": epochs,
        "max_minutes": max(left, 6.0) / 60.0 if left is not None else None,
        "input_scale": 1.0,
        "input_size": (side, side),
        "augmentation": Augmentation(crop_jitter=_POSE_JITTER, rotation_deg=ROTATION_DEG),
        "symmetric_pairs": infer_symmetric_pairs(bodyparts) or None,
        **_stage_options(overrides, "pose"),
    }
    gen = iter_train(
        crops, crop_xy, bodyparts, checkpoint_dir=folder / "pose", stop=stop, device=device, **pose_options
    )
    pose_checkpoint = yield from _staged(gen, "pose", finder_share, 1.0)
    extents = animal_extents(xy)
    write_model_description(
        folder,
        {
            "kind": MULTIANIMAL_KIND,
            "version": MULTIANIMAL_VERSION,
            "individuals": individuals,
            "bodyparts": bodyparts,
            "anchor": bodyparts[anchor_index],
            "crop_size": side,
            "finder_scale": scale,
            "animal_length_px": float(np.median(extents)) if len(extents) else float(side) / 2,
            "finder": str(Path(finder_checkpoint).relative_to(folder)),
            "pose": str(Path(pose_checkpoint).relative_to(folder)),
            "skeleton": [list(e) for e in skeleton],
            "train_seconds": round(time.monotonic() - t0, 1),
            "trained": time.strftime("%Y-%m-%dT%H:%M:%S"),
        },
    )
    return folder


def _staged(gen: Generator, stage: str, lo: float, hi: float) -> Generator[dict[str, Any], None, Path]:
    """Pass ``gen``'s events on with ``stage`` and the ``overall`` progress; return its checkpoint."""
    try:
        while True:
            event = next(gen)
            yield {**event, "stage": stage, "overall": lo + (hi - lo) * float(event.get("progress", 0.0))}
    except StopIteration as done:
        return done.value
    finally:
        gen.close()
