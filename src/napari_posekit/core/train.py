"""Training: :func:`iter_train` is a generator that yields progress and returns a checkpoint.

Run it in a loop (or in napari's ``thread_worker``)::

    gen = iter_train(frames, xy, bodyparts, epochs=50, checkpoint_dir="models")
    for progress in gen:
        print(progress["epoch"], progress["loss"])

It stops between steps when ``stop()`` returns True or when the generator is
closed; either way a checkpoint is saved first.  The checkpoint path is the
generator's return value (``StopIteration.value``; ``returned`` in napari).

A checkpoint holds everything inference needs (model architecture and
weights, codec, normalisation, body parts) plus the split, the optimiser and
training time for resuming, and a format version.  It is written atomically.
"""

from __future__ import annotations

import math
import os
import secrets
import time
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .codec import HeatmapCodec
from .data import (
    Augmentation,
    LabeledImages,
    auto_input_scale,
    load_image,
    load_project_labels,
    scale_images,
    split_block,
    split_random,
    unscale_points,
)
from .model import PoseModel

__all__ = [
    "CHECKPOINT_KIND",
    "CHECKPOINT_VERSION",
    "DEFAULT_LR",
    "CheckpointError",
    "TrainingMemoryError",
    "evaluate",
    "iter_train",
    "load_checkpoint",
    "pose_loss",
    "save_checkpoint",
]

CHECKPOINT_KIND = "napari-posekit-checkpoint"
CHECKPOINT_VERSION = 1
CHECKPOINT_NAME = "checkpoint.pt"
DEFAULT_LR = 2e-3


class CheckpointError(ValueError):
    """A file is not a usable posekit checkpoint (wrong kind, newer version, mismatching weights)."""


# --------------------------------------------------------------------------- helpers
def default_device() -> torch.device:
    """CUDA if available, else Apple MPS if available, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


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


def _unused_path(path: Path) -> Path:
    candidate, n = path, 1
    while candidate.exists():
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
        n += 1
    return candidate


class TrainingMemoryError(MemoryError):
    """A training step needed more memory than the device has."""


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` with :func:`torch.save` to a temporary file, then :func:`os.replace` it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: not a posekit checkpoint (cannot be read by torch.load: {exc})") from exc
    if not isinstance(state, dict) or state.get("kind") != CHECKPOINT_KIND:
        raise CheckpointError(f"{path}: not a posekit checkpoint (no '{CHECKPOINT_KIND}' marker)")
    version = state.get("version")
    if not isinstance(version, int) or version > CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version!r} is newer than this napari-posekit understands "
            f"({CHECKPOINT_VERSION}); update napari-posekit"
        )
    for key in ("model_config", "state_dict", "codec", "bodyparts"):
        if key not in state:
            raise CheckpointError(f"{path}: incomplete checkpoint, '{key}' is missing")
    return state


def load_checkpoint(
    path: str | os.PathLike, device: torch.device | str | None = "cpu"
) -> tuple[PoseModel, HeatmapCodec, dict[str, Any]]:
    """``(model, codec, meta)`` from a checkpoint written by :func:`iter_train`.

    The model is in eval mode on ``device``.  ``meta`` holds the remaining
    entries (``bodyparts``, ``mean``, ``std``, ``input_scale``, ``split``,
    ``epoch``, ``history``, ``train_config``, ...), without weights and
    optimiser state.  Raises :class:`FileNotFoundError` for a missing file and
    :class:`CheckpointError` for a file that is not a compatible checkpoint.
    """
    state = _read_checkpoint(path)
    try:
        model = PoseModel.from_config(state["model_config"])
        model.load_state_dict(state["state_dict"])
    except (RuntimeError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: weights do not fit the stored architecture: {exc}") from exc
    codec = HeatmapCodec.from_dict(state["codec"])
    model.to(device).eval()
    meta = {k: v for k, v in state.items() if k not in ("state_dict", "optimizer", "scheduler")}
    return model, codec, meta


def _is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, (MemoryError, getattr(torch, "OutOfMemoryError", MemoryError))):
        return True
    text = str(exc).lower()
    return "out of memory" in text or "can't allocate memory" in text or "not enough memory" in text


# --------------------------------------------------------------------------- evaluation
@torch.no_grad()
def predict_images(
    model: PoseModel,
    codec: HeatmapCodec,
    images: Sequence[np.ndarray | str | os.PathLike] | np.ndarray,
    *,
    input_scale: float = 1.0,
    batch_size: int = 8,
    device: torch.device | str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(xy (N, K, 2), confidence (N, K))`` for whole images, in image pixels."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    pad_to = max(int(getattr(model, "backbone_stride", 32)), codec.stride)
    xy_out, conf_out = [], []
    i = 0
    n = len(images)
    while i < n:
        first = load_image(images[i])
        batch = [first]
        while len(batch) < batch_size and i + len(batch) < n:
            nxt = load_image(images[i + len(batch)])
            if nxt.shape != first.shape:
                break
            batch.append(nxt)
        i += len(batch)
        x = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).to(device=device, dtype=torch.float32) / 255.0
        x = scale_images(x, input_scale)
        h, w = x.shape[-2:]
        x = F.pad(x, (0, (-w) % pad_to, 0, (-h) % pad_to))
        x = model.normalize(x)
        heatmaps, locref = model(x)
        hc, wc = math.ceil(h / codec.stride), math.ceil(w / codec.stride)
        xy, conf = codec.decode(heatmaps[..., :hc, :wc], locref[..., :hc, :wc], from_logits=True)
        xy = unscale_points(xy.cpu().numpy(), input_scale)
        xy_out.append(xy)
        conf_out.append(conf.cpu().numpy())
    model.train(was_training)
    k = model.n_keypoints
    if not xy_out:
        return np.zeros((0, k, 2)), np.zeros((0, k))
    return np.concatenate(xy_out), np.concatenate(conf_out)


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
    batch_size: int = 8,
    device: torch.device | str | None = None,
    thresholds: Sequence[float] = (2.0, 5.0, 10.0),
    pcutoff: float = 0.6,
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


# --------------------------------------------------------------------------- training
def _resolve_data(data, xy, bodyparts):
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


def _default_input_size(first: np.ndarray, scale: float, stride: int, cap: int = 224) -> tuple[int, int]:
    h, w = first.shape[:2]
    size = []
    for v in (h, w):
        v = min(int(round(v * scale)), cap)
        size.append(max(stride, int(math.ceil(v / stride)) * stride))
    return size[0], size[1]


def iter_train(
    data: Sequence[np.ndarray | str | os.PathLike] | np.ndarray | str | os.PathLike,
    xy: np.ndarray | None = None,
    bodyparts: Sequence[str] | None = None,
    *,
    backbone: str = "efficientnet_lite0",
    pretrained: bool | str | os.PathLike = True,
    head_stride: int = 4,
    epochs: int | None = 50,
    max_minutes: float | None = None,
    batch_size: int = 8,
    lr: float = DEFAULT_LR,
    weight_decay: float = 1e-4,
    warmup_fraction: float = 0.05,
    input_scale: float | None = None,
    input_size: tuple[int, int] | None = None,
    sigma: float = 2.0,
    locref_loss_weight: float = 0.05,
    absent_weight: float = 1.0,
    augmentation: Augmentation | bool | None = True,
    symmetric_pairs: Sequence[tuple[str, str]] | None = None,
    split: str = "random",
    train_fraction: float = 0.95,
    seed: int = 0,
    eval_every: int = 1,
    checkpoint_dir: str | os.PathLike = "posekit-model",
    resume: str | os.PathLike | None = None,
    stop: Callable[[], bool] | None = None,
    device: torch.device | str | None = None,
    keep_previous: bool = False,
    init_weights: str | os.PathLike | None = None,
    ema_decay: float | None = 0.995,
    frozen_bn: bool | None = None,
) -> Generator[dict[str, Any], None, Path]:
    """Train a :class:`PoseModel`; yield progress after every step, return the checkpoint path.

    Parameters
    ----------
    data:
        Images (``(H, W, 3)`` arrays, an ``(N, H, W, 3)`` array or image
        paths) with ``xy`` ``(N, K, 2)`` (NaN = not labeled), or a DeepLabCut
        project folder (labels from :func:`~napari_posekit.core.data.load_project_labels`).
    backbone, pretrained, head_stride:
        Passed to :class:`PoseModel`.
    epochs, max_minutes:
        Train for ``epochs`` epochs or ``max_minutes`` minutes of wall time,
        whichever ends first (either may be None, not both).  The learning
        rate schedule follows whichever is further along, so a time budget
        gets a complete warm-up and decay.
    batch_size, lr, weight_decay, warmup_fraction:
        AdamW with linear warm-up over ``warmup_fraction`` of training, then
        cosine decay to 1% of ``lr``.
    input_scale, input_size:
        Images are scaled by ``input_scale``; training crops are
        ``input_size`` ``(H, W)`` (default: the scaled image, at most 224 x 224:
        crops around the labels keep full resolution at a small cost per step).
        The default scale comes from the labels (:func:`~napari_posekit.core.data.auto_input_scale`):
        1.0 when the animal fits a crop, smaller for close-ups whose labels
        spread over more than about 60 % of the crop.
    absent_weight:
        Heatmap-loss weight of body parts not labeled in a sample (see
        :func:`pose_loss`): 1 teaches the model that an unlabeled part is
        not visible, so it reports a low likelihood there.
    augmentation:
        True (default :class:`Augmentation`), an :class:`Augmentation`, or
        False/None for none.
    symmetric_pairs:
        Body part name pairs swapped by left/right flips (flips are off without).
    split, train_fraction, seed:
        ``"random"`` (:func:`split_random` with ``seed``) or ``"block"``
        (:func:`split_block`); the seed also fixes initialisation and augmentation.
    eval_every:
        Evaluate on the test images every this many epochs (0: never).
    checkpoint_dir:
        Folder of ``checkpoint.pt``, saved after every epoch and when stopped.
    resume:
        A checkpoint to continue from: its weights, optimiser, split,
        completed epochs and training time are restored and training goes on up to
        ``epochs`` / ``max_minutes`` (counted from the first session).
    stop:
        Called before every step; returning True stops training.
    device:
        Default: CUDA, else MPS, else CPU.
    keep_previous:
        Before the first save, rename an existing ``checkpoint.pt`` in
        ``checkpoint_dir`` to ``checkpoint-<its time>.pt`` instead of
        replacing it.
    init_weights:
        Fine-tune: a checkpoint whose weights start a new training run. Its
        architecture, codec (input size, sigma, stride) and input scale are
        used (``backbone``, ``pretrained``, ``head_stride``, ``input_size``,
        ``sigma`` and ``input_scale`` are then ignored); the optimiser,
        learning-rate schedule, epochs and history are new, unlike
        ``resume``. The images it held out for testing stay held out and
        every other image trains (so the test error before and after is
        measured on the same images); when the checkpoint's split has no
        image names, or the images are arrays, the split is made afresh.
        Its body parts must be ``bodyparts`` (:class:`CheckpointError`
        otherwise).

    ema_decay:
        Evaluate and save an exponential moving average of the weights
        (decay per step, warmed up over the first steps; None: the raw
        weights).  The raw weights are saved too, for ``resume``.

    Yields
    ------
    dict with ``epoch`` (1-based, current), ``step``, ``progress`` (0..1),
    ``loss``, ``lr``, ``elapsed_s``, ``eta_s`` and, after an evaluation,
    ``test_error_px`` (and ``event: "evaluated"``).
    """
    t0 = time.monotonic()
    if epochs is None and max_minutes is None:
        raise ValueError("give epochs, max_minutes or both")
    if epochs is not None and int(epochs) < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    if max_minutes is not None and not float(max_minutes) > 0:
        raise ValueError(f"max_minutes must be positive, got {max_minutes}")
    images, bodyparts, xy = _resolve_data(data, xy, bodyparts)
    n = len(xy)
    keys = image_keys(images)
    if n == 0:
        raise ValueError("no labeled images to train on")
    device = torch.device(device) if device is not None else default_device()
    checkpoint_path = Path(checkpoint_dir) / CHECKPOINT_NAME

    if resume is not None and init_weights is not None:
        raise ValueError("give resume (continue a run) or init_weights (a new run from its weights), not both")
    resumed: dict[str, Any] | None = _read_checkpoint(resume) if resume is not None else None
    init: dict[str, Any] | None = _read_checkpoint(init_weights) if init_weights is not None else None
    if init is not None and list(init["bodyparts"]) != list(bodyparts):
        raise CheckpointError(
            f"{init_weights}: cannot fine-tune, the model was trained for body parts {list(init['bodyparts'])} "
            f"but the labels have {list(bodyparts)}; train from scratch"
        )
    torch.manual_seed(seed)
    if resumed is not None:
        if list(resumed["bodyparts"]) != list(bodyparts):
            raise CheckpointError(f"{resume}: body parts {resumed['bodyparts']} differ from {bodyparts}")
        model = PoseModel.from_config(resumed["model_config"])
        model.load_state_dict(resumed.get("train_state_dict", resumed["state_dict"]))
        codec = HeatmapCodec.from_dict(resumed["codec"])
        input_scale = float(resumed.get("input_scale", input_scale or 1.0))
        train_idx, test_idx = split_by_keys(resumed["split"], keys, n)
        split_info = dict(resumed["split"])
        start_epoch = int(resumed["epoch"])
        history = list(resumed.get("history", []))
        trained_s = float(resumed.get("train_seconds", 0.0))
    else:
        if init is not None:
            model = PoseModel.from_config(init["model_config"])
            try:
                model.load_state_dict(init["state_dict"])
            except (RuntimeError, TypeError, ValueError) as exc:
                raise CheckpointError(f"{init_weights}: weights do not fit the stored architecture: {exc}") from exc
            codec = HeatmapCodec.from_dict(init["codec"])
            input_scale = float(init.get("input_scale", input_scale or 1.0))
        else:
            model = PoseModel(backbone, n_keypoints=len(bodyparts), pretrained=pretrained, head_stride=head_stride)
            if input_scale is None:
                input_scale = auto_input_scale(xy, crop=min(input_size) if input_size else 224)
            size = tuple(input_size) if input_size else _default_input_size(load_image(images[0]), input_scale, 32)
            codec = HeatmapCodec(input_size=size, stride=model.stride, sigma=sigma)
        if split == "random":
            train_idx, test_idx = split_random(n, train_fraction, seed)
        elif split == "block":
            train_idx, test_idx = split_block(n, train_fraction)
        else:
            raise ValueError(f"split must be 'random' or 'block', got {split!r}")
        split_info = {"kind": split, "train_fraction": float(train_fraction), "seed": int(seed)}
        inherited = _inherited_test(init, keys) if init is not None else None
        if inherited is not None:
            # fine-tuning keeps the parent's held-out images held out (a fair before/after); new images train
            test_idx = np.flatnonzero(inherited)
            train_idx = np.flatnonzero(~inherited)
            split_info["inherited_from"] = str(init_weights)
        start_epoch = 0
        history = []
        trained_s = 0.0
    if frozen_bn is None:
        parent = resumed if resumed is not None else init
        if parent is not None:
            frozen_bn = bool(parent.get("train_config", {}).get("frozen_bn", False))
        else:
            frozen_bn = pretrained is not False and pretrained is not None
    split_info["train"] = [int(i) for i in train_idx]
    split_info["test"] = [int(i) for i in test_idx]
    if keys is not None:
        split_info["train_images"] = [keys[i] for i in train_idx]
        split_info["test_images"] = [keys[i] for i in test_idx]
    # channels-last runs the convolutions about a quarter faster on CPU
    set_train_mode(model.to(device=device, memory_format=torch.channels_last), frozen_bn)
    if ema_decay is not None and not 0.0 <= float(ema_decay) < 1.0:
        raise ValueError(f"ema_decay must be in [0, 1) or None, got {ema_decay}")
    ema = WeightAverage(model, float(ema_decay)) if ema_decay is not None else None
    if ema is not None and resumed is not None and "train_state_dict" in resumed:
        ema.model.load_state_dict(resumed["state_dict"])
        ema.updates = int(resumed.get("step", 0))
    served = ema.model if ema is not None else model  # the weights evaluated and used for prediction

    if augmentation is True:
        augmentation = Augmentation()
    elif augmentation is False:
        augmentation = None
    dataset = LabeledImages(
        [images[i] for i in train_idx],
        xy[train_idx],
        codec,
        model.mean,
        model.std,
        augmentation=augmentation,
        input_scale=input_scale,
        symmetric_pairs=symmetric_pairs,
        bodyparts=bodyparts,
        seed=seed,
    )
    steps_per_epoch = math.ceil(len(dataset) / batch_size)
    steps_total = steps_per_epoch * int(epochs) if epochs is not None else None
    budget_s = 60.0 * float(max_minutes) if max_minutes is not None else None
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    if resumed is not None and "optimizer" in resumed:
        optimizer.load_state_dict(resumed["optimizer"])
    step = start_epoch * steps_per_epoch
    epoch = start_epoch
    train_config = {
        "backbone": model.backbone_name,
        "epochs": int(epochs) if epochs is not None else None,
        "max_minutes": float(max_minutes) if max_minutes is not None else None,
        "batch_size": int(batch_size),
        "lr": float(lr),
        "weight_decay": float(weight_decay),
        "warmup_fraction": float(warmup_fraction),
        "locref_loss_weight": float(locref_loss_weight),
        "absent_weight": float(absent_weight),
        "symmetric_pairs": [list(p) for p in symmetric_pairs or ()],
        "seed": int(seed),
        "ema_decay": float(ema_decay) if ema_decay is not None else None,
        "frozen_bn": bool(frozen_bn),
    }
    if init_weights is not None:
        train_config["init_weights"] = str(init_weights)
    elif resumed is not None and "init_weights" in resumed.get("train_config", {}):
        train_config["init_weights"] = resumed["train_config"]["init_weights"]
    last_eval: dict[str, Any] = {}

    saved = False

    def save() -> Path:
        nonlocal saved
        if keep_previous and not saved and checkpoint_path.is_file():
            stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(checkpoint_path.stat().st_mtime))
            kept = _unused_path(checkpoint_path.with_name(f"checkpoint-{stamp}.pt"))
            starts_from_it = init_weights is not None and Path(init_weights).resolve() == checkpoint_path.resolve()
            os.replace(checkpoint_path, kept)
            if starts_from_it:
                train_config["init_weights"] = str(kept)  # the weights fine-tuned from, under their new name
        saved = True
        return save_checkpoint(
            checkpoint_path,
            {
                "kind": CHECKPOINT_KIND,
                "version": CHECKPOINT_VERSION,
                "model_config": model.config(),
                "state_dict": {k: v.detach().cpu() for k, v in served.state_dict().items()},
                **({"train_state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
                   if ema is not None else {}),
                "codec": codec.to_dict(),
                "mean": list(model.mean),
                "std": list(model.std),
                "input_scale": float(input_scale),
                "bodyparts": list(bodyparts),
                "split": split_info,
                "epoch": int(epoch),
                "step": int(step),
                "optimizer": optimizer.state_dict(),
                "train_seconds": trained_s + (time.monotonic() - t0),
                "history": history,
                "test_error_px": last_eval.get("mean_error_px"),
                "train_config": train_config,
            },
        )

    def progress() -> float:
        """How far along training is (0..1): steps or time, whichever is further."""
        p = step / steps_total if steps_total else 0.0
        if budget_s is not None:
            p = max(p, (trained_s + time.monotonic() - t0) / budget_s)
        return min(p, 1.0)

    def should_stop() -> bool:
        if stop is not None and stop():
            return True
        return budget_s is not None and trained_s + time.monotonic() - t0 >= budget_s

    def eta() -> float:
        p = progress()
        return (time.monotonic() - t0) * (1.0 - p) / max(p - start_progress, 1e-9)

    start_progress = progress()
    last_epoch = int(epochs) if epochs is not None else 2**31
    loader_gen = torch.Generator().manual_seed(seed)
    try:
        for epoch_index in range(start_epoch, last_epoch):
            dataset.set_epoch(epoch_index)
            loader_gen.manual_seed(seed * 100_003 + epoch_index)
            loader = torch.utils.data.DataLoader(
                dataset, batch_size=batch_size, shuffle=True, generator=loader_gen, num_workers=0
            )
            losses = []
            for batch in loader:
                if should_stop():
                    break  # the partial epoch is evaluated and saved like a full one
                current_lr = lr * lr_factor(progress(), warmup_fraction)
                for group in optimizer.param_groups:
                    group["lr"] = current_lr
                try:
                    batch = {k: v.to(device) for k, v in batch.items()}
                    outputs = model(batch["image"].contiguous(memory_format=torch.channels_last))
                    loss, parts = pose_loss(outputs, batch, locref_loss_weight, absent_weight)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    if ema is not None:
                        ema.update(model)
                except (RuntimeError, MemoryError) as exc:
                    if not _is_out_of_memory(exc):
                        raise
                    raise TrainingMemoryError(
                        f"not enough {device.type.upper()} memory for batch size {batch_size} at input "
                        f"{codec.input_size[1]}x{codec.input_size[0]}: use a smaller batch size or input size "
                        f"(checkpoints already written are unchanged)"
                    ) from exc
                step += 1
                losses.append(float(loss.detach()))
                yield {
                    "epoch": epoch_index + 1,
                    "epochs": int(epochs) if epochs is not None else None,
                    "step": step,
                    "progress": progress(),
                    "loss": losses[-1],
                    **parts,
                    "lr": current_lr,
                    "elapsed_s": time.monotonic() - t0,
                    "eta_s": eta(),
                }
            epoch = epoch_index + 1
            record: dict[str, Any] = {
                "epoch": epoch,
                "loss": float(np.mean(losses)) if losses else float("nan"),
                "train_seconds": trained_s + time.monotonic() - t0,
            }
            final = epoch == last_epoch or should_stop()
            if eval_every and len(test_idx) and (epoch % eval_every == 0 or final):
                last_eval = evaluate(
                    served, codec, [images[i] for i in test_idx], xy[test_idx],
                    bodyparts=bodyparts, input_scale=input_scale, batch_size=batch_size, device=device,
                )
                set_train_mode(model, frozen_bn)
                record["test_error_px"] = last_eval["mean_error_px"]
            history.append(record)
            save()
            if "test_error_px" in record:
                yield {
                    "event": "evaluated",
                    "epoch": epoch,
                    "epochs": int(epochs) if epochs is not None else None,
                    "step": step,
                    "progress": progress(),
                    "loss": record["loss"],
                    "test_error_px": record["test_error_px"],
                    "train_seconds": record["train_seconds"],
                    "elapsed_s": time.monotonic() - t0,
                    "eta_s": eta(),
                }
            if final:
                break
    except GeneratorExit:
        save()
        raise
    return save()
