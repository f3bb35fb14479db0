"""The multi-animal model: an animal finder, then a pose network on a crop around each animal (top-down).

Both parts are the single-animal network, trained and checkpointed by
:func:`~napari_posekit.core.train.iter_train` and run by
:class:`~napari_posekit.core.predictor.Predictor`:

* the *finder* sees the whole frame, downscaled, and predicts one keypoint
  per individual, at its anchor body part.  Where the animals look different
  (a female and a male fly) it learns who is who; its channels' values at
  each animal are the identity evidence.  Where they look alike, the tracker
  (:func:`~napari_posekit.core.tracking.track`) keeps identities by motion;
* the *pose* network sees a full-resolution square crop centred on one
  animal's anchor and predicts that animal's body parts (other animals in the
  crop are ignored, as in SLEAP's centred-instance models).

Use::

    folder = run(iter_train_multianimal("my-project", minutes=15))
    model = MultiAnimalModel.load(folder)          # or the project
    poses, identity = model.predict(frames)        # (B, I, K, 3), (B, I)
    tracks = analyze_multianimal(model, "video.mp4")   # tracked, written beside the video

A model folder is ``posekit-models/iteration-<n>/<Task><date>-trainset<..>shuffle<..>/``
like a single-animal one, holding ``finder/checkpoint.pt``,
``pose/checkpoint.pt`` and ``multianimal.json``.
"""

from __future__ import annotations

import os
import queue
import threading
import time
import warnings
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import numpy as np

from .checkpoint import CheckpointError
from .options import ANALYSIS_BATCH_SIZE
from .topdown_data import anchor_points, choose_anchor, crop_at, crop_size_for, finder_scale_for, pose_crops
from .topdown_predict import (
    MultiAnimalModel,
    assign_peaks,
    find_model_folder,
    identity_of,
    read_model_description,
)
from .topdown_train import MULTIANIMAL_FILE, iter_train_topdown

__all__ = [
    "IDENTITY_LEARNT",
    "MULTIANIMAL_FILE",
    "CheckpointError",
    "MultiAnimalModel",
    "analyze_multianimal",
    "anchor_points",
    "assign_peaks",
    "choose_anchor",
    "crop_at",
    "crop_size_for",
    "find_model_folder",
    "finder_scale_for",
    "identity_of",
    "iter_train_multianimal",
    "iter_train_topdown",
    "pose_crops",
    "read_model_description",
    "track_identities",
    "tracks_output_path",
]

IDENTITY_LEARNT = 0.75
"""Mean finder confidence in its own assignment above which its identities are used in tracking."""


def iter_train_multianimal(
    project: str | os.PathLike,
    *,
    minutes: float | None = None,
    epochs: int | None = None,
    shuffle: int = 1,
    train_fraction: float | None = None,
    **options: Any,
) -> Generator[dict[str, Any], None, Path]:
    """Train a multi-animal project's model from its labels; yield progress, return the model folder.

    Labels come from :func:`~napari_posekit.core.multianimal.read_multianimal_labels`
    (individuals absent from some frames are normal); the folder is the
    project's model folder for ``train_fraction`` and ``shuffle``
    (:func:`~napari_posekit.core.model_paths.model_folder`; ``train_fraction``
    defaults to the config's ``TrainingFraction``).  ``options`` go to
    :func:`~napari_posekit.core.topdown_train.iter_train_topdown`.  The finder
    splits the images and the pose network its crops, each at random with the
    same fraction and seed.  Unique body parts (DeepLabCut's
    ``uniquebodyparts``) are not learnt yet.
    """
    from .config import read_config
    from .model_paths import _config_train_fraction, model_folder
    from .multianimal import read_multianimal_labels
    from .project import project_root

    root = project_root(project)
    config = read_config(root)
    if not config.multianimal:
        raise CheckpointError(
            f"{root}: a single-animal project (multianimalproject is not true in config.yaml); "
            "train it with the single-animal trainer"
        )
    labels = read_multianimal_labels(root)
    labeled = np.isfinite(labels.xy).all(axis=-1).any(axis=(1, 2))
    if not labeled.any():
        raise ValueError(f"{root}: no labeled animal in labeled-data/; label some frames first")
    images = [root / labels.images[i] for i in np.flatnonzero(labeled)]
    if train_fraction is None:
        train_fraction = _config_train_fraction(config)
    options["train_fraction"] = train_fraction
    folder = model_folder(root, train_fraction=train_fraction, shuffle=shuffle)
    skeleton = [tuple(e) for e in (config.get("skeleton") or []) if len(e) == 2]
    return (
        yield from iter_train_topdown(
            images,
            labels.xy[labeled],
            labels.individuals,
            labels.bodyparts,
            folder=folder,
            minutes=minutes,
            epochs=epochs,
            skeleton=skeleton,
            **options,
        )
    )


def track_identities(poses: np.ndarray, evidence: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Poses kept on their individuals across frames: ``(poses (T, I, K, 3), identity (T, I))``.

    :func:`~napari_posekit.core.tracking.track` links the frames' poses by
    motion and joins the pieces into one track per individual.  Where the
    finder has learnt who is who (its mean confidence in its own assignment,
    from ``evidence`` ``(T, I, I)``, is at least :data:`IDENTITY_LEARNT`),
    its evidence weighs in and the identity confidence is the lower of the
    tracker's and the finder's; where the animals look alike to it, motion
    alone decides and the confidence is the tracker's.
    """
    from .tracking import track

    n = poses.shape[1]
    weights = np.where(np.isfinite(evidence), evidence, 1.0 / max(n, 1)).astype(np.float32)
    own = np.diagonal(evidence, axis1=1, axis2=2)
    informative = bool(np.isfinite(own).any()) and float(np.nanmean(own)) >= IDENTITY_LEARNT
    result = track(poses, n, identity=weights if informative else None)
    tracked = result.poses.astype(np.float32)
    confidence = np.nan_to_num(result.confidence, nan=0.0).astype(np.float32)
    if not informative:
        return tracked, confidence
    # the finder's confidence for the pose each track took; a pose the tracker left out (it dropped a
    # piece it could not join) stays with the individual the finder gave it to
    finder = np.zeros(tracked.shape[:2], np.float32)
    seen = np.isfinite(poses[..., :2]).any(axis=(-1, -2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # poses with no visible part
        for t in range(len(tracked)):
            used = set()
            for a in range(n):
                if not np.isfinite(tracked[t, a, :, :2]).any():
                    continue
                same = np.nanmean(np.abs(poses[t, :, :, :2] - tracked[t, a, None, :, :2]), axis=(1, 2))
                source = int(np.argmin(np.where(np.isfinite(same), same, np.inf)))
                finder[t, a] = weights[t, source, a]
                used.add(source)
            for a in range(n):
                if a not in used and seen[t, a] and not np.isfinite(tracked[t, a, :, :2]).any():
                    tracked[t, a], finder[t, a] = poses[t, a], weights[t, a, a]
                    confidence[t, a] = finder[t, a]
    return tracked, np.fmin(confidence, finder).astype(np.float32)


def tracks_output_path(video: str | os.PathLike, scorer: str, output_dir: str | os.PathLike | None = None) -> Path:
    """Where :func:`analyze_multianimal` writes: ``<video stem><scorer>_el.h5`` beside the video (DeepLabCut's name)."""
    video = Path(video)
    folder = Path(output_dir) if output_dir is not None else video.parent
    return folder / f"{video.stem}{scorer}_el.h5"


def _frames_ahead(get: Callable[[int], np.ndarray], starts: range, size: int, stop_at: int, out: queue.Queue) -> None:
    """Decode batches of frames into ``out`` as ``(start, frames, failed)``; None ends, an exception is handed on.

    A frame that cannot be decoded is black in ``frames`` and its position
    in the batch is in ``failed`` (its poses are then NaN).
    """
    try:
        shape = None
        for s in starts:
            frames, failed = [], []
            for j, i in enumerate(range(s, min(s + size, stop_at))):
                try:
                    frame = np.asarray(get(i))
                    shape = frame.shape
                except Exception:
                    if shape is None:
                        raise
                    frame = np.zeros(shape, np.uint8)
                    failed.append(j)
                frames.append(frame)
            out.put((s, np.stack(frames), failed))
        out.put(None)
    except BaseException as exc:  # noqa: BLE001 - handed to the consumer
        out.put(exc)


def predict_video(
    model: MultiAnimalModel,
    video: Any,
    *,
    start: int = 0,
    stop: int | None = None,
    batch_size: int = ANALYSIS_BATCH_SIZE,
    progress: Callable[[int, int], None] | None = None,
    timings: dict[str, float] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(frames (T,), poses (T, I, K, 3), evidence (T, I, I))`` of a video, untracked.

    A thread decodes the next batch while the networks work.  ``timings``,
    when given, collects the seconds spent ``waiting`` for frames, in the
    ``finder`` and in the ``pose`` network.
    """
    from .inference import frame_source

    get, n, close = frame_source(video)
    stop = n if stop is None else min(int(stop), n)
    start = max(0, int(start))
    out: queue.Queue = queue.Queue(maxsize=2)
    thread = threading.Thread(
        target=_frames_ahead, args=(get, range(start, stop, batch_size), batch_size, stop, out), daemon=True
    )
    thread.start()
    timings = timings if timings is not None else {}
    for key in ("waiting", "finder", "pose"):
        timings.setdefault(key, 0.0)
    poses, evidence = [], []
    try:
        while True:
            t = time.perf_counter()
            item = out.get()
            timings["waiting"] += time.perf_counter() - t
            if item is None:
                break
            if isinstance(item, BaseException):
                raise item
            s, frames, failed = item
            t = time.perf_counter()
            anchors, _, ev = model.find(frames)
            anchors[failed], ev[failed] = np.nan, np.nan
            timings["finder"] += time.perf_counter() - t
            t = time.perf_counter()
            poses.append(model.predict_crops(frames, anchors, batch_size=2 * batch_size))
            timings["pose"] += time.perf_counter() - t
            evidence.append(ev)
            if progress is not None:
                progress(s + len(frames) - start, stop - start)
    finally:
        while thread.is_alive():
            try:
                out.get(timeout=0.1)
            except queue.Empty:
                pass
        close()
    n_ind, k = len(model.individuals), len(model.bodyparts)
    poses_all = np.concatenate(poses) if poses else np.zeros((0, n_ind, k, 3), np.float32)
    evidence_all = np.concatenate(evidence) if evidence else np.zeros((0, n_ind, n_ind), np.float32)
    return np.arange(start, start + len(poses_all), dtype=np.int64), poses_all, evidence_all


def analyze_multianimal(
    model: MultiAnimalModel | str | os.PathLike,
    video: Any,
    *,
    output: str | os.PathLike | None = None,
    start: int = 0,
    stop: int | None = None,
    batch_size: int = ANALYSIS_BATCH_SIZE,
    track: bool = True,
    write: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> Any:
    """Predict, track and write the animals of ``video``; the :class:`~napari_posekit.core.multianimal.Tracks`.

    ``model`` is a :class:`MultiAnimalModel` or what :meth:`MultiAnimalModel.load`
    takes; ``video`` a video file, a :class:`~napari_posekit.core.video.VideoReader`
    or an ``(N, H, W[, 3])`` array.  With ``track`` the poses go through :func:`track_identities`;
    without it they stay as the finder assigned them frame by frame.
    ``output`` is the file to write (``.h5`` with its ``.csv``, or ``.slp``;
    default :func:`tracks_output_path`); ``write=False`` writes nothing.
    """
    from .multianimal import Tracks, write_tracks

    if not isinstance(model, MultiAnimalModel):
        model = MultiAnimalModel.load(model)
    frames, poses, evidence = predict_video(
        model, video, start=start, stop=stop, batch_size=batch_size, progress=progress
    )
    if track and len(frames):
        poses, identity = track_identities(poses, evidence)
    else:
        identity = identity_of(evidence)
    tracks = Tracks(
        poses=poses,
        individuals=model.individuals,
        bodyparts=model.bodyparts,
        frames=frames,
        scorer=model.scorer,
        identity=identity,
        skeleton=list(model.skeleton),
        video=os.fspath(video) if isinstance(video, (str, os.PathLike)) else None,
    )
    if write:
        if output is None and tracks.video is None:
            raise ValueError("give output= to write the tracks of frames that are not a video file")
        path = Path(output) if output is not None else tracks_output_path(video, model.scorer)
        write_tracks(path, tracks)
    return tracks
