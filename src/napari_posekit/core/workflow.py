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
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._generators import drive
from .config import read_config
from .filesafety import atomic_write_text
from .model_paths import MODELS_FOLDER, _config_train_fraction, latest_checkpoint, model_folder
from .options import PCUTOFF, TrainOptions, train_options
from .project import ProjectError, project_root
from .training_labels import (
    TrainingData,
    find_swapped_pairs,
    infer_symmetric_pairs,
    project_training_data,
)

__all__ = [
    "MODELS_FOLDER",
    "Evaluation",
    "evaluate_project",
    "find_swapped_pairs",
    "format_evaluation",
    "infer_symmetric_pairs",
    "iter_evaluate_project",
    "latest_checkpoint",
    "model_folder",
    "project_training_data",
    "train_project",
]


def _split_train_arguments(options: TrainOptions | None, arguments: dict[str, Any]) -> tuple[TrainOptions, dict]:
    """``(options with the arguments named like its fields, the run arguments stop and device)``."""
    run = {k: v for k, v in arguments.items() if k in ("stop", "device")}
    return train_options(options, **{k: v for k, v in arguments.items() if k not in run}), run


def train_project(
    project: str | os.PathLike,
    options: TrainOptions | None = None,
    *,
    shuffle: int = 1,
    resume: bool | str | os.PathLike = False,
    init_from: bool | str | os.PathLike | None = None,
    **overrides: Any,
) -> Generator[dict[str, Any], None, Path]:
    """Train on a project's labels; a generator like :func:`~napari_posekit.core.train.iter_train`.

    ``options`` (a :class:`~napari_posekit.core.options.TrainOptions`) and
    keyword ``overrides`` named like its fields (``epochs=2``) set the
    hyperparameters; ``stop`` and ``device`` go to ``iter_train`` and any
    other name is a :class:`TypeError`.  The model goes to
    :func:`model_folder`'s ``train/checkpoint.pt``; ``train_fraction``
    defaults to the config's ``TrainingFraction``.
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
    ``{"event": "warning", "message": ...}``.
    """
    from .train import CHECKPOINT_NAME, iter_train

    options, run = _split_train_arguments(options, overrides)
    data = project_training_data(project)
    root = project_root(project)
    if options.train_fraction is None:
        options = options.merged(train_fraction=_config_train_fraction(read_config(root)))
    folder = model_folder(root, train_fraction=options.train_fraction, shuffle=shuffle, split=options.split)
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
    if options.symmetric_pairs is None:
        options = options.merged(symmetric_pairs=infer_symmetric_pairs(data.bodyparts))
    for message in data.warnings:
        yield {"event": "warning", "message": message}
    for message in _label_warnings(root, data, options.symmetric_pairs):
        yield {"event": "warning", "message": message}
    return (
        yield from iter_train(
            data.images,
            data.xy,
            data.bodyparts,
            options=options,
            checkpoint_dir=checkpoint_dir,
            resume=resume_from,
            init_weights=init_weights,
            keep_previous=resume_from is None,
            **run,
        )
    )


def _label_warnings(root: Path, data: TrainingData, pairs) -> list[str]:
    """Likely labeling mistakes from the fast label checks (no model), as warnings; never an error."""
    from .label_qa import training_warnings
    from .label_suspects import LabelSet

    try:
        keys = [p.relative_to(root).as_posix() if p.is_relative_to(root) else str(p) for p in data.images]
        known = set(data.bodyparts)
        skeleton = [(a, b) for a, b, *_ in (read_config(root).get("skeleton") or []) if {a, b} <= known and a != b]
        labels = LabelSet(keys, data.bodyparts, data.xy, root, tuple(skeleton), tuple(map(tuple, pairs or ())))
    except Exception as err:  # noqa: BLE001 - the checks must not stop training
        return [f"the label checks failed ({type(err).__name__}: {err}); training goes on"]
    return training_warnings(labels)


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


def _checked_split(meta: dict[str, Any], images: Sequence[Path], checkpoint: Path, root: Path) -> np.ndarray:
    """``"train"``, ``"test"`` or ``"unused"`` for every labeled image, from the checkpoint's split."""
    from .train_setup import image_keys, split_by_keys

    n = len(images)
    split = np.full(n, "unused", dtype=object)
    train_idx, test_idx = split_by_keys(meta["split"], image_keys(images), n)
    if (train_idx.size and train_idx.max() >= n) or (test_idx.size and test_idx.max() >= n):
        raise ProjectError(
            f"{checkpoint}: the model was trained on {int(max(train_idx.max(initial=-1), test_idx.max(initial=-1))) + 1}+ "
            f"labeled images but the project has {n} now; retrain or evaluate another checkpoint",
            root,
        )
    split[train_idx] = "train"
    split[test_idx] = "test"
    return split


def _summary_table(
    err: np.ndarray,
    conf: np.ndarray,
    data: TrainingData,
    split: np.ndarray,
    meta: dict[str, Any],
    pcutoff: float,
    thresholds: Sequence[float],
) -> pd.DataFrame:
    """One row per split (train, test): mean errors, with the p-cutoff, PCK, per body part, likelihood separation."""
    from .evaluation import likelihood_separation

    err_cut = np.where(conf >= pcutoff, err, np.nan)
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
    return summary


def _per_image_table(
    err: np.ndarray, pred: np.ndarray, conf: np.ndarray, data: TrainingData, split: np.ndarray, root: Path
) -> pd.DataFrame:
    """One row per labeled image: its split, mean and per-body-part errors, predicted x, y and likelihood."""
    per_image = pd.DataFrame(
        {
            "image": [p.relative_to(root).as_posix() if p.is_relative_to(root) else str(p) for p in data.images],
            "split": split,
            "mean_error_px": [_mean(row) for row in err],
        }
    )
    for k, bp in enumerate(data.bodyparts):
        per_image[f"{bp}_error_px"] = err[:, k]
    for k, bp in enumerate(data.bodyparts):
        per_image[f"{bp}_x"] = pred[:, k, 0]
        per_image[f"{bp}_y"] = pred[:, k, 1]
        per_image[f"{bp}_likelihood"] = conf[:, k]
    return per_image


def iter_evaluate_project(
    project: str | os.PathLike,
    checkpoint: str | os.PathLike | None = None,
    *,
    pcutoff: float | None = None,
    thresholds: Sequence[float] = (2.0, 5.0, 10.0),
    device: str | None = "cpu",
    write: bool = True,
    stop: Callable[[], bool] | None = None,
) -> Generator[dict[str, Any], None, Evaluation | None]:
    """Generator form of :func:`evaluate_project`, which can be stopped.

    Yields ``{"event": "predict", "done", "total"}`` before the first
    batch of labeled images and after every one, then returns the
    :class:`Evaluation`.  It stops between batches when ``stop()`` returns
    True or when the generator is closed; stopped, it writes nothing and
    returns None.
    """
    from .checkpoint import load_checkpoint
    from .evaluation import iter_predict_images

    root = project_root(project)
    checkpoint = Path(checkpoint) if checkpoint is not None else latest_checkpoint(root)
    model, codec, meta = load_checkpoint(checkpoint, device=device)
    if pcutoff is None:
        pcutoff = float(read_config(root).get("pcutoff", PCUTOFF) or PCUTOFF)
    data = project_training_data(root)
    if list(meta["bodyparts"]) != data.bodyparts:
        raise ProjectError(f"{checkpoint}: the model's body parts {meta['bodyparts']} differ from the project's", root)
    split = _checked_split(meta, data.images, checkpoint, root)
    total = len(data.images)
    yield {"event": "predict", "done": 0, "total": total}
    work = iter_predict_images(model, codec, data.images, input_scale=float(meta.get("input_scale", 1.0)))
    while True:
        if stop is not None and stop():
            work.close()
            return None
        try:
            done = next(work)
        except StopIteration as finished:
            pred, conf = finished.value
            break
        yield {"event": "predict", "done": done, "total": total}
    err = np.linalg.norm(pred - data.xy, axis=-1)  # (N, K), NaN where not labeled
    summary = _summary_table(err, conf, data, split, meta, pcutoff, thresholds)
    per_image = _per_image_table(err, pred, conf, data, split, root)
    files: list[Path] = []
    if write:
        out = checkpoint.parent.parent / "evaluation"
        if checkpoint.parent.name != "train":
            out = checkpoint.parent / "evaluation"
        out.mkdir(parents=True, exist_ok=True)
        files.append(atomic_write_text(out / "evaluation-results.csv", summary.to_csv(index=False), error=ProjectError))
        files.append(atomic_write_text(out / "per-image-errors.csv", per_image.to_csv(index=False), error=ProjectError))
    return Evaluation(checkpoint, summary, per_image, pcutoff, files)


def evaluate_project(
    project: str | os.PathLike,
    checkpoint: str | os.PathLike | None = None,
    *,
    pcutoff: float | None = None,
    thresholds: Sequence[float] = (2.0, 5.0, 10.0),
    device: str | None = "cpu",
    write: bool = True,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> Evaluation:
    """Evaluate a checkpoint (default: :func:`latest_checkpoint`) on the project's labeled images.

    The train/test split is the one stored in the checkpoint, by image name
    (images labeled since the model was trained count as neither).  Errors are
    Euclidean pixel distances averaged over labeled keypoints (DeepLabCut's
    "RMSE"); "with p-cutoff" averages only keypoints predicted with
    likelihood >= ``pcutoff`` (default: the config's ``pcutoff``, else
    :data:`~napari_posekit.core.options.PCUTOFF`).  With ``write``, the tables
    go to the model folder's ``evaluation/``.  ``progress`` receives the
    events of :func:`iter_evaluate_project`, which this runs to the end.
    """
    work = iter_evaluate_project(
        project, checkpoint, pcutoff=pcutoff, thresholds=thresholds, device=device, write=write
    )
    return drive(work, progress)


def format_evaluation(evaluation: Evaluation) -> str:
    """A short text report: train/test error (also with the p-cutoff), per body part, PCK."""
    s = evaluation.summary
    lines = [f"checkpoint: {evaluation.checkpoint}"]
    for _, row in s.iterrows():
        parts = ", ".join(
            f"{c[: -len('_error_px')]} {row[c]:.2f}"
            for c in s.columns
            if c.endswith("_error_px") and c != "mean_error_px"
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
