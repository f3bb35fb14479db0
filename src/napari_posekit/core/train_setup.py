"""What a training run starts from: its labeled images, their split, the model, codec and input scale.

:func:`start_run` gathers these for :func:`~napari_posekit.core.train.iter_train`
from the options and, when continuing or fine-tuning, from a parent
checkpoint.  Splits are stored in checkpoints by image name
(:func:`image_keys`), so they survive images being added to the project.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoint import CheckpointError
from .codec import HeatmapCodec
from .data import (
    Augmentation,
    LabeledImages,
    auto_input_scale,
    load_image,
    load_project_labels,
    split_block,
    split_random,
)
from .model import PoseModel
from .options import TRAIN_FRACTION, TrainOptions

__all__ = ["RunStart", "image_keys", "resolve_training_data", "split_by_keys", "start_run", "training_dataset"]


def resolve_training_data(data, xy, bodyparts) -> tuple[Any, list[str], np.ndarray]:
    """``(images, bodyparts, xy)`` from images with keypoints or from a project folder (see ``iter_train``)."""
    if isinstance(data, (str, os.PathLike)):
        images, parts, xy_all = load_project_labels(data)
        if bodyparts is not None and list(bodyparts) != parts:
            raise ValueError(f"bodyparts {list(bodyparts)} differ from the project's {parts}")
        return list(images), parts, xy_all
    if xy is None:
        raise ValueError("pass keypoints xy (N, K, 2) with the images, or a project folder")
    xy = np.asarray(xy, dtype=np.float64)
    if bodyparts is None:
        bodyparts = [f"bodypart{k + 1}" for k in range(xy.shape[1])]
    if len(bodyparts) != xy.shape[1]:
        raise ValueError(f"{len(bodyparts)} body parts but xy has {xy.shape[1]}")
    return data, list(bodyparts), xy


def image_keys(images: Sequence[Any]) -> list[str] | None:
    """``<folder>/<file>`` names of image files (as in ``labeled-data/<video>/<image>``), None for arrays.

    Splits are stored with these names too, so they survive images being
    added to the project (which shifts positions).
    """
    if not all(isinstance(im, (str, os.PathLike)) for im in images):
        return None
    return [f"{Path(im).parent.name}/{Path(im).name}" for im in images]


def split_by_keys(split_info: dict[str, Any], keys: Sequence[str] | None, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(train, test)`` positions of a stored split among ``n`` images named ``keys``.

    By image name when the split has names and ``keys`` are given (images the
    split never saw are in neither), by position otherwise.
    """
    if keys is not None and "test_images" in split_info:
        where = {k: i for i, k in enumerate(keys)}
        train = [where[k] for k in split_info.get("train_images", []) if k in where]
        test = [where[k] for k in split_info["test_images"] if k in where]
        return np.asarray(sorted(train), dtype=np.int64), np.asarray(sorted(test), dtype=np.int64)
    return (np.asarray(split_info["train"], dtype=np.int64), np.asarray(split_info["test"], dtype=np.int64))


def _inherited_test(parent: dict[str, Any], keys: Sequence[str] | None) -> np.ndarray | None:
    """Boolean mask of the images the parent checkpoint held out, or None when that cannot be known."""
    if keys is None or "test_images" not in parent.get("split", {}):
        return None
    held_out = set(parent["split"]["test_images"])
    mask = np.array([k in held_out for k in keys], dtype=bool)
    if not mask.any() or mask.all():
        return None
    return mask


def default_input_size(first: np.ndarray, scale: float, stride: int, cap: int = 224) -> tuple[int, int]:
    """Training crop ``(H, W)``: the image scaled by ``scale``, at most ``cap``, in multiples of ``stride``."""
    h, w = first.shape[:2]
    size = []
    for v in (h, w):
        v = min(round(v * scale), cap)
        size.append(max(stride, math.ceil(v / stride) * stride))
    return size[0], size[1]


@dataclass
class RunStart:
    """Where a training run begins: model (raw weights), codec, input scale, split and completed work."""

    model: PoseModel
    codec: HeatmapCodec
    input_scale: float
    train_idx: np.ndarray
    test_idx: np.ndarray
    split_info: dict[str, Any]
    frozen_bn: bool
    frozen_stride: int = 0
    start_epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    trained_s: float = 0.0


def _model_from(state: dict[str, Any], weights: str, source: Any) -> PoseModel:
    model = PoseModel.from_config(state["model_config"])
    try:
        model.load_state_dict(state[weights])
    except (RuntimeError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: weights do not fit the stored architecture: {exc}") from exc
    return model


def _new_split(options: TrainOptions, n: int, keys, init: dict[str, Any] | None, init_weights):
    """``(train, test, split_info)`` of a new run; fine-tuning keeps the parent's held-out images held out."""
    fraction = options.train_fraction if options.train_fraction is not None else TRAIN_FRACTION
    if options.split == "random":
        train_idx, test_idx = split_random(n, fraction, options.seed)
    elif options.split == "block":
        train_idx, test_idx = split_block(n, fraction)
    else:
        raise ValueError(f"split must be 'random' or 'block', got {options.split!r}")
    split_info = {"kind": options.split, "train_fraction": float(fraction), "seed": int(options.seed)}
    inherited = _inherited_test(init, keys) if init is not None else None
    if inherited is not None:
        # fine-tuning keeps the parent's held-out images held out (a fair before/after); new images train
        test_idx = np.flatnonzero(inherited)
        train_idx = np.flatnonzero(~inherited)
        split_info["inherited_from"] = str(init_weights)
    return train_idx, test_idx, split_info


def _fresh_start(
    options: TrainOptions,
    images,
    xy: np.ndarray,
    bodyparts: Sequence[str],
    keys,
    init: dict[str, Any] | None,
    init_weights,
) -> RunStart:
    """A new run: a new model, or the weights of ``init`` (fine-tuning), and a new split."""
    input_scale = options.input_scale
    if init is not None:
        model = _model_from(init, "state_dict", init_weights)
        codec = HeatmapCodec.from_dict(init["codec"])
        input_scale = float(init.get("input_scale", input_scale or 1.0))
    else:
        model = PoseModel(
            options.backbone, n_keypoints=len(bodyparts), pretrained=options.pretrained, head_stride=options.head_stride
        )
        input_size = options.input_size
        if input_scale is None:
            input_scale = auto_input_scale(xy, crop=min(input_size) if input_size else 224)
        size = tuple(input_size) if input_size else default_input_size(load_image(images[0]), input_scale, 32)
        codec = HeatmapCodec(input_size=size, stride=model.stride, sigma=options.sigma)
    train_idx, test_idx, split_info = _new_split(options, len(xy), keys, init, init_weights)
    return RunStart(model, codec, input_scale, train_idx, test_idx, split_info, frozen_bn=False)


def start_run(
    options: TrainOptions,
    images: Any,
    xy: np.ndarray,
    bodyparts: Sequence[str],
    *,
    resumed: dict[str, Any] | None = None,
    resume: Any = None,
    init: dict[str, Any] | None = None,
    init_weights: Any = None,
) -> RunStart:
    """The :class:`RunStart` of a new run, a fine-tuning run (``init``) or a resumed one (``resumed``).

    ``resumed`` and ``init`` are checkpoint states (read from the paths
    ``resume`` and ``init_weights``, which messages name).  Seeds torch with
    ``options.seed`` before any weights are made.
    """
    keys = image_keys(images)
    n = len(xy)
    if init is not None and list(init["bodyparts"]) != list(bodyparts):
        raise CheckpointError(
            f"{init_weights}: cannot fine-tune, the model was trained for body parts {list(init['bodyparts'])} "
            f"but the labels have {list(bodyparts)}; train from scratch"
        )
    torch.manual_seed(options.seed)
    if resumed is not None:
        if list(resumed["bodyparts"]) != list(bodyparts):
            raise CheckpointError(f"{resume}: body parts {resumed['bodyparts']} differ from {bodyparts}")
        model = PoseModel.from_config(resumed["model_config"])
        model.load_state_dict(resumed.get("train_state_dict", resumed["state_dict"]))
        train_idx, test_idx = split_by_keys(resumed["split"], keys, n)
        start = RunStart(
            model,
            HeatmapCodec.from_dict(resumed["codec"]),
            float(resumed.get("input_scale", options.input_scale or 1.0)),
            train_idx,
            test_idx,
            dict(resumed["split"]),
            frozen_bn=False,
            start_epoch=int(resumed["epoch"]),
            history=list(resumed.get("history", [])),
            trained_s=float(resumed.get("train_seconds", 0.0)),
        )
    else:
        start = _fresh_start(options, images, xy, bodyparts, keys, init, init_weights)
    frozen_bn = options.frozen_bn
    if frozen_bn is None:
        parent = resumed if resumed is not None else init
        if parent is not None:
            frozen_bn = bool(parent.get("train_config", {}).get("frozen_bn", False))
        else:
            frozen_bn = options.pretrained is not False and options.pretrained is not None
    start.frozen_bn = frozen_bn
    frozen_stride = options.frozen_stride
    if frozen_stride is None:
        parent = resumed if resumed is not None else init
        frozen_stride = (parent or {}).get("train_config", {}).get("frozen_stride") or 0
    start.frozen_stride = int(frozen_stride)
    start.split_info["train"] = [int(i) for i in start.train_idx]
    start.split_info["test"] = [int(i) for i in start.test_idx]
    if keys is not None:
        start.split_info["train_images"] = [keys[i] for i in start.train_idx]
        start.split_info["test_images"] = [keys[i] for i in start.test_idx]
    return start


def training_dataset(options: TrainOptions, start: RunStart, images, xy: np.ndarray, bodyparts) -> LabeledImages:
    """The training images of ``start``'s split as a :class:`LabeledImages` with the options' augmentation."""
    augmentation = options.augmentation
    if augmentation is True:
        augmentation = Augmentation()
    elif augmentation is False:
        augmentation = None
    model, train_idx = start.model, start.train_idx
    return LabeledImages(
        [images[i] for i in train_idx],
        xy[train_idx],
        start.codec,
        model.mean,
        model.std,
        augmentation=augmentation,
        input_scale=start.input_scale,
        symmetric_pairs=options.symmetric_pairs,
        bodyparts=bodyparts,
        seed=options.seed,
    )


def train_config(
    options: TrainOptions, start: RunStart, *, resumed: dict[str, Any] | None, init_weights: Any
) -> dict[str, Any]:
    """The ``train_config`` a checkpoint records: the options that shaped the weights."""
    o = options
    config = {
        "backbone": start.model.backbone_name,
        "epochs": int(o.epochs) if o.epochs is not None else None,
        "max_minutes": float(o.max_minutes) if o.max_minutes is not None else None,
        "batch_size": int(o.batch_size),
        "lr": float(o.lr),
        "weight_decay": float(o.weight_decay),
        "warmup_fraction": float(o.warmup_fraction),
        "locref_loss_weight": float(o.locref_loss_weight),
        "absent_weight": float(o.absent_weight),
        "symmetric_pairs": [list(p) for p in o.symmetric_pairs or ()],
        "seed": int(o.seed),
        "ema_decay": float(o.ema_decay) if o.ema_decay is not None else None,
        "frozen_bn": bool(start.frozen_bn),
        "frozen_stride": int(start.frozen_stride),
    }
    if init_weights is not None:
        config["init_weights"] = str(init_weights)
    elif resumed is not None and "init_weights" in resumed.get("train_config", {}):
        config["init_weights"] = resumed["train_config"]["init_weights"]
    return config
