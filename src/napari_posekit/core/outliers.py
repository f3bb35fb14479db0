"""Outlier frames: where the network is probably wrong, picked for correction (DeepLabCut's ``extract_outlier_frames``).

The step has three parts, each in its own module and re-exported here:

* :mod:`napari_posekit.core.outlier_scores`: :func:`outlier_scores` scores
  every frame of an analysed video by jumps, low likelihood and distance from
  the smoothed trajectory, and combines them into one ranking.
* :mod:`napari_posekit.core.outlier_selection`: :func:`select_outliers` takes
  the best-ranked candidates and keeps them diverse by k-means on their
  appearance (DeepLabCut's ``kmeans`` extraction over the outlier frames).
* :mod:`napari_posekit.core.outlier_writing`: :func:`write_outlier_frames`
  writes the picked frames as PNGs into ``labeled-data/<video stem>/`` and the
  predictions on them as machine labels (``machinelabels-iter<iteration>.h5``,
  see :mod:`napari_posekit.core.refine`), ready to be refined.

:func:`extract_outliers` does the whole step for a project: it analyses the
video when it has no predictions yet, scores and picks the frames and writes
them.

Everything here is napari-free.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._generators import drive, relay
from .config import config_bodyparts, read_config
from .options import OUTLIER_EPSILON
from .outlier_scores import OUTLIER_METHODS, OutlierError, OutlierScores, _check_methods, outlier_scores
from .outlier_selection import iter_select_outliers, select_outliers
from .outlier_writing import _frames_in_folder, add_video_set, write_outlier_frames
from .project import ProjectError, project_root

__all__ = [
    "OUTLIER_METHODS",
    "ExtractResult",
    "OutlierError",
    "OutlierScores",
    "add_video_set",
    "extract_outliers",
    "iter_extract_outliers",
    "iter_select_outliers",
    "outlier_scores",
    "select_outliers",
    "write_outlier_frames",
]


@dataclass
class ExtractResult:
    """What :func:`extract_outliers` did.

    ``frames`` are the picked frames, best first, and ``images`` their PNGs
    (written now) in the same order; ``machinelabels`` is the machine-label
    file that holds their predictions (None when nothing was picked).
    ``excluded`` lists the frames that were left out because the folder has
    them already (as images, human labels or machine labels).
    """

    folder: Path
    frames: list[int]
    images: list[Path]
    machinelabels: Path | None
    predictions: Path
    scores: OutlierScores
    excluded: list[int] = field(default_factory=list)
    analyzed: bool = False
    added_video: bool = False


def _find_video(root: Path, video: str | os.PathLike) -> Path:
    path = Path(video).expanduser()
    if path.is_file():
        return path
    # a path from another machine (a moved project's video_sets: C:\\Users\\..., /home/other/...)
    name = str(video).replace("\\", "/").rsplit("/", 1)[-1]
    for candidate in (root / path, root / "videos" / path.name, root / "videos" / name):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{video}: no such video (nor in {root / 'videos'})")


def iter_extract_outliers(
    project: str | os.PathLike,
    video: str | os.PathLike,
    n: int | None = None,
    *,
    methods: Iterable[str] | str = OUTLIER_METHODS,
    epsilon: float = OUTLIER_EPSILON,
    p_bound: float = 0.01,
    window: int = 9,
    smoother: str = "median",
    candidates: int | None = None,
    min_separation: int = 0,
    model: str | os.PathLike | Any | None = None,
    predictions: str | os.PathLike | None = None,
    predictions_dir: str | os.PathLike | None = None,
    analyze: bool = True,
    reanalyze: bool = False,
    device: str | None = "cpu",
    add_to_config: bool = True,
    seed: int | None = 0,
    **analyze_options: Any,
) -> Generator[dict[str, Any], None, ExtractResult]:
    """Generator form of :func:`extract_outliers`.

    Yields ``{"event": "analyze", "done", "total", "fps"}`` while the video is
    analysed, ``{"event": "select", "progress"}`` while candidate frames are
    read and ``{"event": "write", "progress"}`` around the writes; returns the
    :class:`ExtractResult`.
    """
    from .video import read_metadata

    root = project_root(project)
    config = read_config(root)
    if config.get("multianimalproject"):
        raise OutlierError("outlier extraction handles single-animal projects", root)
    bodyparts = config_bodyparts(config)
    n = int(n if n is not None else (config.get("numframes2pick") or 20))
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    methods = _check_methods(methods)
    video = _find_video(root, video)
    meta = read_metadata(video)

    pred_path, analyzed = yield from _prediction_file(
        root,
        video,
        model,
        predictions,
        predictions_dir,
        analyze=analyze,
        reanalyze=reanalyze,
        device=device,
        **analyze_options,
    )
    pred, xy, likelihood = _read_video_predictions(pred_path, video, meta.n_frames, bodyparts)
    scores = outlier_scores(
        xy, likelihood, epsilon=epsilon, p_bound=p_bound, window=window, smoother=smoother, methods=methods
    )
    folder = root / "labeled-data" / video.stem
    already, _ = _frames_in_folder(folder)
    excluded = sorted(f for f in already if f < meta.n_frames and scores.combined[f] > 0)
    work = iter_select_outliers(
        video,
        None,
        None,
        n,
        scores=scores,
        candidates=candidates,
        exclude=already,
        min_separation=min_separation,
        seed=seed,
    )
    frames = yield from relay(work, lambda fraction: {"event": "select", "progress": fraction})

    result = ExtractResult(
        folder=folder,
        frames=list(frames),
        images=[],
        machinelabels=None,
        predictions=pred_path,
        scores=scores,
        excluded=excluded,
        analyzed=analyzed,
    )
    if not frames:
        return result

    # DeepLabCut adds the video to the config when outlier frames are extracted from it
    if add_to_config:
        result.added_video = add_video_set(root, video)

    yield {"event": "write", "progress": 0.0}
    result.images, result.machinelabels = write_outlier_frames(
        root, video, frames, xy, likelihood, bodyparts, pred.scorer, n_frames=meta.n_frames
    )
    yield {"event": "write", "progress": 1.0}
    return result


def _prediction_file(
    root: Path,
    video: Path,
    model: str | os.PathLike | Any | None,
    predictions: str | os.PathLike | None,
    predictions_dir: str | os.PathLike | None,
    *,
    analyze: bool,
    reanalyze: bool,
    device: str | None,
    **analyze_options: Any,
) -> Generator[dict[str, Any], None, tuple[Path, bool]]:
    """The video's predictions: given, the model's own file, any file when there is no model, or a fresh analysis.

    Yields the analysis' ``"analyze"`` events when the video is analysed;
    returns ``(prediction file, whether it was analysed now)``.
    """
    from .predictions import find_predictions

    if predictions is not None:
        return Path(predictions), False
    if model is None:
        from .model_paths import latest_checkpoint

        try:
            model = latest_checkpoint(root)
        except ProjectError:
            found = find_predictions(video, predictions_dir)
            found = [p for p in found if not p.stem.endswith("_filtered")] or found
            if not found:
                raise OutlierError(
                    f"{video.name} has no predictions and the project has no trained model to analyse it "
                    f"with; train a model or analyse the video first",
                    video,
                ) from None
            return found[0], False

    from .inference import Predictor, analyze_video, output_paths

    predictor = model if isinstance(model, Predictor) else Predictor.load(model, device=device)
    pred_path = output_paths(video, predictor.scorer, predictions_dir)["h5"]
    if not reanalyze and pred_path.is_file():
        return pred_path, False
    if not analyze:
        raise OutlierError(f"{video.name} has no predictions of this model ({pred_path.name}); analyse it first", video)
    work = analyze_video(
        predictor, video, output_dir=predictions_dir, overwrite=reanalyze, device=device, **analyze_options
    )
    result = yield from relay(
        work, lambda e: {"event": "analyze", "done": e["done"], "total": e["total"], "fps": e["fps"]}
    )
    if result is None:
        raise OutlierError("the analysis was stopped before the end of the video", video)
    return Path(result), True


def _read_video_predictions(
    pred_path: Path, video: Path, n_frames: int, bodyparts: list[str]
) -> tuple[Any, np.ndarray, np.ndarray]:
    """The prediction file checked against the video and the project: ``(predictions, xy, likelihood)``.

    ``xy`` and ``likelihood`` cover every frame, with the project's body parts
    in the project's order.
    """
    from .predictions import read_predictions

    try:
        pred = read_predictions(pred_path)
    except FileNotFoundError:
        raise OutlierError("prediction file not found", pred_path) from None
    except ValueError as err:
        raise OutlierError(f"not a prediction file: {err}", pred_path) from err
    if pred.individual_of is not None:
        raise OutlierError("multi-animal predictions are not supported here", pred_path)
    if pred.n_frames != n_frames or not np.array_equal(pred.frames, np.arange(pred.n_frames)):
        raise OutlierError(
            f"predictions have {pred.n_frames} frames but the video {video.name} has {n_frames}; "
            f"re-analyse the video (reanalyze=True, or posekit analyze --overwrite)",
            pred_path,
        )
    missing = [bp for bp in bodyparts if bp not in pred.bodyparts]
    if missing:
        raise OutlierError(f"the predictions lack the project's body parts {missing}; re-analyse", pred_path)
    order = [pred.bodyparts.index(bp) for bp in bodyparts]
    return pred, pred.xy[:, order], pred.likelihood[:, order]


def extract_outliers(
    project: str | os.PathLike,
    video: str | os.PathLike,
    n: int | None = None,
    *,
    progress: Callable[[dict[str, Any]], None] | None = None,
    **options: Any,
) -> ExtractResult:
    """Pick a video's outlier frames into the project for refinement (DeepLabCut's ``extract_outlier_frames``).

    Parameters
    ----------
    project
        Project folder or its ``config.yaml``.
    video
        The video (a path, or a file name in the project's ``videos/``). It
        need not be in the config's ``video_sets``: as DeepLabCut does, it is
        added there (with its full-frame crop) when frames are picked, since
        DeepLabCut's training-set tools only look at the labeled-data folders
        of listed videos (``add_to_config=False`` leaves the config alone).
    n
        How many frames (default: the config's ``numframes2pick``).
    progress
        Called with every event of :func:`iter_extract_outliers`.
    **options
        ``methods``, ``epsilon``, ``p_bound``, ``window``, ``smoother``,
        ``candidates``, ``min_separation`` and ``seed`` (see
        :func:`select_outliers`); ``model`` (a checkpoint, a project, or a
        :class:`~napari_posekit.core.inference.Predictor`; default the
        project's latest model); ``predictions`` (a prediction file to use
        instead); ``predictions_dir`` (where predictions are looked for and
        written; default beside the video); ``analyze`` (False: fail instead
        of analysing a video without predictions); ``reanalyze`` (analyse
        again, replacing the file); ``device``; ``add_to_config``; other
        keywords go to :func:`~napari_posekit.core.inference.analyze_video`.

    The predictions are the model's own file (``<video stem><scorer>.h5``),
    made by analysing the video when it is missing; a project without a
    trained model uses the newest prediction file of the video. Frames the
    folder already holds (images, CollectedData or machine-label rows) are
    never picked again: the next candidates take their place. The frames are
    written as PNGs with DeepLabCut's names (:func:`~napari_posekit.core.frames.frame_image_name`)
    and their predictions are added to ``machinelabels-iter<iteration>.h5``
    (and ``machinelabels.csv``) in the folder, existing rows kept, in the
    index style of the folder's CollectedData (DeepLabCut's MultiIndex when
    there is none) and with the network's scorer, as DeepLabCut writes them.
    CollectedData is never touched.

    Raises
    ------
    OutlierError
        No predictions and no model, predictions whose frame count differs
        from the video's, or predictions without the project's body parts.
    ProjectError, FileNotFoundError, VideoOpenError
        An unreadable project or video.
    """
    return drive(iter_extract_outliers(project, video, n, **options), progress)
