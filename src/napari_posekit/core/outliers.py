"""Outlier frames: where the network is probably wrong, picked for correction (DeepLabCut's ``extract_outlier_frames``).

Three criteria score every frame of an analysed video, as in DeepLabCut:

* ``"jump"``: a body part moved more than ``epsilon`` pixels since the previous
  frame.
* ``"uncertain"``: body parts with a likelihood below ``p_bound`` (or not found).
* ``"fitting"``: a body part is more than ``epsilon`` pixels from its temporally
  smoothed trajectory. DeepLabCut fits a SARIMAX model per body part; here the
  trajectory is smoothed with :func:`napari_posekit.core.filtering.filter_predictions`
  (a running median by default, which follows monotone motion exactly and removes
  excursions shorter than half its window), with points below ``p_bound`` left
  out of the fit.

:func:`outlier_scores` combines them into one ranking, :func:`select_outliers`
takes the best-ranked candidates and keeps them diverse by k-means on their
appearance (DeepLabCut's ``kmeans`` extraction over the outlier frames, with the
thumbnails of :mod:`napari_posekit.core.frames`), and :func:`extract_outliers`
does the whole step for a project: it analyses the video when it has no
predictions yet, picks the frames, writes them as PNGs into
``labeled-data/<video stem>/`` and the predictions on them as machine labels
(``machinelabels-iter<iteration>.h5``, see :mod:`napari_posekit.core.refine`)
ready to be refined.

Everything here is napari-free.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._generators import drive, relay
from .frames import _kmeans, _Thumbnailer, extract_frames, frame_image_name
from .images import to_rgb_uint8
from .project import (
    COLUMN_NAMES,
    IMAGE_EXTENSIONS,
    ProjectError,
    _image_keys,
    config_bodyparts,
    index_style,
    read_collected,
    read_config,
    to_multi_index,
    to_string_index,
    write_config,
)
from .refine import find_machinelabels, machinelabels_path, read_machinelabels, write_machinelabels

__all__ = [
    "OUTLIER_METHODS",
    "ExtractResult",
    "OutlierError",
    "OutlierScores",
    "extract_outliers",
    "iter_extract_outliers",
    "iter_select_outliers",
    "outlier_scores",
    "select_outliers",
]

#: The criteria :func:`outlier_scores` knows, in DeepLabCut's names.
OUTLIER_METHODS = ("jump", "uncertain", "fitting")


class OutlierError(ProjectError):
    """Outlier extraction cannot go on (no predictions, predictions of another video or model...)."""


# --------------------------------------------------------------------------------------
# Scores
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutlierScores:
    """Per-frame outlier scores of one video.

    Attributes
    ----------
    jump_px:
        ``(N,)`` the largest displacement of a body part since the previous
        frame, in pixels (0 for the first frame and where a point is missing).
    uncertain:
        ``(N,)`` the fraction of body parts with likelihood below ``p_bound``
        (or not found).
    fitting_px:
        ``(N,)`` the largest distance of a body part from its smoothed
        trajectory, in pixels (0 where either is missing).
    components:
        Per method, ``(N,)`` its normalised score: 0 where the frame is not an
        outlier by that criterion (jump or fitting distance at most
        ``epsilon``, no body part below ``p_bound``), else the excess over the
        threshold (pixels beyond ``epsilon``; the uncertain fraction) divided
        by the median of the criterion's non-zero values over the video. A
        frame at the typical level of a criterion's outliers scores 1, and the
        criteria, measured in different units, become comparable.
    combined:
        ``(N,)`` the sum of the components: a frame flagged by several
        criteria ranks above one flagged by a single criterion at the same level.
    """

    jump_px: np.ndarray
    uncertain: np.ndarray
    fitting_px: np.ndarray
    components: dict[str, np.ndarray]
    combined: np.ndarray
    methods: tuple[str, ...]
    epsilon: float
    p_bound: float

    @property
    def n_frames(self) -> int:
        return len(self.combined)

    @property
    def flagged(self) -> np.ndarray:
        """``(N,)`` frames that are outliers by at least one of the methods."""
        return self.combined > 0

    @property
    def ranking(self) -> np.ndarray:
        """Flagged frames, highest combined score first (ties: earlier frame first)."""
        flagged = np.flatnonzero(self.flagged)
        order = np.lexsort((flagged, -self.combined[flagged]))
        return flagged[order]

    def top(self, n: int) -> list[int]:
        """The ``n`` best-ranked frames (fewer when fewer are flagged)."""
        return [int(i) for i in self.ranking[: max(0, int(n))]]


def _check_methods(methods: Iterable[str] | str) -> tuple[str, ...]:
    if isinstance(methods, str):
        methods = (methods,)
    methods = tuple(dict.fromkeys(methods))
    unknown = [m for m in methods if m not in OUTLIER_METHODS]
    if unknown or not methods:
        raise ValueError(f"methods must be some of {OUTLIER_METHODS}, got {list(methods)}")
    return methods


def _robust_normalise(values: np.ndarray) -> np.ndarray:
    positive = values[values > 0]
    if positive.size == 0:
        return np.zeros_like(values)
    return values / max(float(np.median(positive)), 1e-12)


def outlier_scores(
    xy: np.ndarray,
    likelihood: np.ndarray,
    *,
    epsilon: float = 20.0,
    p_bound: float = 0.01,
    window: int = 9,
    smoother: str = "median",
    methods: Iterable[str] | str = OUTLIER_METHODS,
) -> OutlierScores:
    """Score every frame of a video's predictions as an outlier candidate.

    Parameters
    ----------
    xy
        ``(N, K, 2)`` predicted ``(x, y)`` per frame and body part, NaN where missing.
    likelihood
        ``(N, K)``; NaN counts as below ``p_bound``.
    epsilon
        Pixels: a larger displacement between consecutive frames is a jump,
        a larger distance from the smoothed trajectory a fitting error
        (DeepLabCut's ``epsilon``, default 20).
    p_bound
        Likelihood below which a body part is uncertain (DeepLabCut's
        ``p_bound``, default 0.01); such points are also left out of the
        smoothed trajectory.
    window
        Odd number of frames of the smoother.
    smoother
        ``"median"`` or ``"savgol"`` (see :func:`~napari_posekit.core.filtering.filter_predictions`).
    methods
        Which of ``"jump"``, ``"uncertain"`` and ``"fitting"`` make up the combined score.

    Returns
    -------
    OutlierScores
        The raw measures, the normalised components and the combined score.

    Raises
    ------
    ValueError
        Bad shapes or options.
    """
    methods = _check_methods(methods)
    xy = np.asarray(xy, dtype=np.float64)
    if xy.ndim != 3 or xy.shape[2] != 2:
        raise ValueError(f"xy must have shape (n_frames, n_bodyparts, 2), got {xy.shape}")
    likelihood = np.asarray(likelihood, dtype=np.float64)
    if likelihood.shape != xy.shape[:2]:
        raise ValueError(f"likelihood must have shape {xy.shape[:2]}, got {likelihood.shape}")
    epsilon = float(epsilon)
    p_bound = float(p_bound)
    if not (np.isfinite(epsilon) and epsilon >= 0):
        raise ValueError(f"epsilon must be a number of pixels >= 0, got {epsilon}")
    if not np.isfinite(p_bound):
        raise ValueError(f"p_bound must be a finite number, got {p_bound}")
    n, k = likelihood.shape
    present = np.isfinite(xy).all(axis=2)

    from .filtering import filter_predictions  # scipy: imported when scores are computed

    with np.errstate(invalid="ignore"):
        # jump: displacement from the previous frame, per body part
        step = np.zeros((n, k))
        if n > 1:
            d = np.linalg.norm(np.diff(xy, axis=0), axis=2)
            step[1:] = np.where(np.isfinite(d), d, 0.0)
        jump_px = step.max(axis=1) if k else np.zeros(n)

        # uncertain: below p_bound, not found, or NaN likelihood
        low = ~(likelihood >= p_bound) | ~present
        uncertain = low.mean(axis=1) if k else np.zeros(n)

        # fitting: distance from the smoothed trajectory of the confident points
        if n >= 3 and k:
            smooth, _ = filter_predictions(
                xy, likelihood, method=smoother, window=window, pcutoff=max(p_bound, 0.0), max_gap=window
            )
            dev = np.linalg.norm(xy - smooth, axis=2)
            dev = np.where(np.isfinite(dev), dev, 0.0)
            fitting_px = dev.max(axis=1)
            fit_excess = np.clip(dev - epsilon, 0.0, None).max(axis=1)
        else:
            fitting_px = np.zeros(n)
            fit_excess = np.zeros(n)
        jump_excess = np.clip(step - epsilon, 0.0, None).max(axis=1) if k else np.zeros(n)

    raw = {"jump": jump_excess, "uncertain": uncertain, "fitting": fit_excess}
    components = {m: _robust_normalise(raw[m]) for m in methods}
    combined = np.sum([components[m] for m in methods], axis=0) if n else np.zeros(0)
    return OutlierScores(
        jump_px=jump_px,
        uncertain=uncertain,
        fitting_px=fitting_px,
        components=components,
        combined=np.asarray(combined, dtype=np.float64),
        methods=methods,
        epsilon=epsilon,
        p_bound=p_bound,
    )


# --------------------------------------------------------------------------------------
# Selection
# --------------------------------------------------------------------------------------


def _candidate_pool(ranking: np.ndarray, exclude: set[int], size: int, min_separation: int) -> list[int]:
    """The best-ranked frames not in ``exclude``, each more than ``min_separation`` frames from better ones."""
    pool: list[int] = []
    for frame in ranking:
        frame = int(frame)
        if frame in exclude:
            continue
        if min_separation > 0 and any(abs(frame - other) <= min_separation for other in pool):
            continue
        pool.append(frame)
        if len(pool) >= size:
            break
    return pool


def iter_select_outliers(
    video: Any,
    xy: np.ndarray | None,
    likelihood: np.ndarray | None,
    n: int,
    *,
    methods: Iterable[str] | str = OUTLIER_METHODS,
    epsilon: float = 20.0,
    p_bound: float = 0.01,
    window: int = 9,
    smoother: str = "median",
    scores: OutlierScores | None = None,
    candidates: int | None = None,
    exclude: Iterable[int] = (),
    min_separation: int = 0,
    resize_width: int = 30,
    seed: int | None = 0,
) -> Generator[float, None, list[int]]:
    """Generator form of :func:`select_outliers`: yields progress fractions, returns the frames."""
    n = int(n)
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if scores is None:
        if xy is None or likelihood is None:
            raise ValueError("give xy and likelihood, or scores")
        scores = outlier_scores(
            xy, likelihood, epsilon=epsilon, p_bound=p_bound, window=window, smoother=smoother, methods=methods
        )
    size = max(n, 5 * n if candidates is None else int(candidates))
    pool = _candidate_pool(scores.ranking, {int(i) for i in exclude}, size, max(0, int(min_separation)))
    yield 0.0
    if len(pool) <= n:
        yield 1.0
        return pool

    from .inference import frame_source
    from .video import FrameDecodeError

    get, n_frames, close = frame_source(video)
    try:
        if n_frames != scores.n_frames:
            raise OutlierError(f"the scores cover {scores.n_frames} frames but the video has {n_frames}")
        features: dict[int, np.ndarray] = {}
        thumbnail = None
        for done, frame in enumerate(sorted(pool), start=1):
            try:
                image = np.asarray(get(frame))
            except FrameDecodeError:
                continue  # a damaged frame cannot be labeled
            image = to_rgb_uint8(image)
            if thumbnail is None:
                thumbnail = _Thumbnailer(image.shape[0], image.shape[1], resize_width)
            features[frame] = thumbnail(image)
            yield 0.95 * done / len(pool)
    finally:
        close()
    pool = [f for f in pool if f in features]
    if len(pool) <= n:
        yield 1.0
        return pool
    data = np.stack([features[f] for f in pool])
    labels, _ = _kmeans(data, n, np.random.default_rng(seed))
    # the pool is in rank order: the first member of a cluster is its best-scored frame
    picked = sorted(int(np.flatnonzero(labels == j)[0]) for j in range(n))
    yield 1.0
    return [pool[i] for i in picked]


def select_outliers(
    video: Any,
    xy: np.ndarray | None,
    likelihood: np.ndarray | None,
    n: int,
    *,
    methods: Iterable[str] | str = OUTLIER_METHODS,
    epsilon: float = 20.0,
    p_bound: float = 0.01,
    window: int = 9,
    smoother: str = "median",
    scores: OutlierScores | None = None,
    candidates: int | None = None,
    exclude: Iterable[int] = (),
    min_separation: int = 0,
    resize_width: int = 30,
    seed: int | None = 0,
    progress: Callable[[float], None] | None = None,
) -> list[int]:
    """Up to ``n`` outlier frames worth correcting, best first, that do not look alike.

    The frames flagged by :func:`outlier_scores` are ranked by their combined
    score; frames in ``exclude`` (already extracted or labeled) are skipped,
    and so, with ``min_separation`` > 0, is every frame within that many
    frames of a better-ranked one. The best ``candidates`` (default ``5 * n``)
    form the pool. When the pool holds more than ``n`` frames, their
    grayscale thumbnails (``resize_width`` wide, as :func:`~napari_posekit.core.frames.select_kmeans`
    makes them) are clustered into ``n`` clusters by k-means (k-means++
    seeding with ``numpy.random.default_rng(seed)``, so the same seed gives
    the same frames) and the best-ranked frame of each cluster is taken:
    consecutive, nearly identical frames end up in one cluster and only one
    of them is picked. (DeepLabCut draws a random member of each cluster.)

    Parameters
    ----------
    video
        A video path, a :class:`~napari_posekit.core.video.VideoReader` or an
        ``(N, H, W[, 3])`` array; read only when the pool is larger than ``n``.
    xy, likelihood
        The predictions, ``(N, K, 2)`` and ``(N, K)``; or pass ``scores``.
    n
        How many frames to pick.
    methods, epsilon, p_bound, window, smoother
        See :func:`outlier_scores`.
    scores
        Scores computed before (``xy`` and ``likelihood`` are then not used).
    progress
        Called with the fraction done while thumbnails are read.

    Returns
    -------
    list[int]
        Distinct frame numbers, highest combined score first; fewer than
        ``n`` when fewer frames are flagged (none for a clean video).
        Frames that fail to decode are left out.
    """
    work = iter_select_outliers(
        video, xy, likelihood, n, methods=methods, epsilon=epsilon, p_bound=p_bound, window=window,
        smoother=smoother, scores=scores, candidates=candidates, exclude=exclude, min_separation=min_separation,
        resize_width=resize_width, seed=seed,
    )
    return drive(work, progress)


# --------------------------------------------------------------------------------------
# Extraction into a project
# --------------------------------------------------------------------------------------


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


_FRAME_NAME = re.compile(r"img(\d+)\.[A-Za-z]+")


def _frame_of(name: str) -> int | None:
    match = _FRAME_NAME.fullmatch(name.replace("\\", "/").rsplit("/", 1)[-1])
    return int(match.group(1)) if match else None


def _frames_in_folder(folder: Path) -> tuple[set[int], pd.DataFrame | None]:
    """Frames the folder has already (image files, CollectedData rows, machine-label rows) and its CollectedData."""
    frames: set[int] = set()
    collected = None
    if not folder.is_dir():
        return frames, None
    for path in folder.iterdir():
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            f = _frame_of(path.name)
            if f is not None:
                frames.add(f)
    found = sorted(folder.glob("CollectedData_*.h5")) or sorted(folder.glob("CollectedData_*.csv"))
    for path in found:
        df = read_collected(path)
        collected = collected if collected is not None else df
        frames.update(f for f in map(_frame_of, _image_keys(df.index)) if f is not None)
    for path in find_machinelabels(folder):
        frames.update(f for f in map(_frame_of, _image_keys(read_machinelabels(path).index)) if f is not None)
    return frames, collected


def _project(project: str | os.PathLike) -> Path:
    path = Path(project).expanduser().resolve()
    if path.is_file() and path.suffix in (".yaml", ".yml"):
        path = path.parent
    if not (path / "config.yaml").is_file():
        raise ProjectError("not a DeepLabCut project folder (no config.yaml)", path)
    return path


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


def _in_video_sets(config, video: Path) -> bool:
    sets = config.get("video_sets") or {}
    return any(Path(str(key).replace("\\", "/")).stem == video.stem for key in sets)


def add_video_set(project: str | os.PathLike, video: str | os.PathLike) -> bool:
    """Add ``video`` with its full-frame crop to the config's ``video_sets``; False when it is listed already.

    DeepLabCut's training-set tools only look at the labeled-data folders of
    listed videos, so a video that frames are taken from must be there.
    """
    from .video import read_metadata

    root = _project(project)
    video = Path(video)
    config = read_config(root)
    if _in_video_sets(config, video):
        return False
    meta = read_metadata(video)
    sets = dict(config.get("video_sets") or {})
    sets[str(video.resolve())] = {"crop": f"0, {meta.width}, 0, {meta.height}"}
    config["video_sets"] = sets
    write_config(root / "config.yaml", config)
    return True


def _machine_frame(
    xy: np.ndarray, likelihood: np.ndarray, frames: Sequence[int], n_frames: int, video: Path,
    bodyparts: Sequence[str], scorer: str,
) -> pd.DataFrame:
    """The predictions on ``frames`` as a machine-label table (string index, re-styled by the caller)."""
    keys = [f"labeled-data/{video.stem}/{frame_image_name(f, n_frames)}" for f in frames]
    columns = pd.MultiIndex.from_tuples(
        [(scorer, bp, c) for bp in bodyparts for c in ("x", "y", "likelihood")], names=COLUMN_NAMES
    )
    rows = np.concatenate([xy[list(frames)], likelihood[list(frames)][..., None]], axis=2)
    return pd.DataFrame(rows.reshape(len(frames), -1), index=pd.Index(keys), columns=columns)


def write_outlier_frames(
    project: str | os.PathLike,
    video: str | os.PathLike,
    frames: Sequence[int],
    xy: np.ndarray,
    likelihood: np.ndarray,
    bodyparts: Sequence[str],
    scorer: str,
    *,
    n_frames: int | None = None,
) -> tuple[list[Path], Path]:
    """Write ``frames`` of ``video`` as PNGs into ``labeled-data/<stem>/`` with their predictions as machine labels.

    ``xy`` ``(n_frames, K, 2)`` and ``likelihood`` ``(n_frames, K)`` are the
    whole video's predictions for ``bodyparts``.  Existing images are never
    overwritten, machine-label rows of other frames are kept (an existing
    row for a frame wins), and the file follows the folder's index style
    (that of the machine-label file, else of CollectedData, else
    DeepLabCut's multi-index).  Returns the images, in the order of
    ``frames``, and the machine-label file.
    """
    from .video import read_metadata

    root = _project(project)
    video = Path(video)
    config = read_config(root)
    if n_frames is None:
        n_frames = read_metadata(video).n_frames
    frames = [int(f) for f in frames]
    bad = [f for f in frames if not 0 <= f < len(xy)]
    if bad:
        raise OutlierError(f"frames {bad} are outside the predictions ({len(xy)} frames)", video)
    folder = root / "labeled-data" / video.stem
    _, collected = _frames_in_folder(folder)
    written = extract_frames(video, frames, root / "labeled-data")
    by_frame = dict(zip(written.frames, written.paths))

    machine = _machine_frame(xy, likelihood, sorted(set(frames)), n_frames, video, bodyparts, scorer)
    path = machinelabels_path(folder, int(config.get("iteration", 0) or 0))
    if path.is_file():
        old = read_machinelabels(path)
        old_scorer = str(old.columns.get_level_values("scorer")[0])
        machine.columns = machine.columns.set_levels([old_scorer], level="scorer")
        machine = to_multi_index(machine) if index_style(old) == "multi" else machine
        machine = machine.reindex(columns=old.columns) if set(old.columns) >= set(machine.columns) else machine
        combined = pd.concat([old, machine])
        combined = combined[~combined.index.duplicated(keep="first")]
    else:
        style = index_style(collected) if collected is not None else "multi"
        combined = to_multi_index(machine) if style == "multi" else to_string_index(machine)
    return [by_frame[f] for f in frames], write_machinelabels(combined.sort_index(), path)


def iter_extract_outliers(
    project: str | os.PathLike,
    video: str | os.PathLike,
    n: int | None = None,
    *,
    methods: Iterable[str] | str = OUTLIER_METHODS,
    epsilon: float = 20.0,
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
    from .predictions import find_predictions, read_predictions
    from .video import read_metadata

    root = _project(project)
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

    # the predictions: given, the model's own file, any file when there is no model, or a fresh analysis
    analyzed = False
    if predictions is not None:
        pred_path = Path(predictions)
    else:
        predictor = None
        if model is None:
            from .workflow import latest_checkpoint

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
                model = None
                pred_path = found[0]
        if model is not None:
            from .inference import Predictor, analyze_video, output_paths

            predictor = model if isinstance(model, Predictor) else Predictor.load(model, device=device)
            pred_path = output_paths(video, predictor.scorer, predictions_dir)["h5"]
            if reanalyze or not pred_path.is_file():
                if not analyze:
                    raise OutlierError(
                        f"{video.name} has no predictions of this model ({pred_path.name}); analyse it first", video
                    )
                work = analyze_video(
                    predictor, video, output_dir=predictions_dir, overwrite=reanalyze, device=device, **analyze_options
                )
                result = yield from relay(
                    work, lambda e: {"event": "analyze", "done": e["done"], "total": e["total"], "fps": e["fps"]}
                )
                if result is None:
                    raise OutlierError("the analysis was stopped before the end of the video", video)
                pred_path = Path(result)
                analyzed = True
    try:
        pred = read_predictions(pred_path)
    except FileNotFoundError:
        raise OutlierError("prediction file not found", pred_path) from None
    except ValueError as err:
        raise OutlierError(f"not a prediction file: {err}", pred_path) from err
    if pred.individual_of is not None:
        raise OutlierError("multi-animal predictions are not supported here", pred_path)
    if pred.n_frames != meta.n_frames or not np.array_equal(pred.frames, np.arange(pred.n_frames)):
        raise OutlierError(
            f"predictions have {pred.n_frames} frames but the video {video.name} has {meta.n_frames}; "
            f"re-analyse the video (reanalyze=True, or posekit analyze --overwrite)",
            pred_path,
        )
    missing = [bp for bp in bodyparts if bp not in pred.bodyparts]
    if missing:
        raise OutlierError(f"the predictions lack the project's body parts {missing}; re-analyse", pred_path)
    order = [pred.bodyparts.index(bp) for bp in bodyparts]
    xy, likelihood = pred.xy[:, order], pred.likelihood[:, order]

    scores = outlier_scores(
        xy, likelihood, epsilon=epsilon, p_bound=p_bound, window=window, smoother=smoother, methods=methods
    )
    folder = root / "labeled-data" / video.stem
    already, _ = _frames_in_folder(folder)
    excluded = sorted(f for f in already if f < meta.n_frames and scores.combined[f] > 0)
    work = iter_select_outliers(
        video, None, None, n, scores=scores, candidates=candidates, exclude=already, min_separation=min_separation,
        seed=seed,
    )
    frames = yield from relay(work, lambda fraction: {"event": "select", "progress": fraction})

    result = ExtractResult(
        folder=folder, frames=list(frames), images=[], machinelabels=None, predictions=pred_path, scores=scores,
        excluded=excluded, analyzed=analyzed,
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
