"""Project-level training and evaluation: what ``posekit train`` / ``posekit evaluate`` and the widget run.

Models live inside the DeepLabCut project folder, one folder per training
set and shuffle, as DeepLabCut does::

    <project>/posekit-models/iteration-<i>/<Task><date>-trainset<pct>shuffle<n>[-block]/
        train/checkpoint.pt                  the model (latest state)
        train/checkpoint-<time>.pt           earlier runs, kept when a new run starts
        evaluation/evaluation-results.csv    summary: train/test error, p-cutoff, per body part, PCK
        evaluation/per-image-errors.csv      every labeled image: split, errors, predictions

:func:`latest_checkpoint` finds the most recently written ``checkpoint.pt``
from the project path alone.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .data import load_project_labels
from .project import (
    ProjectError,
    atomic_write_text,
    config_bodyparts,
    missing_images,
    read_collected,
    read_config,
)

__all__ = [
    "MODELS_FOLDER",
    "Evaluation",
    "evaluate_project",
    "find_swapped_pairs",
    "format_evaluation",
    "infer_symmetric_pairs",
    "latest_checkpoint",
    "model_folder",
    "project_training_data",
    "train_project",
]

MODELS_FOLDER = "posekit-models"


def _project_root(project: str | os.PathLike) -> Path:
    path = Path(project).expanduser().resolve()
    if path.is_file() and path.name.endswith(".yaml"):
        path = path.parent
    if not (path / "config.yaml").is_file():
        raise ProjectError("not a DeepLabCut project folder (no config.yaml)", path)
    return path


def model_folder(
    project: str | os.PathLike, *, train_fraction: float | None = None, shuffle: int = 1, split: str = "random"
) -> Path:
    """The model folder of a training set, named as DeepLabCut names its ``dlc-models`` folders."""
    root = _project_root(project)
    config = read_config(root)
    if train_fraction is None:
        train_fraction = _config_train_fraction(config)
    name = f"{config.get('Task', 'project')}{config.get('date', '')}-trainset{int(round(100 * train_fraction))}shuffle{shuffle}"
    if split == "block":
        name += "-block"
    return root / MODELS_FOLDER / f"iteration-{int(config.get('iteration', 0) or 0)}" / name


def _config_train_fraction(config) -> float:
    value = config.get("TrainingFraction", [0.95])
    if isinstance(value, (list, tuple)):
        value = value[0] if value else 0.95
    return float(value)


def latest_checkpoint(project: str | os.PathLike) -> Path:
    """The most recently written ``checkpoint.pt`` under the project's models folder."""
    root = _project_root(project)
    found = [p for p in (root / MODELS_FOLDER).glob("iteration-*/*/train/checkpoint.pt") if p.is_file()]
    if not found:
        raise ProjectError(f"no trained model yet (nothing in {MODELS_FOLDER}/); run 'posekit train' first", root)
    return max(found, key=lambda p: p.stat().st_mtime_ns)


def infer_symmetric_pairs(bodyparts: Sequence[str]) -> list[tuple[str, str]]:
    """Left/right pairs by name: ``leftear``/``rightear``, ``left_paw``/``right_paw``, ``L_ear``/``R_ear``..."""
    pairs: list[tuple[str, str]] = []
    lowered = {bp.lower(): bp for bp in bodyparts}
    for bp in bodyparts:
        low = bp.lower()
        for left, right in (("left", "right"), ("l_", "r_"), ("_l", "_r")):
            if left in low:
                other = low.replace(left, right, 1) if left != "_l" or low.endswith("_l") else None
                if other and other in lowered and other != low:
                    pairs.append((bp, lowered[other]))
                break
    return pairs


def find_swapped_pairs(
    xy: np.ndarray, bodyparts: Sequence[str], pairs: Sequence[tuple[str, str]], *,
    min_frames: int = 10, agreement: float = 0.9, min_sine: float = 0.5,
) -> list[tuple[int, str, str, int, int]]:
    """Frames whose left/right pair is on the other side of the body than in almost every other frame.

    The side of ``left`` is taken relative to the line from the pair's
    midpoint to the centroid of the other labeled body parts (for a top-down
    mouse: the ears either side of the head-to-body line).  Frames where
    that angle is too flat to tell (``|sin| < min_sine``) are not judged.
    When at least ``min_frames`` frames are judged and a share of at least
    ``agreement`` of them agree, every frame on the other side is returned
    as ``(frame, left, right, n_agreeing, n_judged)``; labelers swap left and
    right easily and one swapped frame costs the model its whole pair.
    """
    index = {bp: k for k, bp in enumerate(bodyparts)}
    found: list[tuple[int, str, str, int, int]] = []
    for left, right in pairs:
        if left not in index or right not in index:
            continue
        a, b = xy[:, index[left]], xy[:, index[right]]
        others = [k for k in range(len(bodyparts)) if k not in (index[left], index[right])]
        if not others:
            continue
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # frames without other labels
            centre = np.nanmean(xy[:, others], axis=1)
            mid = (a + b) / 2
            ref, side = centre - mid, a - mid
            cross = ref[:, 0] * side[:, 1] - ref[:, 1] * side[:, 0]
            sine = cross / (np.linalg.norm(ref, axis=1) * np.linalg.norm(side, axis=1))
        judged = np.isfinite(sine) & (np.abs(sine) >= min_sine)
        n = int(judged.sum())
        if n < min_frames:
            continue
        positive = int((sine[judged] > 0).sum())
        majority = max(positive, n - positive)
        if majority < agreement * n:
            continue
        sign = 1.0 if positive >= n - positive else -1.0
        for f in np.flatnonzero(judged & (np.sign(sine) == -sign)):
            found.append((int(f), left, right, majority, n))
    return found


# --------------------------------------------------------------------------- training
@dataclass
class TrainingData:
    """Labeled images of a project, checked for training."""

    images: list[Path]
    bodyparts: list[str]
    xy: np.ndarray
    warnings: list[str]


def _image_size_or_error(image: Path) -> tuple[int, int]:
    """``(width, height)`` of a labeled image from its header; :class:`ProjectError` naming it otherwise."""
    from .images import image_size

    try:
        return image_size(image)
    except FileNotFoundError:
        raise ProjectError("labeled image missing on disk", image) from None
    except OSError as err:
        raise ProjectError(f"cannot read the labeled image: {err.strerror or err}", image) from err


def _drop_labels_outside(
    images: Sequence[Path], xy: np.ndarray, bodyparts: Sequence[str], root: Path
) -> tuple[np.ndarray, list[str]]:
    """``xy`` with every label outside its own image set to NaN, and a note for each.

    Each image is measured on its own (header only): frames of one folder may
    differ in size (the same video cropped differently, two cameras).
    """
    from .images import outside_image

    xy = xy.copy()
    labeled = ~np.isnan(xy).any(axis=-1)
    sizes = np.array([_image_size_or_error(im) if labeled[i].any() else (np.inf, np.inf)
                      for i, im in enumerate(images)], dtype=float).reshape(-1, 2)
    notes: list[str] = []
    for i, k in np.argwhere(outside_image(xy, sizes)):
        image = images[i]
        name = image.relative_to(root).as_posix() if image.is_relative_to(root) else str(image)
        (x, y), (w, h) = xy[i, k], sizes[i].astype(int)
        notes.append(f"{name}: {bodyparts[k]} at ({x:.1f}, {y:.1f}) is outside the {w}x{h} image; left out of training")
        xy[i, k] = np.nan
    return xy, notes


def project_training_data(project: str | os.PathLike) -> TrainingData:
    """Load and check a project's human labels for training.

    Images may differ in size within and across ``labeled-data`` folders; each
    is read and measured on its own, and coordinates stay in its own pixels.
    Raises :class:`ProjectError` for a project without labeled frames, a
    body part that is never labeled, labeled image files that are missing or
    unreadable, or infinite coordinates.  Labels outside their own image are
    left out of training (each listed in ``warnings``).  Nothing is written.
    """
    root = _project_root(project)
    config = read_config(root)
    bodyparts = config_bodyparts(config)
    for file in sorted((root / "labeled-data").glob("*/CollectedData_*.h5")):
        missing = missing_images(read_collected(file), root)
        if missing:
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            raise ProjectError(f"labeled images missing on disk: {', '.join(missing[:3])}{more}", file.parent)
    images, parts, xy = load_project_labels(root)
    if parts != list(bodyparts):
        raise ProjectError(f"body parts {parts} differ from config.yaml's {list(bodyparts)}", root)
    labeled = ~np.isnan(xy).any(axis=-1)
    if not labeled.any():
        raise ProjectError("no labeled frames: label some frames before training", root)
    never = [bp for k, bp in enumerate(bodyparts) if not labeled[:, k].any()]
    if never:
        raise ProjectError(
            f"body part(s) {', '.join(never)} never labeled: label them on some frames or remove them from config.yaml",
            root,
        )
    if np.isinf(xy).any():
        n, k = np.argwhere(np.isinf(xy).any(axis=-1))[0]
        raise ProjectError(f"infinite coordinate for {bodyparts[k]} in {images[n]}", root)
    keep = [i for i in range(len(images)) if labeled[i].any()]
    kept = [images[i] for i in keep]
    xy, notes = _drop_labels_outside(kept, xy[keep], list(bodyparts), root)
    return TrainingData(kept, list(bodyparts), xy, notes)


def train_project(
    project: str | os.PathLike,
    *,
    split: str = "random",
    train_fraction: float | None = None,
    shuffle: int = 1,
    resume: bool | str | os.PathLike = False,
    init_from: bool | str | os.PathLike | None = None,
    symmetric_pairs: Sequence[tuple[str, str]] | None = None,
    **kwargs: Any,
) -> Generator[dict[str, Any], None, Path]:
    """Train on a project's labels; a generator like :func:`~napari_posekit.core.train.iter_train`.

    The model goes to :func:`model_folder`'s ``train/checkpoint.pt``;
    ``train_fraction`` defaults to the config's ``TrainingFraction``.
    ``resume=True`` continues that folder's checkpoint (a path: that
    checkpoint).  ``init_from`` fine-tunes: a new run for the current
    iteration that starts from that checkpoint's weights (True: the
    project's :func:`latest_checkpoint`) with a fresh optimiser, schedule
    and split, on the labels as they are now (``init_weights`` of
    ``iter_train``).  A fresh or fine-tuning run keeps an earlier
    ``checkpoint.pt`` as ``checkpoint-<time>.pt`` when it writes its first
    checkpoint.
    Symmetric pairs default to :func:`infer_symmetric_pairs`.  Label
    problems that do not stop training are yielded first as
    ``{"event": "warning", "message": ...}``.  Other keyword arguments go to
    ``iter_train``.
    """
    from .train import CHECKPOINT_NAME, iter_train

    data = project_training_data(project)
    root = _project_root(project)
    if train_fraction is None:
        train_fraction = _config_train_fraction(read_config(root))
    folder = model_folder(root, train_fraction=train_fraction, shuffle=shuffle, split=split)
    checkpoint_dir = folder / "train"
    resume_from = None
    if resume is True:
        resume_from = checkpoint_dir / CHECKPOINT_NAME
        if not resume_from.is_file():
            raise ProjectError("nothing to resume: no checkpoint yet", checkpoint_dir)
    elif resume:
        resume_from = Path(resume)
    init_weights = None
    if init_from is True:
        init_weights = latest_checkpoint(root)
    elif init_from:
        init_weights = Path(init_from)
    if resume_from is not None and init_weights is not None:
        raise ValueError("give resume (continue a run) or init_from (fine-tune in a new run), not both")
    if symmetric_pairs is None:
        symmetric_pairs = infer_symmetric_pairs(data.bodyparts)
    for message in data.warnings:
        yield {"event": "warning", "message": message}
    for frame, left, right, agree, judged in find_swapped_pairs(data.xy, data.bodyparts, symmetric_pairs):
        image = data.images[frame]
        name = image.relative_to(root).as_posix() if image.is_relative_to(root) else str(image)
        yield {"event": "warning", "message": f"{name}: {left} and {right} are on the opposite sides from {agree} "
                                              f"of {judged} frames; swapped? (trained as labeled)"}
    return (
        yield from iter_train(
            data.images,
            data.xy,
            data.bodyparts,
            split=split,
            train_fraction=train_fraction,
            symmetric_pairs=symmetric_pairs,
            checkpoint_dir=checkpoint_dir,
            resume=resume_from,
            init_weights=init_weights,
            keep_previous=resume_from is None,
            **kwargs,
        )
    )


# --------------------------------------------------------------------------- evaluation
@dataclass
class Evaluation:
    """Result of :func:`evaluate_project`.

    ``summary``: one row per split (train, test) with mean errors, errors
    with the p-cutoff, per body part and PCK.  ``per_image``: one row per
    labeled image with its split, mean error, per-body-part errors, predicted
    x/y/likelihood.  ``worst_test``: ``per_image`` test rows, worst first.
    """

    checkpoint: Path
    summary: pd.DataFrame
    per_image: pd.DataFrame
    pcutoff: float
    files: list[Path]

    @property
    def worst_test(self) -> pd.DataFrame:
        test = self.per_image[self.per_image["split"] == "test"]
        return test.sort_values("mean_error_px", ascending=False, na_position="last")

    def error(self, split: str, pcutoff: bool = False) -> float:
        column = "mean_error_px_pcutoff" if pcutoff else "mean_error_px"
        rows = self.summary[self.summary["split"] == split]
        return float(rows[column].iloc[0]) if len(rows) else float("nan")


def _mean(values: np.ndarray) -> float:
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")


def evaluate_project(
    project: str | os.PathLike,
    checkpoint: str | os.PathLike | None = None,
    *,
    pcutoff: float | None = None,
    thresholds: Sequence[float] = (2.0, 5.0, 10.0),
    device: str | None = "cpu",
    write: bool = True,
) -> Evaluation:
    """Evaluate a checkpoint (default: :func:`latest_checkpoint`) on the project's labeled images.

    The train/test split is the one stored in the checkpoint, by image name
    (images labeled since the model was trained count as neither).  Errors are
    Euclidean pixel distances averaged over labeled keypoints (DeepLabCut's
    "RMSE"); "with p-cutoff" averages only keypoints predicted with
    likelihood >= ``pcutoff`` (default: the config's ``pcutoff``, else 0.6).
    With ``write``, the tables go to the model folder's ``evaluation/``.
    """
    from .train import image_keys, likelihood_separation, load_checkpoint, predict_images, split_by_keys

    root = _project_root(project)
    checkpoint = Path(checkpoint) if checkpoint is not None else latest_checkpoint(root)
    model, codec, meta = load_checkpoint(checkpoint, device=device)
    if pcutoff is None:
        pcutoff = float(read_config(root).get("pcutoff", 0.6) or 0.6)
    data = project_training_data(root)
    if list(meta["bodyparts"]) != data.bodyparts:
        raise ProjectError(f"{checkpoint}: the model's body parts {meta['bodyparts']} differ from the project's", root)
    n = len(data.images)
    split = np.full(n, "unused", dtype=object)
    train_idx, test_idx = split_by_keys(meta["split"], image_keys(data.images), n)
    if (train_idx.size and train_idx.max() >= n) or (test_idx.size and test_idx.max() >= n):
        raise ProjectError(
            f"{checkpoint}: the model was trained on {int(max(train_idx.max(initial=-1), test_idx.max(initial=-1))) + 1}+ "
            f"labeled images but the project has {n} now; retrain or evaluate another checkpoint",
            root,
        )
    split[train_idx] = "train"
    split[test_idx] = "test"
    pred, conf = predict_images(model, codec, data.images, input_scale=float(meta.get("input_scale", 1.0)))
    err = np.linalg.norm(pred - data.xy, axis=-1)  # (N, K), NaN where not labeled
    confident = conf >= pcutoff
    err_cut = np.where(confident, err, np.nan)
    bodyparts = data.bodyparts

    rows = []
    for name in ("train", "test"):
        sel = split == name
        e, ec = err[sel], err_cut[sel]
        row: dict[str, Any] = {
            "split": name,
            "images": int(sel.sum()),
            "keypoints": int((~np.isnan(e)).sum()),
            "mean_error_px": _mean(e.ravel()),
            "mean_error_px_pcutoff": _mean(ec.ravel()),
            "pcutoff": pcutoff,
        }
        for t in thresholds:
            values = e[~np.isnan(e)]
            row[f"pck@{t:g}px"] = float((values <= t).mean()) if values.size else float("nan")
        for k, bp in enumerate(bodyparts):
            row[f"{bp}_error_px"] = _mean(e[:, k])
        if np.isnan(data.xy).any():  # parts missing from some frames: does the likelihood tell?
            separation = likelihood_separation(conf[sel], ~np.isnan(data.xy[sel]).any(axis=-1), bodyparts, pcutoff)
            for bp, sep in separation.items():
                if sep["n_absent"]:
                    row[f"{bp}_labeled_above_pcutoff"] = sep["labeled_above"]
                    row[f"{bp}_absent_below_pcutoff"] = sep["absent_below"]
        rows.append(row)
    summary = pd.DataFrame(rows)
    summary.insert(0, "epochs", int(meta.get("epoch", 0)))
    summary.insert(1, "train_fraction", float(meta["split"].get("train_fraction", float("nan"))))
    summary.insert(2, "split_kind", meta["split"].get("kind", ""))

    per_image = pd.DataFrame(
        {
            "image": [p.relative_to(root).as_posix() if p.is_relative_to(root) else str(p) for p in data.images],
            "split": split,
            "mean_error_px": [_mean(row) for row in err],
        }
    )
    for k, bp in enumerate(bodyparts):
        per_image[f"{bp}_error_px"] = err[:, k]
    for k, bp in enumerate(bodyparts):
        per_image[f"{bp}_x"] = pred[:, k, 0]
        per_image[f"{bp}_y"] = pred[:, k, 1]
        per_image[f"{bp}_likelihood"] = conf[:, k]

    files: list[Path] = []
    if write:
        out = checkpoint.parent.parent / "evaluation"
        if checkpoint.parent.name != "train":
            out = checkpoint.parent / "evaluation"
        out.mkdir(parents=True, exist_ok=True)
        files.append(atomic_write_text(out / "evaluation-results.csv", summary.to_csv(index=False)))
        files.append(atomic_write_text(out / "per-image-errors.csv", per_image.to_csv(index=False)))
    return Evaluation(checkpoint, summary, per_image, pcutoff, files)


def format_evaluation(evaluation: Evaluation) -> str:
    """A short text report: train/test error (also with the p-cutoff), per body part, PCK."""
    s = evaluation.summary
    lines = [f"checkpoint: {evaluation.checkpoint}"]
    for _, row in s.iterrows():
        parts = ", ".join(
            f"{c[:-len('_error_px')]} {row[c]:.2f}" for c in s.columns if c.endswith("_error_px") and c != "mean_error_px"
        )
        pck = ", ".join(f"{c} {row[c]:.0%}" for c in s.columns if c.startswith("pck@"))
        lines.append(
            f"{row['split']:5s} ({row['images']} images): mean error {row['mean_error_px']:.2f} px, "
            f"with p-cutoff {row['pcutoff']:g}: {row['mean_error_px_pcutoff']:.2f} px"
        )
        lines.append(f"      per body part (px): {parts}; {pck}")
        for c in s.columns:
            if c.endswith("_absent_below_pcutoff") and not pd.isna(row[c]):
                bp = c[: -len("_absent_below_pcutoff")]
                lines.append(
                    f"      {bp}: likelihood >= p-cutoff on {row[bp + '_labeled_above_pcutoff']:.0%} of its labels, "
                    f"below it on {row[c]:.0%} of the frames where it is not labeled"
                )
    return "\n".join(lines)
