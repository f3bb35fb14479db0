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
scheduler state for resuming, and a format version.  It is written atomically.
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
from .data import Augmentation, LabeledImages, load_image, load_project_labels, split_block, split_random
from .model import PoseModel

__all__ = [
    "CHECKPOINT_KIND",
    "CHECKPOINT_VERSION",
    "CheckpointError",
    "evaluate",
    "iter_train",
    "load_checkpoint",
    "pose_loss",
    "save_checkpoint",
]

CHECKPOINT_KIND = "napari-posekit-checkpoint"
CHECKPOINT_VERSION = 1
CHECKPOINT_NAME = "checkpoint.pt"


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
    outputs: Any, targets: dict[str, torch.Tensor], locref_loss_weight: float = 0.05
) -> tuple[torch.Tensor, dict[str, float]]:
    """BCE-with-logits on heatmaps weighted by keypoint presence + masked smooth-L1 on locref."""
    heatmaps, locref = outputs
    weights = targets["weights"][..., None, None]  # (B, K, 1, 1)
    bce = F.binary_cross_entropy_with_logits(heatmaps, targets["heatmaps"], reduction="none")
    n_cells = heatmaps.shape[-1] * heatmaps.shape[-2]
    heatmap_loss = (bce * weights).sum() / (weights.sum() * n_cells).clamp(min=1.0)
    lw = targets["locref_weights"]
    sl1 = F.smooth_l1_loss(locref, targets["locref"], reduction="none")
    locref_loss = (sl1 * lw).sum() / lw.sum().clamp(min=1.0)
    total = heatmap_loss + locref_loss_weight * locref_loss
    return total, {"heatmap_loss": float(heatmap_loss.detach()), "locref_loss": float(locref_loss.detach())}


def _lr_lambda(steps_total: int, warmup_steps: int, min_factor: float = 0.01) -> Callable[[int], float]:
    """Linear warm-up to 1, then cosine decay to ``min_factor``."""

    def factor(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        span = max(steps_total - warmup_steps, 1)
        progress = min(max(step - warmup_steps, 0) / span, 1.0)
        return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


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
        if input_scale != 1.0:
            x = F.interpolate(x, scale_factor=input_scale, mode="bilinear", align_corners=False)
        h, w = x.shape[-2:]
        x = F.pad(x, (0, (-w) % pad_to, 0, (-h) % pad_to))
        x = model.normalize(x)
        heatmaps, locref = model(x)
        hc, wc = math.ceil(h / codec.stride), math.ceil(w / codec.stride)
        xy, conf = codec.decode(heatmaps[..., :hc, :wc], locref[..., :hc, :wc], from_logits=True)
        # resampled pixel centres: x_scaled = (x + 0.5) * s - 0.5
        xy = (xy.cpu().numpy().astype(np.float64) + 0.5) / input_scale - 0.5
        xy_out.append(xy)
        conf_out.append(conf.cpu().numpy())
    model.train(was_training)
    k = model.n_keypoints
    if not xy_out:
        return np.zeros((0, k, 2)), np.zeros((0, k))
    return np.concatenate(xy_out), np.concatenate(conf_out)


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
) -> dict[str, Any]:
    """Pixel errors of ``model`` on labeled images.

    Returns ``mean_error_px`` (mean Euclidean distance over labeled
    keypoints, DeepLabCut's "RMSE"), ``per_bodypart`` (dict name -> mean error;
    names default to ``"0", "1", ...``), ``pck@T`` for each threshold ``T`` (the
    fraction of labeled keypoints within ``T`` pixels), ``n_keypoints`` and the
    ``predictions`` ``(N, K, 2)``.
    """
    xy = np.asarray(xy, dtype=np.float64)
    pred, _ = predict_images(model, codec, images, input_scale=input_scale, batch_size=batch_size, device=device)
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


def _default_input_size(first: np.ndarray, scale: float, stride: int, cap: int = 448) -> tuple[int, int]:
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
    head_stride: int = 8,
    epochs: int = 50,
    max_minutes: float | None = None,
    batch_size: int = 8,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    warmup_fraction: float = 0.05,
    input_scale: float = 1.0,
    input_size: tuple[int, int] | None = None,
    sigma: float = 2.0,
    locref_loss_weight: float = 0.05,
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
        Train for ``epochs`` epochs, or stop (saving a checkpoint) after
        ``max_minutes`` of wall time.
    batch_size, lr, weight_decay, warmup_fraction:
        AdamW with linear warm-up over ``warmup_fraction`` of the steps, then
        cosine decay.
    input_scale, input_size:
        Images are scaled by ``input_scale``; training crops are
        ``input_size`` ``(H, W)`` (default: the scaled image, at most 448).
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
        A checkpoint to continue from: its weights, optimiser, scheduler, split
        and completed epochs are restored and training goes on up to ``epochs``.
    stop:
        Called before every step; returning True stops training.
    device:
        Default: CUDA, else MPS, else CPU.

    Yields
    ------
    dict with ``epoch`` (1-based, current), ``step``, ``steps_total``,
    ``loss``, ``lr``, ``elapsed_s``, ``eta_s`` and, after an evaluation,
    ``test_error_px`` (and ``event: "evaluated"``).
    """
    t0 = time.monotonic()
    images, bodyparts, xy = _resolve_data(data, xy, bodyparts)
    n = len(xy)
    if n == 0:
        raise ValueError("no labeled images to train on")
    device = torch.device(device) if device is not None else default_device()
    checkpoint_path = Path(checkpoint_dir) / CHECKPOINT_NAME

    resumed: dict[str, Any] | None = _read_checkpoint(resume) if resume is not None else None
    torch.manual_seed(seed)
    if resumed is not None:
        if list(resumed["bodyparts"]) != list(bodyparts):
            raise CheckpointError(f"{resume}: body parts {resumed['bodyparts']} differ from {bodyparts}")
        model = PoseModel.from_config(resumed["model_config"])
        model.load_state_dict(resumed["state_dict"])
        codec = HeatmapCodec.from_dict(resumed["codec"])
        input_scale = float(resumed.get("input_scale", input_scale))
        train_idx = np.asarray(resumed["split"]["train"], dtype=np.int64)
        test_idx = np.asarray(resumed["split"]["test"], dtype=np.int64)
        split_info = dict(resumed["split"])
        start_epoch = int(resumed["epoch"])
        history = list(resumed.get("history", []))
    else:
        model = PoseModel(backbone, n_keypoints=len(bodyparts), pretrained=pretrained, head_stride=head_stride)
        size = tuple(input_size) if input_size else _default_input_size(load_image(images[0]), input_scale, 32)
        codec = HeatmapCodec(input_size=size, stride=model.stride, sigma=sigma)
        if split == "random":
            train_idx, test_idx = split_random(n, train_fraction, seed)
        elif split == "block":
            train_idx, test_idx = split_block(n, train_fraction)
        else:
            raise ValueError(f"split must be 'random' or 'block', got {split!r}")
        split_info = {"kind": split, "train_fraction": float(train_fraction), "seed": int(seed)}
        start_epoch = 0
        history = []
    split_info["train"] = [int(i) for i in train_idx]
    split_info["test"] = [int(i) for i in test_idx]
    model.to(device).train()

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
    steps_total = steps_per_epoch * int(epochs)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    warmup = int(round(warmup_fraction * steps_total))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(steps_total, warmup))
    if resumed is not None and "optimizer" in resumed:
        optimizer.load_state_dict(resumed["optimizer"])
        scheduler.load_state_dict(resumed["scheduler"])
    step = start_epoch * steps_per_epoch
    epoch = start_epoch
    train_config = {
        "backbone": model.backbone_name,
        "epochs": int(epochs),
        "batch_size": int(batch_size),
        "lr": float(lr),
        "weight_decay": float(weight_decay),
        "warmup_fraction": float(warmup_fraction),
        "locref_loss_weight": float(locref_loss_weight),
        "symmetric_pairs": [list(p) for p in symmetric_pairs or ()],
        "seed": int(seed),
    }
    last_eval: dict[str, Any] = {}

    def save() -> Path:
        return save_checkpoint(
            checkpoint_path,
            {
                "kind": CHECKPOINT_KIND,
                "version": CHECKPOINT_VERSION,
                "model_config": model.config(),
                "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "codec": codec.to_dict(),
                "mean": list(model.mean),
                "std": list(model.std),
                "input_scale": float(input_scale),
                "bodyparts": list(bodyparts),
                "split": split_info,
                "epoch": int(epoch),
                "step": int(step),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "history": history,
                "test_error_px": last_eval.get("mean_error_px"),
                "train_config": train_config,
            },
        )

    def should_stop() -> bool:
        if stop is not None and stop():
            return True
        return max_minutes is not None and time.monotonic() - t0 > 60.0 * max_minutes

    loader_gen = torch.Generator().manual_seed(seed)
    session_steps = 0
    try:
        for epoch_index in range(start_epoch, int(epochs)):
            dataset.set_epoch(epoch_index)
            loader_gen.manual_seed(seed * 100_003 + epoch_index)
            loader = torch.utils.data.DataLoader(
                dataset, batch_size=batch_size, shuffle=True, generator=loader_gen, num_workers=0
            )
            losses = []
            for batch in loader:
                if should_stop():
                    return save()
                batch = {k: v.to(device) for k, v in batch.items()}
                outputs = model(batch["image"])
                loss, parts = pose_loss(outputs, batch, locref_loss_weight)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                step += 1
                session_steps += 1
                losses.append(float(loss.detach()))
                elapsed = time.monotonic() - t0
                eta = elapsed / session_steps * (steps_total - step)
                yield {
                    "epoch": epoch_index + 1,
                    "epochs": int(epochs),
                    "step": step,
                    "steps_total": steps_total,
                    "loss": losses[-1],
                    **parts,
                    "lr": float(scheduler.get_last_lr()[0]),
                    "elapsed_s": elapsed,
                    "eta_s": eta,
                }
            epoch = epoch_index + 1
            record: dict[str, Any] = {"epoch": epoch, "loss": float(np.mean(losses)) if losses else float("nan")}
            if eval_every and len(test_idx) and (epoch % eval_every == 0 or epoch == int(epochs)):
                last_eval = evaluate(
                    model, codec, [images[i] for i in test_idx], xy[test_idx],
                    bodyparts=bodyparts, input_scale=input_scale, batch_size=batch_size, device=device,
                )
                model.train()
                record["test_error_px"] = last_eval["mean_error_px"]
            history.append(record)
            save()
            if "test_error_px" in record:
                elapsed = time.monotonic() - t0
                yield {
                    "event": "evaluated",
                    "epoch": epoch,
                    "epochs": int(epochs),
                    "step": step,
                    "steps_total": steps_total,
                    "loss": record["loss"],
                    "test_error_px": record["test_error_px"],
                    "elapsed_s": elapsed,
                    "eta_s": elapsed / max(session_steps, 1) * (steps_total - step),
                }
    except GeneratorExit:
        save()
        raise
    return save()
