"""The Refine widget's long work, without napari or Qt: each runs in a job, off the GUI thread.

- :class:`Predictions`: one video's predictions in the project's body-part
  order, from a layer's arrays (:func:`predictions_from_points`), a
  prediction file (:func:`predictions_from_file`) or an analysis
  (:func:`iter_analyse`).
- :func:`iter_find`: a :class:`FindTask`'s predictions (given, read or
  analysed), their outlier scores and diverse picks, as :class:`Candidates`.
- :func:`write_accepted`: an :class:`AcceptTask`'s frames as PNGs with their
  predictions as machine labels (:class:`Accepted`).
- :func:`iter_retrain`: a :class:`RetrainTask`: evaluate the model, fine-tune
  it (:func:`retrain_kwargs`), evaluate the new one, re-analyse the video;
  returns :class:`~napari_posekit.controllers.refine_results.Retrained`.

The generators yield progress events (see
:class:`~napari_posekit.controllers.refine.JobProgress`) and take a ``stop``
callable; videos are named by the ids the widget gives them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_posekit.controllers.models import model_key, model_name
from napari_posekit.controllers.refine_results import Retrained
from napari_posekit.core._generators import relay
from napari_posekit.core.frames import frame_of_image
from napari_posekit.core.outliers import OutlierError, OutlierScores, outlier_scores
from napari_posekit.core.project import ProjectError

__all__ = [
    "AcceptTask",
    "Accepted",
    "Candidates",
    "FindTask",
    "Predictions",
    "RetrainTask",
    "frames_in_folder",
    "iter_analyse",
    "iter_find",
    "iter_retrain",
    "predictions_from_file",
    "predictions_from_points",
    "retrain_kwargs",
    "write_accepted",
]


def _message(err: BaseException) -> str:
    text = str(err) or type(err).__name__
    return text if not isinstance(err, OSError) or not err.filename else f"{err.strerror or text}: {err.filename}"


# --------------------------------------------------------------------------- predictions
@dataclass
class Predictions:
    """One video's predictions, in the project's body-part order."""

    xy: np.ndarray  # (N, K, 2)
    likelihood: np.ndarray  # (N, K)
    bodyparts: list[str]
    scorer: str
    origin: str  # for the person: where they came from
    checkpoint: Path | None = None
    path: Path | None = None
    model_key: tuple | None = None  # the checkpoint version, when known

    def is_current(self, checkpoint: Path | None, key: tuple | None) -> bool:
        """Whether these predictions were made by ``checkpoint`` as it is now (any predictions, without a model)."""
        if checkpoint is None:
            return True
        if self.model_key is not None:
            return self.model_key == key
        return self.checkpoint is None or same_file(self.checkpoint, checkpoint)


def same_file(a: str | os.PathLike | None, b: str | os.PathLike | None) -> bool:
    """Whether two paths name one file (False when either is empty or cannot be resolved)."""
    if not a or not b:
        return False
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def _ordered(
    xy: np.ndarray, likelihood: np.ndarray, bodyparts: list[str], wanted: list[str] | None, where: str
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The predictions' columns in the project's body-part order."""
    if not wanted:
        return xy, likelihood, list(bodyparts)
    missing = [bp for bp in wanted if bp not in bodyparts]
    if missing:
        raise OutlierError(f"{where} lack the project's body parts {missing}; analyse the video again")
    order = [bodyparts.index(bp) for bp in wanted]
    return xy[:, order], likelihood[:, order], list(wanted)


def predictions_from_points(
    xy: np.ndarray,
    likelihood: np.ndarray,
    names: list[str],
    *,
    frames: np.ndarray,
    n_frames: int,
    bodyparts: list[str] | None,
    name: str,
    scorer: str | None = None,
    checkpoint: str | None = None,
    path: str | None = None,
) -> Predictions:
    """The predictions a points layer named ``name`` holds, as ``(n_frames, K, 2)`` arrays (one per body part of ``names``).

    ``frames`` is the frame of every point of the layer. Raises
    :class:`OutlierError` when a point lies past the video's last frame
    (predictions of another video, or of a video that changed) or frames have
    no point (an analysis of part of the video).
    """
    frames = np.asarray(frames, dtype=int)
    if len(frames) and (frames.max() >= n_frames or frames.min() < 0):
        raise OutlierError(
            f"the layer '{name}' has predictions for frame {int(frames.max())} but the video has "
            f"{n_frames} frames (other video, or the video changed); tick 'analyse again'"
        )
    covered = np.zeros(n_frames, bool)
    covered[frames] = True
    if not covered.all():
        raise OutlierError(
            f"the layer '{name}' covers {int(covered.sum())} of the video's {n_frames} frames; analyse the "
            f"whole video (or tick 'analyse again')"
        )
    xy, likelihood, names = _ordered(
        np.asarray(xy, float), np.asarray(likelihood, float), list(names), bodyparts, f"the predictions of '{name}'"
    )
    return Predictions(
        xy,
        likelihood,
        names,
        str(scorer or "DLC_posekit"),
        f"layer '{name}'",
        Path(checkpoint) if checkpoint else None,
        Path(path) if path else None,
    )


def predictions_from_file(path: Path, n_frames: int, bodyparts: list[str] | None) -> Predictions:
    """A prediction file of the video (one animal, every frame), in the project's body-part order."""
    from napari_posekit.core.predictions import read_predictions

    pred = read_predictions(path)
    if pred.individual_of is not None:
        raise OutlierError("multi-animal predictions are not supported here", path)
    if pred.n_frames != n_frames or not np.array_equal(pred.frames, np.arange(pred.n_frames)):
        raise OutlierError(
            f"the predictions have {pred.n_frames} frames but the video has {n_frames} (the video changed?); "
            f"tick 'analyse again' to predict it anew",
            path,
        )
    xy, likelihood, names = _ordered(
        pred.xy, pred.likelihood, list(pred.bodyparts), bodyparts, f"the predictions {path.name}"
    )
    checkpoint = (pred.metadata or {}).get("checkpoint")
    return Predictions(
        xy, likelihood, names, pred.scorer, f"file {path.name}", Path(checkpoint) if checkpoint else None, path
    )


def iter_analyse(
    model: Path,
    source: Any,
    video_path: Path | None,
    n_frames: int,
    bodyparts: list[str] | None,
    overwrite: bool,
    stop: Callable[[], bool],
) -> Generator[dict, None, Predictions | None]:
    """Analyse the video with ``model`` (its file is reused unless ``overwrite``); returns Predictions, None when stopped.

    Yields ``{"event": "analyze", "done", "total", "fps"}``; the predictions
    carry the version of the model that made them.
    """
    from napari_posekit.core.inference import Predictor, analyze_video, iter_analyze
    from napari_posekit.core.train import default_device

    key = model_key(model)
    predictor = Predictor.load(model, device=default_device())
    if video_path is not None:
        path = yield from relay(
            analyze_video(predictor, video_path, overwrite=overwrite, should_stop=stop),
            lambda e: {"event": "analyze", "done": e["done"], "total": e["total"], "fps": e["fps"]},
        )
        if path is None:
            return None
        predictions = predictions_from_file(Path(path), n_frames, bodyparts)
        predictions.model_key = key
        return predictions
    xy = np.full((n_frames, len(predictor.bodyparts), 2), np.nan)
    likelihood = np.zeros((n_frames, len(predictor.bodyparts)))
    done = 0
    for chunk in iter_analyze(predictor, source, should_stop=stop):
        xy[chunk.start : chunk.stop], likelihood[chunk.start : chunk.stop] = chunk.xy, chunk.likelihood
        done = chunk.stop
        yield {"event": "analyze", "done": done, "total": n_frames, "fps": 0.0}
    if done < n_frames:
        return None
    xy, likelihood, names = _ordered(xy, likelihood, list(predictor.bodyparts), bodyparts, "the model's predictions")
    return Predictions(
        xy,
        likelihood,
        names,
        predictor.scorer,
        f"analysis with {model_name(predictor.checkpoint)}",
        predictor.checkpoint,
        model_key=key,
    )


# --------------------------------------------------------------------------- finding outliers
def frames_in_folder(folder: Path) -> set[int]:
    """Frames a labeled-data folder holds already (images, or labels of either kind)."""
    from napari_posekit.core.refine import load_refinement

    if not folder.is_dir():
        return set()
    return {f for f in map(frame_of_image, load_refinement(folder).images) if f is not None}


@dataclass
class FindTask:
    """What a search for outliers starts from: predictions at hand, a prediction file, or the model to analyse with."""

    video: Any  # the video layer's id
    video_name: str
    video_path: Path | None
    source: Any  # the video file, or the frames of an image stack
    n_frames: int
    bodyparts: list[str] | None
    options: dict[str, Any]  # keyword arguments of outlier_scores
    n: int
    folder: Path | None  # the video's labeled-data folder, whose frames are not offered again
    predictions: Predictions | None = None
    prediction_file: Path | None = None
    model: Path | None = None
    overwrite: bool = False


@dataclass
class Candidates:
    """The outlier scores of one video's predictions and the frames picked from them."""

    video: Any  # the video layer's id
    video_name: str
    video_path: Path | None
    predictions: Predictions
    scores: OutlierScores
    picked: list[int]
    pool: list[int]
    excluded: set[int]
    options: dict[str, Any]
    analysed: bool = False  # the predictions were made by this search
    previous: np.ndarray | None = None  # the combined score before the last retraining


def iter_find(task: FindTask, stop: Callable[[], bool]) -> Generator[dict, None, Candidates | None]:
    """Predictions (given, read or analysed), scores and diverse picks; returns Candidates, None when stopped."""
    from napari_posekit.core.outliers import iter_select_outliers

    predictions, analysed = task.predictions, False
    if predictions is None and task.prediction_file is not None:
        predictions = predictions_from_file(task.prediction_file, task.n_frames, task.bodyparts)
    elif predictions is None:
        predictions = yield from iter_analyse(
            task.model, task.source, task.video_path, task.n_frames, task.bodyparts, task.overwrite, stop
        )
        if predictions is None:
            return None
        analysed = True
    exclude = frames_in_folder(task.folder) if task.folder is not None else set()
    scores = outlier_scores(predictions.xy, predictions.likelihood, **task.options)
    ranking = [int(f) for f in scores.ranking if int(f) not in exclude]
    pool = ranking[: max(task.n, 5 * task.n)]
    picked = yield from relay(
        iter_select_outliers(task.source, None, None, task.n, scores=scores, exclude=exclude, seed=0),
        lambda fraction: {"event": "select", "progress": float(fraction)},
    )
    return Candidates(
        task.video,
        task.video_name,
        task.video_path,
        predictions,
        scores,
        list(picked),
        pool,
        set(exclude),
        task.options,
        analysed,
    )


# --------------------------------------------------------------------------- accepting frames
@dataclass
class AcceptTask:
    """Frames of a video to write into its project's ``labeled-data/<video>/`` with their predictions."""

    project: Path
    video_path: Path
    frames: list[int]
    predictions: Predictions

    @property
    def folder(self) -> Path:
        return self.project / "labeled-data" / self.video_path.stem


@dataclass
class Accepted:
    """What :func:`write_accepted` wrote: the frames (those the folder lacked) and the machine-label file."""

    folder: Path
    frames: list[int]
    taken: list[int]  # requested frames the folder holds already: left as they are
    machine_file: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # what the widget's job adds (the layers read back)


def write_accepted(task: AcceptTask) -> Accepted:
    """Write the frames the folder lacks as PNGs, their predictions as machine labels; add the video to the config."""
    from napari_posekit.core.outliers import add_video_set, write_outlier_frames

    taken = sorted(frames_in_folder(task.folder) & set(task.frames))
    frames = [f for f in task.frames if f not in taken]
    result = Accepted(task.folder, frames, taken)
    if frames:
        p = task.predictions
        _, result.machine_file = write_outlier_frames(
            task.project, task.video_path, frames, p.xy, p.likelihood, p.bodyparts, p.scorer
        )
        add_video_set(task.project, task.video_path)
    return result


# --------------------------------------------------------------------------- retraining
def retrain_kwargs(checkpoint: Path, epochs: int, minutes: float, **overrides: Any) -> dict[str, Any]:
    """``train_project`` keyword arguments to fine-tune ``checkpoint`` (0 = no limit); ValueError without any limit.

    The split and shuffle come from the model folder's name, so the
    fine-tuned model keeps its parent's training and test images apart.
    """
    from napari_posekit.core.refine import retrain_options

    options: dict[str, Any] = {"epochs": int(epochs) or None, "max_minutes": float(minutes) or None}
    if options["epochs"] is None and options["max_minutes"] is None:
        raise ValueError("set a number of epochs or a time budget")
    options.update(retrain_options(checkpoint))
    options.update(overrides)
    return options


@dataclass
class RetrainTask:
    """Fine-tune ``checkpoint`` of ``project``, then re-analyse the video (when ``reanalyse``)."""

    project: Path
    checkpoint: Path
    options: dict[str, Any]
    corrected: set[str]
    reanalyse: bool = False
    video: Any = None  # the video layer's id
    video_path: Path | None = None
    source: Any = None
    n_frames: int = 0
    bodyparts: list[str] | None = None
    score_options: dict[str, Any] = field(default_factory=dict)


def _evaluation(project: Path, checkpoint: Path, text: str, **kwargs):
    from napari_posekit.core.workflow import iter_evaluate_project

    evaluation = yield from relay(
        iter_evaluate_project(project, checkpoint, **kwargs),
        lambda e: {"event": "stage", "text": f"{text}: {e['done']}/{e['total']} images"},
    )
    return evaluation


def iter_retrain(task: RetrainTask, stop: Callable[[], bool]) -> Generator[dict, None, Retrained]:
    """Evaluate the current model, fine-tune it, evaluate the new one, re-analyse the video; returns Retrained."""
    from napari_posekit.core.workflow import train_project

    name = model_name(task.checkpoint)
    yield {"event": "stage", "text": f"Evaluating {name} on the merged labels…"}
    before, before_error = None, None
    try:
        before = yield from _evaluation(task.project, task.checkpoint, f"Evaluating {name}", write=False)
    except ProjectError as err:  # e.g. fewer labeled images than the model was trained on
        before_error = _message(err)
    new = yield from train_project(task.project, init_from=task.checkpoint, stop=stop, **task.options)
    stopped = stop()
    yield {"event": "stage", "text": "Evaluating the retrained model…"}
    after = yield from _evaluation(task.project, Path(new), "Evaluating the retrained model")
    result = Retrained(Path(new), before, after, stopped, before_error=before_error, video=task.video)
    if task.reanalyse and not stopped:
        yield {"event": "stage", "text": "Re-analysing the video…"}
        predictions = yield from iter_analyse(
            Path(new), task.source, task.video_path, task.n_frames, task.bodyparts, True, stop
        )
        if predictions is not None:
            result.predictions = predictions
            result.scores = outlier_scores(predictions.xy, predictions.likelihood, **task.score_options)
    return result
