"""Refine dock widget: find where the network fails, correct those frames, retrain — in one viewer session.

The loop, DeepLabCut's ``extract_outlier_frames`` / ``refine_labels`` /
``merge_datasets`` / retrain, in one dock widget:

1. **Find outliers** scores every frame of a video's predictions with
   :func:`~napari_posekit.core.outliers.outlier_scores` (jumps, low likelihood,
   distance from the smoothed trajectory) and picks diverse frames with
   :func:`~napari_posekit.core.outliers.iter_select_outliers`. The predictions
   are the Analysis widget's layer for the video when it holds the current
   model's predictions, else the model's prediction file beside the video, else
   a fresh analysis with the project's latest model (or any prediction file
   when the project has no model). The ranked candidates are listed with their
   scores, and a small plot shows the combined score over the video with the
   picked frames marked; clicking a row or the plot shows that frame.
2. **Accept for labeling** writes the checked frames as PNGs into
   ``labeled-data/<video>/`` with their predictions as machine labels
   (``machinelabels-iter<i>.h5``) and opens the folder as an editable keypoints
   layer: machine labels are diamonds with a yellow ring, human labels discs.
   Drag the wrong points, delete the invisible ones (select, then Delete);
   every edit goes to the folder's crash-safe journal first.
3. **Save** merges with :func:`~napari_posekit.core.refine.save_refinement`:
   the accepted frames become human labels in CollectedData, deletions stay
   deleted, every other human label is written back bit for bit.
4. **Retrain** fine-tunes the current checkpoint on the merged labels
   (``train_project(..., init_from=checkpoint)``), optionally re-analyses the
   video, and shows the error of the model before and after on the corrected
   frames and on the earlier labels.

Workers run the core generators in napari ``thread_worker``\\s and never touch
layers; errors come back as values (superqt's generator worker drops a
RuntimeError without a signal) and are shown as notifications. One job runs at
a time.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from napari.layers import Image, Points
from napari.qt.threading import thread_worker
from napari.utils import progress as napari_progress
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QPointF, QRectF, QSize, Qt, QTimer, Signal
from qtpy.QtGui import QColor, QFont, QFontMetrics, QPainter, QPen, QPolygonF
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from napari_posekit._napari._analysis_widget import analysable_layers
from napari_posekit._napari.layers import layer_to_xy, points_kwargs
from napari_posekit._napari.layers import marker_size, prediction_colors, prediction_points
from napari_posekit._napari._training_widget import (
    _error_message,
    _Failed,
    _layer_config,
    _model_name,
    format_eta,
    linear_ticks,
    preload_training_modules,
)
from napari_posekit._napari._viewer import unwrap_viewer
from napari_posekit.core._generators import relay
from napari_posekit.core.inference import AnalysisError
from napari_posekit.core.frames import frame_of_image
from napari_posekit.core.labels import JournalError, LabelStore, pending_journals
from napari_posekit.core.model import PretrainedWeightsError
from napari_posekit.core.outliers import OUTLIER_METHODS, OutlierError, OutlierScores, outlier_scores
from napari_posekit.core.project import ProjectError
from napari_posekit.core.train import TrainingMemoryError
from napari_posekit.core.video import VideoError

REFRESH_MS = 100
PROGRESS_TOTAL = 1000
# problems of the project, the model, the video or a file: a message for the person, not a traceback
EXPECTED_ERRORS = (
    ProjectError, AnalysisError, VideoError, PretrainedWeightsError, TrainingMemoryError, JournalError,
    ValueError, OSError, RuntimeError,
)
METHOD_NAMES = {"jump": "jumps", "uncertain": "low p", "fitting": "off track"}
MACHINE_BORDER = (1.0, 0.85, 0.0, 1.0)
HUMAN_BORDER = (0.0, 0.0, 0.0, 1.0)
MACHINE_SYMBOL = "diamond"
HUMAN_SYMBOL = "disc"
_RIGHT = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
_CENTER = Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop


def _project_root(text: str) -> Path | None:
    if not text.strip():
        return None
    path = Path(text.strip()).expanduser()
    if path.name.endswith((".yaml", ".yml")):
        path = path.parent
    return path if (path / "config.yaml").is_file() else None


def _latest_checkpoint(project: Path | None) -> Path | None:
    from napari_posekit.core.workflow import latest_checkpoint

    if project is None:
        return None
    try:
        return latest_checkpoint(project)
    except ProjectError:
        return None


def _model_key(checkpoint: str | os.PathLike | None) -> tuple | None:
    """What tells two versions of a checkpoint apart: fine-tuning writes the new model under the same name."""
    if not checkpoint:
        return None
    try:
        path = Path(checkpoint).resolve()
        return str(path), path.stat().st_mtime_ns
    except OSError:
        return None


def _fingerprint(layer: Points) -> tuple[int, int]:
    data = np.ascontiguousarray(np.asarray(layer.data, dtype=float))
    return len(data), hash(data.tobytes())


def _same_file(a: str | os.PathLike | None, b: str | os.PathLike | None) -> bool:
    if not a or not b:
        return False
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


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


def _ordered(xy: np.ndarray, likelihood: np.ndarray, bodyparts: list[str], wanted: list[str] | None,
             where: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The predictions' columns in the project's body-part order."""
    if not wanted:
        return xy, likelihood, list(bodyparts)
    missing = [bp for bp in wanted if bp not in bodyparts]
    if missing:
        raise OutlierError(f"{where} lack the project's body parts {missing}; analyse the video again")
    order = [bodyparts.index(bp) for bp in wanted]
    return xy[:, order], likelihood[:, order], list(wanted)


def predictions_from_layer(layer: Points, n_frames: int, bodyparts: list[str] | None) -> Predictions:
    """The predictions a Points layer holds (the Analysis widget's, or a prediction file opened in napari).

    Raises :class:`OutlierError` when the layer has points past the video's
    last frame (predictions of another video or a video that changed) or
    leaves frames out (an analysis of part of the video).
    """
    meta = layer.metadata
    names = list(meta.get("bodyparts") or [])
    data = np.asarray(layer.data, dtype=float).reshape(-1, 3)
    parts = layer.features["bodypart"].astype(object).to_numpy() if len(data) else np.zeros(0, object)
    frames = np.round(data[:, 0]).astype(int)
    if len(frames) and (frames.max() >= n_frames or frames.min() < 0):
        raise OutlierError(
            f"the layer '{layer.name}' has predictions for frame {int(frames.max())} but the video has "
            f"{n_frames} frames (other video, or the video changed); tick 'analyse again'"
        )
    covered = np.zeros(n_frames, bool)
    covered[frames] = True
    if not covered.all():
        raise OutlierError(
            f"the layer '{layer.name}' covers {int(covered.sum())} of the video's {n_frames} frames; analyse the "
            f"whole video (or tick 'analyse again')"
        )
    xy = np.full((n_frames, len(names), 2), np.nan)
    likelihood = np.zeros((n_frames, len(names)))
    p = layer.features["likelihood"].to_numpy(dtype=float) if "likelihood" in layer.features else np.ones(len(data))
    index = {bp: k for k, bp in enumerate(names)}
    for (frame, y, x), bp, value in zip(data, parts, p):
        k = index.get(bp)
        if k is not None:
            xy[int(round(frame)), k] = (x, y)
            likelihood[int(round(frame)), k] = value
    xy, likelihood, names = _ordered(xy, likelihood, names, bodyparts, f"the predictions of '{layer.name}'")
    checkpoint = meta.get("checkpoint")
    return Predictions(xy, likelihood, names, str(meta.get("scorer") or "DLC_posekit"), f"layer '{layer.name}'",
                       Path(checkpoint) if checkpoint else None, Path(meta["path"]) if meta.get("path") else None)


def predictions_from_file(path: Path, n_frames: int, bodyparts: list[str] | None) -> Predictions:
    from napari_posekit.core.predictions import read_predictions

    pred = read_predictions(path)
    if pred.individual_of is not None:
        raise OutlierError("multi-animal predictions are not supported here", path)
    if pred.n_frames != n_frames or not np.array_equal(pred.frames, np.arange(pred.n_frames)):
        raise OutlierError(
            f"the predictions have {pred.n_frames} frames but the video has {n_frames} (the video changed?); "
            f"tick 'analyse again' to predict it anew", path,
        )
    xy, likelihood, names = _ordered(pred.xy, pred.likelihood, list(pred.bodyparts), bodyparts,
                                     f"the predictions {path.name}")
    checkpoint = (pred.metadata or {}).get("checkpoint")
    return Predictions(xy, likelihood, names, pred.scorer, f"file {path.name}",
                       Path(checkpoint) if checkpoint else None, path)


# --------------------------------------------------------------------------- workers
def _analyse(model: Path, source: Any, video_path: Path | None, n_frames: int, bodyparts: list[str] | None,
             overwrite: bool, should_stop: Callable[[], bool]):
    """Analyse the video with ``model`` (its file is reused unless ``overwrite``); returns Predictions or None."""
    from napari_posekit.core.inference import Predictor, analyze_video, iter_analyze
    from napari_posekit.core.train import default_device

    predictor = Predictor.load(model, device=default_device())
    if video_path is not None:
        path = yield from relay(
            analyze_video(predictor, video_path, overwrite=overwrite, should_stop=should_stop),
            lambda e: {"event": "analyze", "done": e["done"], "total": e["total"], "fps": e["fps"]},
        )
        if path is None:
            return None
        return predictions_from_file(Path(path), n_frames, bodyparts)
    xy = np.full((n_frames, len(predictor.bodyparts), 2), np.nan)
    likelihood = np.zeros((n_frames, len(predictor.bodyparts)))
    done = 0
    for chunk in iter_analyze(predictor, source, should_stop=should_stop):
        xy[chunk.start:chunk.stop], likelihood[chunk.start:chunk.stop] = chunk.xy, chunk.likelihood
        done = chunk.stop
        yield {"event": "analyze", "done": done, "total": n_frames, "fps": 0.0}
    if done < n_frames:
        return None
    xy, likelihood, names = _ordered(xy, likelihood, list(predictor.bodyparts), bodyparts, "the model's predictions")
    return Predictions(xy, likelihood, names, predictor.scorer, f"analysis with {_model_name(predictor.checkpoint)}",
                       predictor.checkpoint)


def _analysed(model: Path, *args):
    """:func:`_analyse`, the predictions marked with the version of the model that made them."""
    key = _model_key(model)
    predictions = yield from _analyse(model, *args)
    if predictions is not None:
        predictions.model_key = key
    return predictions


@dataclass
class Candidates:
    """The outlier scores of one video layer's predictions and the frames picked from them."""

    layer: Image
    video_path: Path | None
    predictions: Predictions
    scores: OutlierScores
    picked: list[int]
    pool: list[int]
    excluded: set[int]
    options: dict[str, Any]
    previous: np.ndarray | None = None  # the combined score before the last retraining


def _find_job(task: dict[str, Any], should_stop: Callable[[], bool]):
    """Predictions (given, or analysed), scores and diverse picks; returns Candidates, None when stopped, or _Failed."""
    from napari_posekit.core.outliers import iter_select_outliers

    try:
        predictions = task["predictions"]
        if predictions is None:
            predictions = yield from _analysed(task["model"], task["source"], task["video_path"], task["n_frames"],
                                              task["bodyparts"], task["overwrite"], should_stop)
            if predictions is None:
                return None
        options = task["options"]
        scores = outlier_scores(predictions.xy, predictions.likelihood, **options)
        n, exclude = task["n"], task["exclude"]
        ranking = [int(f) for f in scores.ranking if int(f) not in exclude]
        pool = ranking[: max(n, 5 * n)]
        picked = yield from relay(
            iter_select_outliers(task["source"], None, None, n, scores=scores, exclude=exclude, seed=0),
            lambda fraction: {"event": "select", "progress": float(fraction)},
        )
        return Candidates(task["layer"], task["video_path"], predictions, scores, list(picked), pool, set(exclude),
                          options)
    except EXPECTED_ERRORS as err:
        return _Failed(err)


@dataclass
class Retrained:
    checkpoint: Path
    before: Any  # Evaluation of the checkpoint fine-tuned from, or None
    after: Any
    stopped: bool
    predictions: Predictions | None = None
    scores: OutlierScores | None = None
    before_error: str | None = None


def _retrain_job(task: dict[str, Any], should_stop: Callable[[], bool]):
    """Evaluate the current model, fine-tune it, evaluate the new one, re-analyse; returns Retrained or _Failed."""
    from napari_posekit.core.workflow import evaluate_project, train_project

    project, checkpoint = task["project"], task["checkpoint"]
    try:
        yield {"event": "stage", "text": f"Evaluating {_model_name(checkpoint)} on the merged labels…"}
        before, before_error = None, None
        try:
            before = evaluate_project(project, checkpoint, write=False)
        except ProjectError as err:  # e.g. fewer labeled images than the model was trained on
            before_error = _error_message(err)
        new = yield from train_project(project, init_from=checkpoint, stop=should_stop, **task["options"])
        stopped = should_stop()
        yield {"event": "stage", "text": "Evaluating the retrained model…"}
        after = evaluate_project(project, new)
        result = Retrained(Path(new), before, after, stopped, before_error=before_error)
        if task["reanalyse"] and not stopped:
            yield {"event": "stage", "text": "Re-analysing the video…"}
            predictions = yield from _analysed(Path(new), task["source"], task["video_path"], task["n_frames"],
                                              task["bodyparts"], True, should_stop)
            if predictions is not None:
                result.predictions = predictions
                result.scores = outlier_scores(predictions.xy, predictions.likelihood, **task["score_options"])
        return result
    except EXPECTED_ERRORS as err:
        return _Failed(err)


# --------------------------------------------------------------------------- writing accepted frames
def write_outlier_frames(project: Path, video: Path, frames: list[int], predictions: Predictions) -> tuple[Path, Path]:
    """Write the chosen ``frames`` with their predictions as machine labels (the end of ``extract_outliers``).

    Returns ``(folder, machine-label file)``; the video is added to the
    config's ``video_sets`` as DeepLabCut requires.
    """
    from napari_posekit.core.outliers import add_video_set
    from napari_posekit.core.outliers import write_outlier_frames as write_frames

    _, machine = write_frames(
        project, video, frames, predictions.xy, predictions.likelihood, predictions.bodyparts, predictions.scorer
    )
    add_video_set(project, video)
    return machine.parent, machine


def _pending_edits(layer: Points) -> int:
    """Edits of a keypoints layer not saved yet: the lines of its journal after the header."""
    journal = layer.metadata.get("journal")
    if not journal or not Path(journal).is_file():
        return 0
    try:
        with open(journal, encoding="utf-8") as f:
            return max(sum(1 for line in f if line.strip()) - 1, 0)
    except OSError:
        return 0


# --------------------------------------------------------------------------- score plot
class ScoreCurve(QWidget):
    """The combined outlier score over the video; picked frames marked, the current frame a line; click to jump."""

    frame_clicked = Signal(int)

    LINE = QColor(86, 160, 242)
    PREVIOUS = QColor(150, 150, 150)
    PICKED = QColor(245, 146, 52)
    ACCEPTED = QColor(90, 200, 120)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.scores = np.zeros(0)
        self.previous: np.ndarray | None = None
        self.picked: list[int] = []
        self.accepted: set[int] = set()
        self.current: int | None = None
        self.setMinimumHeight(110)
        self.setMaximumHeight(150)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setToolTip("Combined outlier score per frame; orange: picked, green: accepted. Click to show a frame.")

    def set_scores(self, scores: np.ndarray, picked: list[int], accepted: set[int],
                   previous: np.ndarray | None = None) -> None:
        self.scores = np.asarray(scores, dtype=float)
        self.picked = list(picked)
        self.accepted = set(accepted)
        self.previous = None if previous is None else np.asarray(previous, dtype=float)
        self.update()

    def set_current(self, frame: int | None) -> None:
        if frame != self.current:
            self.current = frame
            self.update()

    def _font(self) -> QFont:
        font = QFont(self.font())
        font.setPointSizeF(max(7.0, font.pointSizeF() * 0.85))
        return font

    def _plot_rect(self) -> QRectF:
        metrics = QFontMetrics(self._font())
        left = metrics.horizontalAdvance("00.0") + 10
        return QRectF(left, 6, max(self.width() - left - 8, 10), max(self.height() - metrics.height() - 12, 10))

    def _x_range(self) -> tuple[float, float]:
        return 0.0, float(max(len(self.scores) - 1, 1))

    @staticmethod
    def _peaks(values: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
        """At most ``2 * bins`` points keeping each bin's lowest and highest value (peaks survive)."""
        n = len(values)
        if n <= 2 * bins:
            return np.arange(n, dtype=float), values
        edges = np.linspace(0, n, bins + 1).astype(int)
        xs, ys = [], []
        for a, b in zip(edges[:-1], edges[1:]):
            if b > a:
                chunk = values[a:b]
                i, j = int(np.argmin(chunk)), int(np.argmax(chunk))
                for k in sorted({i, j}):
                    xs.append(a + k)
                    ys.append(chunk[k])
        return np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setFont(self._font())
        fh = painter.fontMetrics().height()
        text = self.palette().color(self.foregroundRole())
        grid = QColor(text)
        grid.setAlpha(40)
        plot = self._plot_rect()
        painter.setPen(QPen(grid, 1))
        painter.drawRect(plot)
        if not len(self.scores):
            painter.setPen(text)
            painter.drawText(plot, Qt.AlignmentFlag.AlignCenter, "The outlier score appears here")
            painter.end()
            return
        x0, x1 = self._x_range()
        values = np.nan_to_num(self.scores, nan=0.0)
        top = float(values.max())
        if self.previous is not None and len(self.previous) == len(values):
            top = max(top, float(np.nan_to_num(self.previous).max()))
        ticks = linear_ticks(0.0, top if top > 0 else 1.0, 2)
        top = max(ticks[-1], top, 1e-9)

        def px(x):
            return plot.left() + (np.asarray(x, dtype=float) - x0) / (x1 - x0) * plot.width()

        def py(v):
            return plot.bottom() - np.asarray(v, dtype=float) / top * plot.height()

        for tick in ticks:
            y = float(py(tick))
            painter.setPen(QPen(grid, 1))
            painter.drawLine(QPointF(plot.left(), y), QPointF(plot.right(), y))
            painter.setPen(text)
            painter.drawText(QRectF(0, y - fh / 2, plot.left() - 4, fh), _RIGHT, f"{tick:g}")
        for tick in linear_ticks(x0, x1, max(2, int(plot.width() // 80))):
            painter.drawText(QRectF(float(px(tick)) - 40, plot.bottom() + 2, 80, fh), _CENTER, f"{tick:g}")

        painter.setClipRect(plot.adjusted(-1, -3, 1, 1))
        bins = max(int(plot.width()), 2)
        curves = []
        if self.previous is not None and len(self.previous) == len(values):
            curves.append((np.nan_to_num(self.previous, nan=0.0), self.PREVIOUS, 1.0))
        curves.append((values, self.LINE, 1.5))
        for curve, colour, width in curves:
            xs, ys = self._peaks(curve, bins)
            painter.setPen(QPen(colour, width))
            painter.drawPolyline(QPolygonF([QPointF(a, b) for a, b in zip(px(xs), py(ys))]))
        painter.setPen(Qt.PenStyle.NoPen)
        for frames, colour in ((self.picked, self.PICKED), (sorted(self.accepted), self.ACCEPTED)):
            painter.setBrush(colour)
            for f in frames:
                if 0 <= f < len(values):
                    painter.drawEllipse(QPointF(float(px(f)), float(py(values[f]))), 3.5, 3.5)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        if self.current is not None and 0 <= self.current < len(values):
            x = float(px(self.current))
            painter.setPen(QPen(text, 1, Qt.PenStyle.DashLine))
            painter.drawLine(QPointF(x, plot.top()), QPointF(x, plot.bottom()))
        painter.end()

    def frame_at(self, x: float) -> int | None:
        if not len(self.scores):
            return None
        plot = self._plot_rect()
        x0, x1 = self._x_range()
        frame = round(x0 + (x - plot.left()) / plot.width() * (x1 - x0))
        return int(np.clip(frame, 0, len(self.scores) - 1))

    def mousePressEvent(self, event) -> None:
        x = event.position().x() if hasattr(event, "position") else event.x()
        frame = self.frame_at(x)
        if frame is not None:
            self.frame_clicked.emit(frame)


# --------------------------------------------------------------------------- refine session
@dataclass(eq=False)
class Session:
    """The keypoints layer of a labeled-data folder opened for refinement, and what the person did to it."""

    layer: Points
    image_layer: Image | None
    folder: Path
    store: LabelStore
    baseline: np.ndarray  # labels as opened or last saved
    machine: set[tuple[int, int]]  # (image, body part) shown from machine labels, not reviewed
    accepted: set[str] = field(default_factory=set)  # images accepted here, not saved yet
    touched: set[str] = field(default_factory=set)  # images edited since the last save

    @property
    def images(self) -> list[str]:
        return self.store.images

    @property
    def bodyparts(self) -> list[str]:
        return self.store.bodyparts

    @property
    def unsaved(self) -> bool:
        return bool(self.accepted or self.touched or self.store.unsaved_edits)

    def index(self, frame: int) -> int | None:
        """The image of video frame ``frame`` in the layer, or None."""
        for i, name in enumerate(self.images):
            if frame_of_image(name) == frame:
                return i
        return None


def point_sources(layer: Points) -> np.ndarray:
    """``"machine"`` or ``"human"`` for every point of a keypoints layer (from its ``machine_cells``)."""
    meta = layer.metadata
    bodyparts = list(meta.get("bodyparts") or [])
    machine = {tuple(c) for c in meta.get("machine_cells", [])}
    if not len(layer.data):
        return np.zeros(0, dtype=object)
    names = layer.features["bodypart"].astype(object).to_numpy()
    index = {bp: k for k, bp in enumerate(bodyparts)}
    return np.array(["machine" if (int(round(f)), index.get(bp, -1)) in machine else "human"
                     for f, bp in zip(layer.data[:, 0], names)], dtype=object)


# --------------------------------------------------------------------------- widget
class RefineWidget(QWidget):
    """Outlier frames of a video, their correction as machine labels, the merge and the retraining."""

    def __init__(self, napari_viewer):
        super().__init__()
        preload_training_modules()
        self.viewer = unwrap_viewer(napari_viewer)
        self.worker = None
        self.progress_bar = None
        self.candidates: Candidates | None = None
        self.session: Session | None = None
        self.retrained: Retrained | None = None
        self.comparison: dict[str, dict[str, float]] = {}
        self.corrected: set[str] = set()  # images saved from machine labels by this widget
        self.predictions_layer: Points | None = None
        self._cache: dict[object, Predictions] = {}  # video layer's unique_id -> predictions made here
        self._stale: dict[object, tuple] = {}  # predictions layer's unique_id -> its data when a newer model was trained
        self._job: dict[str, Any] | None = None
        self._last: dict[str, Any] = {}
        self._dirty = False
        self._stop_requested = False
        self._syncing = False
        self._chosen: Image | None = None

        # inputs
        self.project = QLineEdit()
        self.project.setPlaceholderText("project config.yaml or folder")
        self.project.textChanged.connect(self._update_controls)
        browse = QPushButton("…")
        browse.setMaximumWidth(30)
        browse.clicked.connect(self._browse)
        self.video_box = QComboBox()
        self.video_box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.video_box.setMinimumContentsLength(16)  # long video names do not widen the dock
        self.video_box.currentIndexChanged.connect(self._on_video_chosen)
        self.count = QSpinBox()
        self.count.setRange(1, 1000)
        self.count.setValue(10)
        self.methods = {m: QCheckBox(METHOD_NAMES[m]) for m in OUTLIER_METHODS}
        for box in self.methods.values():
            box.setChecked(True)
        self.methods["jump"].setToolTip("a body part moves more than epsilon pixels from one frame to the next")
        self.methods["uncertain"].setToolTip("body parts with a likelihood below the p-bound, or not found")
        self.methods["fitting"].setToolTip("a body part is more than epsilon pixels from its smoothed trajectory")
        self.epsilon = QDoubleSpinBox()
        self.epsilon.setRange(0.0, 10_000.0)
        self.epsilon.setDecimals(1)
        self.epsilon.setSuffix(" px")
        self.epsilon.setValue(20.0)
        self.epsilon.setToolTip("Jumps and distances from the smoothed track above this count")
        self.p_bound = QDoubleSpinBox()
        self.p_bound.setRange(0.0, 1.0)
        self.p_bound.setDecimals(3)
        self.p_bound.setSingleStep(0.01)
        self.p_bound.setValue(0.01)
        self.p_bound.setToolTip("Body parts predicted with a lower likelihood are uncertain")
        self.reanalyse_first = QCheckBox("analyse the video again")
        self.reanalyse_first.setToolTip("Predict the video anew with the project's latest model")
        self.find_button = QPushButton("Find outliers")
        self.find_button.clicked.connect(lambda: self.find_outliers())
        self.stop_button = QPushButton("Stop")
        self.stop_button.clicked.connect(self.stop)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        # candidates
        self.curve = ScoreCurve()
        self.curve.frame_clicked.connect(lambda frame: self.jump_to_frame(frame))
        self.table = QTableWidget(0, 6)
        self.table.setHorizontalHeaderLabels(["frame", "score", "jump px", "low p", "off track px", "status"])
        tips = ["video frame; checked frames are accepted for labeling", "combined outlier score",
                "largest move of a body part since the previous frame", "fraction of body parts below the p-bound",
                "largest distance of a body part from its smoothed trajectory", ""]
        for c, tip in enumerate(tips):
            self.table.horizontalHeaderItem(c).setToolTip(tip)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setMinimumHeight(160)
        self.table.cellClicked.connect(lambda row, _col: self.jump_to_row(row))
        self.table.itemChanged.connect(lambda _item: self._update_controls())
        self.accept_button = QPushButton("Accept for labeling")
        self.accept_button.setToolTip("Write the checked frames into labeled-data/<video>/ with their predictions as "
                                      "machine labels, and open them for correction")
        self.accept_button.clicked.connect(lambda: self.accept())
        self.save_button = QPushButton("Save")
        self.save_button.setToolTip("Merge the corrected frames into CollectedData (human labels stay as they are)")
        self.save_button.clicked.connect(lambda: self.save())
        self.refine_label = QLabel("")
        self.refine_label.setWordWrap(True)
        # retraining
        self.epochs = QSpinBox()
        self.epochs.setRange(0, 100_000)
        self.epochs.setSpecialValueText("no limit")
        self.epochs.setValue(5)
        self.minutes = QDoubleSpinBox()
        self.minutes.setRange(0.0, 100_000.0)
        self.minutes.setDecimals(1)
        self.minutes.setSuffix(" min")
        self.minutes.setSpecialValueText("no limit")
        self.minutes.setValue(3.0)
        self.reanalyse_after = QCheckBox("re-analyse the video")
        self.reanalyse_after.setChecked(True)
        self.retrain_button = QPushButton("Retrain")
        self.retrain_button.setToolTip("Fine-tune the project's latest model on the merged labels")
        self.retrain_button.clicked.connect(lambda: self.retrain())
        self.eval_label = QLabel("")
        self.eval_label.setWordWrap(True)
        self.eval_table = QTableWidget(0, 0)
        self.eval_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.eval_table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.eval_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.eval_table.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.eval_table.hide()

        row = QHBoxLayout()
        row.addWidget(self.project)
        row.addWidget(browse)
        methods = QHBoxLayout()
        for box in self.methods.values():
            methods.addWidget(box)
        form = QFormLayout()
        form.addRow("Project:", row)
        form.addRow("Video:", self.video_box)
        form.addRow("Frames:", self.count)
        form.addRow("Criteria:", methods)
        form.addRow("Epsilon:", self.epsilon)
        form.addRow("p-bound:", self.p_bound)
        form.addRow("", self.reanalyse_first)
        buttons = QHBoxLayout()
        buttons.addWidget(self.find_button)
        buttons.addWidget(self.stop_button)
        refine = QHBoxLayout()
        refine.addWidget(self.accept_button)
        refine.addWidget(self.save_button)
        retrain = QFormLayout()
        retrain.addRow("Epochs:", self.epochs)
        retrain.addRow("Time budget:", self.minutes)
        retrain_buttons = QHBoxLayout()
        retrain_buttons.addWidget(self.reanalyse_after)
        retrain_buttons.addWidget(self.retrain_button)
        content = QWidget()  # scrolls rather than squeezes in a short dock
        layout = QVBoxLayout(content)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        layout.addWidget(self.curve)
        layout.addWidget(self.table, 1)
        layout.addLayout(refine)
        layout.addWidget(self.refine_label)
        layout.addWidget(QLabel("<b>Retrain</b>"))
        layout.addLayout(retrain)
        layout.addLayout(retrain_buttons)
        layout.addWidget(self.eval_label)
        layout.addWidget(self.eval_table)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setWidget(content)
        scroll.setMinimumWidth(content.minimumSizeHint().width() + scroll.verticalScrollBar().sizeHint().width())
        self._content, self._scroll = content, scroll
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)

        self._timer = QTimer(self)
        self._timer.setInterval(REFRESH_MS)
        self._timer.timeout.connect(self._refresh)
        self.viewer.layers.events.inserted.connect(self._on_inserted)
        self.viewer.layers.events.removed.connect(self._on_removed)
        self.viewer.dims.events.current_step.connect(self._on_step)
        for layer in self.viewer.layers:
            self._prefill_project(layer)
            if isinstance(layer, Image):
                layer.events.name.connect(self._refresh_videos)
        self._refresh_videos()
        self._update_controls()

    def sizeHint(self) -> QSize:
        content = self._content
        width = max(content.sizeHint().width(), content.minimumSizeHint().width(), 400)
        return QSize(width + self._scroll.verticalScrollBar().sizeHint().width() + 6, content.sizeHint().height())

    # -- inputs ------------------------------------------------------------------
    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Project config.yaml", "", "config.yaml (config.yaml)")
        if path:
            self.project.setText(path)

    def _prefill_project(self, layer) -> None:
        if self.project.text().strip() or self.busy:
            return
        config = _layer_config(layer)
        if config is None and isinstance(layer, Image):  # a video inside a project's videos/ folder
            path = (layer.metadata.get("video") or {}).get("path")
            if path and Path(path).parent.name == "videos" and (Path(path).parent.parent / "config.yaml").is_file():
                config = str(Path(path).parent.parent / "config.yaml")
        if config:
            self.project.setText(config)

    def _on_inserted(self, event) -> None:
        self._prefill_project(event.value)
        if isinstance(event.value, Image):
            event.value.events.name.connect(self._refresh_videos)
            self._refresh_videos()

    def _on_removed(self, event) -> None:
        layer = event.value
        self._cache.pop(layer.unique_id, None)
        if self.session is not None and layer is self.session.layer:
            self._detach()
        if self.predictions_layer is layer:
            self.predictions_layer = None
        if self.candidates is not None and layer is self.candidates.layer:
            self.candidates = None
            self._show_candidates()
        if isinstance(layer, Image):
            layer.events.name.disconnect(self._refresh_videos)
            self._refresh_videos()

    def _refresh_videos(self, *_args) -> None:
        chosen = self._chosen
        current = chosen.name if chosen is not None and chosen in self.viewer.layers else self.video_box.currentText()
        refine_images = {self.session.image_layer.name} if self.session and self.session.image_layer else set()
        names = [layer.name for layer in analysable_layers(self.viewer) if layer.name not in refine_images]
        self.video_box.blockSignals(True)
        self.video_box.clear()
        self.video_box.addItems(names)
        if current in names:
            self.video_box.setCurrentText(current)
        else:  # prefer a video from the plugin's reader
            videos = [layer.name for layer in analysable_layers(self.viewer) if "video" in layer.metadata]
            if videos:
                self.video_box.setCurrentText(videos[-1])
        self.video_box.blockSignals(False)
        self._on_video_chosen()

    def _on_video_chosen(self, *_args) -> None:
        self._chosen = self.video_layer()
        self._update_controls()

    def video_layer(self) -> Image | None:
        name = self.video_box.currentText()
        return self.viewer.layers[name] if name and name in self.viewer.layers else None

    @staticmethod
    def video_path(layer: Image) -> Path | None:
        path = (layer.metadata.get("video") or {}).get("path")
        return Path(path) if path and Path(path).is_file() else None

    def project_path(self) -> Path | None:
        return _project_root(self.project.text())

    def options(self) -> dict[str, Any]:
        """Keyword arguments of ``outlier_scores`` from the settings."""
        methods = tuple(m for m, box in self.methods.items() if box.isChecked())
        return {"methods": methods, "epsilon": float(self.epsilon.value()), "p_bound": float(self.p_bound.value())}

    # -- state ---------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self.worker is not None

    def _fail(self, what: str, message: str) -> None:
        self.status.setText(f"{what}: {message}")
        show_error(f"{what}: {message}")

    def _checked_frames(self) -> list[int]:
        frames = []
        for r in range(self.table.rowCount()):
            item = self.table.item(r, 0)
            if item is not None and item.checkState() == Qt.CheckState.Checked:
                frames.append(int(item.data(Qt.ItemDataRole.UserRole)))
        return frames

    def _update_controls(self, *_args) -> None:
        busy = self.busy
        self.find_button.setEnabled(not busy)
        self.stop_button.setEnabled(busy and not self._stop_requested)
        self.accept_button.setEnabled(not busy and self.candidates is not None and bool(self._checked_frames()))
        self.save_button.setEnabled(not busy and self.session is not None and self.session.unsaved)
        self.retrain_button.setEnabled(not busy and self.project_path() is not None)

    def stop(self) -> None:
        """Ask the running job to stop (training saves a checkpoint first)."""
        if self.worker is not None and not self._stop_requested:
            self._stop_requested = True
            self.status.setText("Stopping…")
            self._update_controls()

    def _start(self, job, task: dict[str, Any], kind: str, description: str, returned: Callable[[Any], None]):
        self._stop_requested = False
        self._last = {}
        self._dirty = False
        worker = thread_worker(job, ignore_errors=True)(task, lambda: self._stop_requested)
        worker.yielded.connect(self._on_yielded)
        worker.returned.connect(returned)
        worker.errored.connect(self._on_errored)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self._job = {"kind": kind, **task}
        self.progress_bar = napari_progress(total=PROGRESS_TOTAL, desc=description)
        self.status.setText(description + "…")
        self._update_controls()
        self._timer.start()
        worker.start()
        return worker

    def _on_yielded(self, event: dict[str, Any]) -> None:
        # only record: the timer draws
        kind = (self._job or {}).get("kind")
        which = event.get("event")
        fraction, text = self._last.get("fraction", 0.0), None
        if which == "warning":
            show_warning(str(event.get("message")))
            return
        if which == "stage":
            text = event["text"]
        elif which == "analyze":
            done = event["done"] / max(event["total"], 1)
            fraction = 0.8 * done if kind == "find" else 0.85 + 0.15 * done
            text = f"Analysing: {event['done']}/{event['total']} frames"
            if event.get("fps"):
                text += f" · {event['fps']:.1f} frames/s"
        elif which == "select":
            start = 0.8 if (self._job or {}).get("predictions") is None else 0.0
            fraction = start + (1 - start) * event["progress"]
            text = "Reading the candidate frames…"
        elif "epoch" in event:  # a training step, or the test error after an epoch
            if which != "evaluated":
                self._last["losses"] = (self._last.get("losses", []) + [float(event["loss"])])[-20:]
            else:
                self._last["test"] = event.get("test_error_px")
            fraction = 0.85 * float(event.get("progress", 0.0))
            text = f"Fine-tuning: epoch {event['epoch']}"
            if self._last.get("losses"):
                text += f" · loss {np.mean(self._last['losses']):.4f}"
            if self._last.get("test") is not None:
                text += f" · test {float(self._last['test']):.2f} px"
            text += f" · ETA {format_eta(event.get('eta_s'))}"
        self._last["fraction"] = fraction
        if text is not None:
            self._last["text"] = text
        self._dirty = True

    # napari's progress bar processes events when it changes: touch it last
    def _refresh(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        fraction, text = self._last.get("fraction", 0.0), self._last.get("text")
        if text and not self._stop_requested:
            self.status.setText(text)
        bar = self.progress_bar
        if bar is not None:
            value = round(PROGRESS_TOTAL * min(max(fraction, 0.0), 1.0))
            if value != bar.n:
                bar.update(value - bar.n)

    def _on_errored(self, err: BaseException) -> None:
        # unexpected errors: napari also shows the traceback
        self.status.setText(f"Failed: {type(err).__name__}: {err}")

    def _on_finished(self) -> None:
        self._timer.stop()
        bar, self.progress_bar = self.progress_bar, None
        self.worker = None
        self._job = None
        self._stop_requested = False
        self._update_controls()
        if bar is not None:
            bar.close()

    # -- predictions -----------------------------------------------------------------
    def _bodyparts(self, project: Path | None) -> list[str] | None:
        if project is None:
            return None
        from napari_posekit.core.project import config_bodyparts, read_config

        return list(config_bodyparts(read_config(project))) or None

    def find_predictions_layer(self, video: Image) -> Points | None:
        """The Analysis widget's (or an opened prediction file's) raw predictions layer of ``video``."""
        path = self.video_path(video)
        by_name = None
        for layer in self.viewer.layers:
            meta = layer.metadata if isinstance(layer, Points) else {}
            if not meta.get("posekit_predictions") or meta.get("filtered") or meta.get("folder"):
                continue
            if path is not None and _same_file(meta.get("video"), path):
                return layer
            if layer.name == f"{video.name} predictions":
                by_name = layer
        return by_name

    def _predictions_task(self, layer: Image, project: Path | None, bodyparts: list[str] | None) -> dict[str, Any]:
        """What the find job starts from: predictions at hand, or the model to analyse with.

        In order: predictions made here or shown in a layer for the current
        model; the current model's file or analysis; with no model, the newest
        prediction file beside the video. Raises OutlierError (with no
        predictions and no model, or predictions that do not fit the video).
        """
        from napari_posekit.core.predictions import find_predictions

        n_frames = int(layer.data.shape[0])
        checkpoint = _latest_checkpoint(project)
        key = _model_key(checkpoint)
        video_path = self.video_path(layer)
        fresh = self.reanalyse_first.isChecked()
        task = {"predictions": None, "model": checkpoint, "overwrite": fresh}

        def current(predictions: Predictions) -> bool:
            if checkpoint is None:
                return True
            if predictions.model_key is not None:
                return predictions.model_key == key
            return predictions.checkpoint is None or _same_file(predictions.checkpoint, checkpoint)

        if not fresh:
            cached = self._cache.get(layer.unique_id)
            if cached is not None and len(cached.xy) == n_frames and current(cached):
                task["predictions"] = cached
                return task
            shown = self.find_predictions_layer(layer)
            if shown is not None and self._stale.get(shown.unique_id) != _fingerprint(shown):
                predictions = predictions_from_layer(shown, n_frames, bodyparts)
                if current(predictions):
                    task["predictions"] = predictions
                    return task
        if checkpoint is not None:
            return task
        if fresh:
            raise OutlierError("the project has no trained model to analyse the video with; train one first")
        found = find_predictions(video_path) if video_path is not None else []
        found = [p for p in found if not p.stem.endswith("_filtered")] or found
        if not found:
            what = "the project has no trained model" if project is not None else "no project is chosen"
            raise OutlierError(f"{layer.name} has no predictions and {what} to analyse it with; train a model "
                               f"or analyse the video first")
        task["predictions"] = predictions_from_file(found[0], n_frames, bodyparts)
        return task

    def _frames_in_folder(self, project: Path | None, video: Image) -> set[int]:
        """Frames the video's labeled-data folder holds already (images or labels of either kind)."""
        from napari_posekit.core.refine import load_refinement

        path = self.video_path(video)
        stem = path.stem if path is not None else video.name
        if project is None or not (project / "labeled-data" / stem).is_dir():
            return set()
        refinement = load_refinement(project / "labeled-data" / stem)
        return {f for f in map(frame_of_image, refinement.images) if f is not None}

    # -- find outliers -----------------------------------------------------------------
    def find_outliers(self):
        """Score the chosen video's predictions and pick outlier frames in a worker; returns it, or None."""
        if self.busy:
            return None
        layer = self.video_layer()
        if layer is None:
            self._fail("Cannot find outliers", "open a video first (File > Open)")
            return None
        if layer.multiscale or layer.ndim != 3:
            self._fail("Cannot find outliers", f"{layer.name} is not a video or a stack of 2D images")
            return None
        options = self.options()
        if not options["methods"]:
            self._fail("Cannot find outliers", "tick at least one criterion")
            return None
        text = self.project.text().strip()
        project = self.project_path()
        if text and project is None:
            self._fail("Cannot find outliers", f"'{text}' is not a project (no config.yaml)")
            return None
        try:
            bodyparts = self._bodyparts(project)
            task = self._predictions_task(layer, project, bodyparts)
            exclude = self._frames_in_folder(project, layer)
        except EXPECTED_ERRORS as err:
            self._fail("Cannot find outliers", _error_message(err))
            return None
        video_path = self.video_path(layer)
        task.update(
            layer=layer, video_path=video_path, source=str(video_path) if video_path else layer.data,
            n_frames=int(layer.data.shape[0]), bodyparts=bodyparts, options=options, n=int(self.count.value()),
            exclude=exclude,
        )
        what = "Analysing and scoring" if task["predictions"] is None else "Scoring"
        return self._start(_find_job, task, "find", f"{what} {layer.name}", self._on_found)

    def _on_found(self, result) -> None:
        job = self._job or {}
        if isinstance(result, _Failed):
            self._fail("Cannot find outliers", _error_message(result.error))
            return
        if result is None:
            self.status.setText("Stopped; no outliers were picked.")
            return
        if result.layer not in self.viewer.layers:
            return
        if job.get("predictions") is None:  # analysed here: kept for the next search
            self._cache[result.layer.unique_id] = result.predictions
        previous = self.candidates
        if previous is not None and previous.layer is result.layer and previous.previous is not None:
            result.previous = previous.previous
        self.candidates = result
        self._show_candidates()
        flagged = int(result.scores.flagged.sum())
        text = (f"{flagged} of {result.scores.n_frames} frames flagged (predictions: {result.predictions.origin}); "
                f"{len(result.picked)} picked")
        if result.excluded:
            text += f", {len(result.excluded)} frames already in the project left out"
        if not result.picked:
            text = f"No outlier frames in {result.layer.name} with these settings" + (
                f" ({flagged} flagged frames are in the project already)" if flagged else "")
        self.status.setText(text + ".")

    def _accepted_frames(self) -> set[int]:
        if self.session is None:
            return set()
        return {f for f in map(frame_of_image, self.session.accepted) if f is not None}

    def _show_candidates(self) -> None:
        c = self.candidates
        self.table.blockSignals(True)
        self.table.setRowCount(0)
        if c is None:
            self.table.blockSignals(False)
            self.curve.set_scores(np.zeros(0), [], set())
            self._update_controls()
            return
        scores = c.scores
        picked = set(c.picked)
        folder_frames = c.excluded
        saved = {f for f in map(frame_of_image, self.corrected) if f is not None}
        accepted = self._accepted_frames()
        rows = sorted(set(c.pool) | picked, key=lambda f: (-scores.combined[f], f))
        self.table.setRowCount(len(rows))
        for r, frame in enumerate(rows):
            item = QTableWidgetItem(str(frame))
            item.setData(Qt.ItemDataRole.UserRole, int(frame))
            status = ("corrected" if frame in saved else "accepted" if frame in accepted
                      else "in project" if frame in folder_frames else "picked" if frame in picked else "")
            if status in ("", "picked"):
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                item.setCheckState(Qt.CheckState.Checked if frame in picked else Qt.CheckState.Unchecked)
            values = [
                f"{scores.combined[frame]:.2f}", f"{scores.jump_px[frame]:.1f}", f"{scores.uncertain[frame]:.0%}",
                f"{scores.fitting_px[frame]:.1f}", status,
            ]
            self.table.setItem(r, 0, item)
            for col, value in enumerate(values, start=1):
                cell = QTableWidgetItem(value)
                cell.setTextAlignment(_RIGHT if col < 5 else Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(r, col, cell)
            if frame in picked:
                for col in range(6):
                    font = self.table.item(r, col).font()
                    font.setBold(True)
                    self.table.item(r, col).setFont(font)
        self.table.blockSignals(False)
        self.curve.set_scores(scores.combined, c.picked, accepted | saved, c.previous)
        self._update_controls()

    def set_checked(self, frames) -> None:
        """Check exactly ``frames`` in the list (the frames Accept writes)."""
        frames = {int(f) for f in frames}
        self.table.blockSignals(True)
        for r in range(self.table.rowCount()):
            item = self.table.item(r, 0)
            if item.flags() & Qt.ItemFlag.ItemIsUserCheckable:
                frame = int(item.data(Qt.ItemDataRole.UserRole))
                item.setCheckState(Qt.CheckState.Checked if frame in frames else Qt.CheckState.Unchecked)
        self.table.blockSignals(False)
        self._update_controls()

    # -- navigation ----------------------------------------------------------------------
    def _video_group(self, video: Image) -> list:
        prefix = f"{video.name} "
        analysis = {f"{video.name} skeleton", f"{video.name} tracks", f"{video.name} tracks (filtered)"}
        return [video] + [
            layer for layer in self.viewer.layers
            if layer.name in analysis or (layer.name.startswith(prefix) and layer.metadata.get("posekit_predictions"))
        ]

    def _refine_group(self) -> list:
        s = self.session
        if s is None:
            return []
        group = [s.layer] + ([s.image_layer] if s.image_layer is not None else [])
        name = f"{s.layer.name} skeleton"
        if name in self.viewer.layers:
            group.append(self.viewer.layers[name])
        return [layer for layer in group if layer in self.viewer.layers]

    def _show(self, refine: bool) -> None:
        """Show the refine folder's layers or the video's (the other group is hidden: their frames differ)."""
        video = self.candidates.layer if self.candidates is not None else self.video_layer()
        video_group = self._video_group(video) if video is not None and video in self.viewer.layers else []
        for layers, visible in ((self._refine_group(), refine), (video_group, not refine)):
            for layer in layers:
                if layer.visible != visible:  # setting it (even unchanged) puts the layer in pan/zoom mode
                    layer.visible = visible

    def jump_to_frame(self, frame: int) -> None:
        """Show video frame ``frame``: in the refine layer when it was accepted there, else in the video."""
        frame = int(frame)
        index = self.session.index(frame) if self.session is not None else None
        if index is not None:
            self._show(refine=True)
            self.viewer.dims.set_current_step(0, index)
            self.viewer.layers.selection.active = self.session.layer
        else:
            if self.session is not None:
                self._show(refine=False)
            self.viewer.dims.set_current_step(0, frame)
        self.curve.set_current(frame)

    def jump_to_row(self, row: int) -> None:
        item = self.table.item(row, 0)
        if item is not None:
            self.jump_to_frame(int(item.data(Qt.ItemDataRole.UserRole)))

    def _on_step(self, _event=None) -> None:
        if self.candidates is None or self.viewer.dims.ndim < 3:
            return
        step = int(self.viewer.dims.current_step[0])
        s = self.session
        if s is not None and s.layer.visible and s.image_layer is not None and s.image_layer.visible:
            step = frame_of_image(s.images[step]) if 0 <= step < len(s.images) else None
        self.curve.set_current(step)

    # -- accept ----------------------------------------------------------------------------
    def _claims(self, folder: Path) -> list:
        """Layers showing ``folder`` (the project reader's image stack and keypoints)."""
        return [layer for layer in self.viewer.layers if _same_file(layer.metadata.get("folder"), folder)]

    def accept(self, frames: list[int] | None = None):
        """Write the checked frames (or ``frames``) into the project and open them for correction; returns the layer."""
        if self.busy:
            return None
        c = self.candidates
        if c is None:
            self._fail("Cannot accept", "find outliers first")
            return None
        frames = sorted({int(f) for f in (self._checked_frames() if frames is None else frames)})
        if not frames:
            self._fail("Cannot accept", "check the frames to label in the list")
            return None
        project = self.project_path()
        if project is None:
            self._fail("Cannot accept", "choose the project the frames go to")
            return None
        if c.video_path is None:
            self._fail("Cannot accept", f"{c.layer.name} is not a video file; open the video with File > Open")
            return None
        folder = project / "labeled-data" / c.video_path.stem
        # two layers must never claim the same folder: an unsaved one wins and nothing is written
        if self.session is not None and self.session.unsaved:
            self._fail("Cannot accept", f"save the corrections in {self.session.layer.name} first")
            return None
        claims = self._claims(folder)
        for layer in claims:
            if isinstance(layer, Points) and _pending_edits(layer):
                self._fail("Cannot accept", f"the layer '{layer.name}' shows {folder.name} with "
                                            f"{_pending_edits(layer)} unsaved edits; save it (Labeling widget) first")
                return None
        pending = pending_journals(folder)
        if pending:
            self._fail("Cannot accept", f"{folder} has unsaved edits of an earlier session ({pending[0].name}); "
                                        f"open the folder, recover them in the Labeling widget and save first")
            return None
        try:
            taken = self._frames_in_folder(project, c.layer) & set(frames)
        except EXPECTED_ERRORS as err:
            self._fail("Cannot accept", _error_message(err))
            return None
        if taken:
            show_info(f"Frames {sorted(taken)} are in the project already; they are left as they are.")
            frames = [f for f in frames if f not in taken]
            if not frames:
                return None
        try:
            folder, machine_file = write_outlier_frames(project, c.video_path, frames, c.predictions)
        except EXPECTED_ERRORS as err:
            self._fail("Cannot accept", _error_message(err))
            return None
        for layer in claims:  # clean: the folder reopens with the new frames
            skeleton = f"{layer.name} skeleton"
            if layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
            if isinstance(layer, Points) and skeleton in self.viewer.layers:
                self.viewer.layers.remove(self.viewer.layers[skeleton])
        layer = self._open_folder(folder)
        if layer is None:
            return None
        s = self.session
        s.accepted.update(name for name in s.images if frame_of_image(name) in set(frames))
        c.excluded |= set(frames)
        self._show_candidates()
        n_machine = len(s.machine)
        self.refine_label.setText(
            f"{len(frames)} frames to correct in the selected keypoints layer: machine labels are yellow-ringed "
            f"diamonds ({n_machine}), human labels discs. Drag wrong points, delete invisible ones (select, Delete), "
            f"then Save."
        )
        self.status.setText(f"Wrote {len(frames)} frames and their machine labels ({machine_file.name}) to "
                            f"labeled-data/{folder.name}/.")
        self.jump_to_frame(frames[0])
        self._update_controls()
        return layer

    def _open_folder(self, folder: Path) -> Points | None:
        """Open ``folder`` with the project reader and attach to its keypoints layer."""
        try:
            layers = self.viewer.open(str(folder), plugin="napari-posekit")
        except Exception as err:  # noqa: BLE001 - a reader failure is shown, the viewer carries on
            self._fail("Cannot open the frames", f"{folder}: {err}")
            return None
        points = next((layer for layer in layers if isinstance(layer, Points)), None)
        image = next((layer for layer in layers if isinstance(layer, Image)), None)
        if points is None:
            self._fail("Cannot open the frames", f"{folder} opened without a keypoints layer")
            return None
        self._attach(points, image, folder)
        return points

    # -- editing -------------------------------------------------------------------------
    def _attach(self, layer: Points, image: Image | None, folder: Path) -> None:
        self._detach()
        meta = layer.metadata
        bodyparts = list(meta["bodyparts"])
        images = list(meta["images"])
        xy, _ = layer_to_xy(layer, len(images), bodyparts)
        store = LabelStore([str(i) for i in images], bodyparts, xy, journal=meta.get("journal"))
        machine = {tuple(int(v) for v in c) for c in meta.get("machine_cells", [])}
        self.session = Session(layer, image, Path(folder), store, np.array(store.xy), machine)
        layer.events.data.connect(self._on_data)
        self._refresh_videos()
        self._style()
        self.viewer.layers.selection.active = layer
        layer.mode = "select"  # drag to move, Delete to remove

    def _detach(self) -> None:
        s, self.session = self.session, None
        if s is None:
            return
        s.layer.events.data.disconnect(self._on_data)
        s.store.close_journal()
        self._update_controls()

    def _style(self) -> None:
        """Machine labels: yellow-ringed diamonds; human labels: discs with a thin black border."""
        s = self.session
        if s is None:
            return
        layer = s.layer
        s.layer.metadata["machine_cells"] = sorted([list(c) for c in s.machine])
        if not len(layer.data):
            return
        machine = point_sources(layer) == "machine"
        self._syncing = True
        try:
            layer.symbol = np.where(machine, MACHINE_SYMBOL, HUMAN_SYMBOL)
            layer.border_color = np.where(machine[:, None], MACHINE_BORDER, HUMAN_BORDER)
            layer.border_width = np.where(machine, 0.3, 0.1)
        finally:
            self._syncing = False

    def _on_data(self, event) -> None:
        action = str(getattr(event, "action", "changed")).lower().split(".")[-1]
        s = self.session
        if self._syncing or s is None or action not in ("added", "removed", "changed"):
            return
        xy, _ = layer_to_xy(s.layer, len(s.images), s.bodyparts)
        try:
            edit = s.store.update(xy, label=action)
        except JournalError as err:
            show_error(f"{err}. Save elsewhere or free the folder: edits cannot be kept safe now.")
            return
        if edit is not None:
            s.machine.difference_update(edit.cells)  # a reviewed machine label is the person's now
            s.touched.update(s.images[i] for i, _ in edit.cells)
        self._style()
        self._update_status()
        self._update_controls()

    def _update_status(self) -> None:
        s = self.session
        if s is None:
            return
        machine = len(s.machine)
        edited = s.store.unsaved_edits
        state = f"{edited} unsaved edits" if edited else ("unsaved" if s.unsaved else "saved")
        self.refine_label.setText(
            f"{len(s.accepted)} accepted frames, {machine} machine labels left to review "
            f"(yellow diamonds) · {state}"
        )

    def deleted_cells(self) -> list[tuple[str, str]]:
        """``(image, body part)`` labelled when opened (or saved) and deleted since."""
        s = self.session
        if s is None:
            return []
        was = np.isfinite(s.baseline).all(axis=2)
        now = np.isfinite(np.asarray(s.store.xy)).all(axis=2)
        return [(s.images[i], s.bodyparts[b]) for i, b in zip(*np.nonzero(was & ~now))]

    def save(self):
        """Merge the accepted and edited frames into CollectedData; returns what was written, or None."""
        from napari_posekit.core.refine import align_xy, load_refinement, save_refinement

        s = self.session
        if s is None:
            self._fail("Cannot save", "accept outlier frames first")
            return None
        if self.busy:
            self._fail("Cannot save", "wait for the running job to end")
            return None
        xy = np.asarray(s.store.xy)
        accepted = sorted(s.accepted | s.touched)
        deleted = self.deleted_cells()
        try:
            refinement = load_refinement(s.folder, scorer=s.layer.metadata.get("scorer") or None)
            rows = align_xy(refinement, s.images, s.bodyparts, xy)
            result = save_refinement(refinement, rows, accepted=accepted,
                                     deleted=[(name, bp) for name, bp in deleted if bp in refinement.bodyparts])
        except EXPECTED_ERRORS as err:
            self._fail("Corrections not saved", f"{_error_message(err)}; nothing on disk changed")
            return None
        s.store.mark_saved()
        s.baseline = np.array(xy)
        saved_images = set(accepted)
        s.machine = {(i, b) for i, b in s.machine if s.images[i] not in saved_images}
        self.corrected |= {name for name in s.accepted}
        s.accepted.clear()
        s.touched.clear()
        meta = s.layer.metadata
        meta["kept_rows"] = sorted(set(meta.get("kept_rows", [])) | {name.split("/")[-1] for name in saved_images})
        if result.collected is not None:
            meta["labels_file"] = str(result.collected)
        self._style()
        self._show_candidates()
        parts = [f"{len(result.added)} frames added", f"{len(result.updated)} updated"]
        if result.deleted:
            parts.append(f"{len(result.deleted)} body parts deleted")
        text = f"Saved to {Path(result.collected).name if result.collected else 'CollectedData'}: " + ", ".join(parts)
        if result.conflicts:
            text += f"; {len(result.conflicts)} images also have machine labels (the human labels were kept)"
        self.status.setText(text + ".")
        show_info(text)
        self._update_status()
        self._update_controls()
        return result

    # -- retrain ----------------------------------------------------------------------------
    def retrain(self, **overrides):
        """Fine-tune the latest model on the merged labels in a worker; returns it, or None with a message.

        ``overrides`` are further keyword arguments of ``train_project`` (e.g. ``batch_size``, ``device``).
        """
        from napari_posekit.core.refine import retrain_options

        if self.busy:
            return None
        project = self.project_path()
        if project is None:
            self._fail("Cannot retrain", "choose a project first")
            return None
        if self.session is not None and self.session.unsaved:
            self._fail("Cannot retrain", f"save the corrections in '{self.session.layer.name}' first: "
                                         f"training reads the saved labels")
            return None
        checkpoint = _latest_checkpoint(project)
        if checkpoint is None:
            self._fail("Cannot retrain", "the project has no trained model yet; train one in the Training widget")
            return None
        options: dict[str, Any] = {"epochs": self.epochs.value() or None, "max_minutes": self.minutes.value() or None}
        if options["epochs"] is None and options["max_minutes"] is None:
            self._fail("Cannot retrain", "set a number of epochs or a time budget")
            return None
        options.update(retrain_options(checkpoint))
        options.update(overrides)
        video = self.candidates.layer if self.candidates is not None else self.video_layer()
        reanalyse = self.reanalyse_after.isChecked() and video is not None and video in self.viewer.layers
        video_path = self.video_path(video) if reanalyse else None
        task = {
            "project": project, "checkpoint": checkpoint, "options": options, "reanalyse": reanalyse,
            "video": video if reanalyse else None, "video_path": video_path,
            "source": (str(video_path) if video_path else video.data) if reanalyse else None,
            "n_frames": int(video.data.shape[0]) if reanalyse else 0,
            "bodyparts": self._bodyparts(project), "corrected": set(self.corrected),
            "score_options": self.options() if self.options()["methods"] else {},
        }
        self.eval_label.setText(f"Fine-tuning {_model_name(checkpoint)}…")
        return self._start(_retrain_job, task, "retrain", "Retraining", self._on_retrained)

    def _on_retrained(self, result) -> None:
        job = self._job or {}
        if isinstance(result, _Failed):
            self.eval_label.setText("")
            self._fail("Retraining failed", _error_message(result.error))
            return
        self.retrained = result
        for layer in self.viewer.layers:  # predictions shown now were made by the model before
            if isinstance(layer, Points) and layer.metadata.get("posekit_predictions") and layer is not \
                    self.predictions_layer:
                self._stale[layer.unique_id] = _fingerprint(layer)
        self._fill_comparison(result, job.get("corrected", set()))
        video = job.get("video")
        if result.predictions is not None and video is not None and video in self.viewer.layers:
            self._cache[video.unique_id] = result.predictions
            self._show_predictions(video, result.predictions)
            c = self.candidates
            if c is not None and c.layer is video and result.scores is not None:
                old = c.scores
                c.previous, c.scores, c.predictions = old.combined, result.scores, result.predictions
                self._show_candidates()
        where = _model_name(result.checkpoint)
        text = f"{'Stopped' if result.stopped else 'Retrained'}: {where}, {result.checkpoint.name}."
        if result.scores is not None:
            text += f" Re-analysed: {int(result.scores.flagged.sum())} frames flagged now."
        self.status.setText(text)
        show_info(text)

    @staticmethod
    def _mean_error(evaluation, images: set[str] | None, exclude: set[str] = frozenset()) -> tuple[float, int]:
        """Mean keypoint error (px) over the evaluation's images in ``images`` (all when None), and their count."""
        table = evaluation.per_image
        keep = np.ones(len(table), bool) if images is None else table["image"].isin(images).to_numpy()
        keep = keep & ~table["image"].isin(exclude).to_numpy()
        columns = [c for c in table.columns if c.endswith("_error_px") and c != "mean_error_px"]
        values = table.loc[keep, columns].to_numpy(dtype=float).ravel()
        values = values[np.isfinite(values)]
        return (float(values.mean()) if values.size else float("nan")), int(keep.sum())

    def _fill_comparison(self, result: Retrained, corrected: set[str]) -> None:
        rows = [("before", result.before), ("after", result.after)]
        self.comparison = {}
        for name, evaluation in rows:
            if evaluation is None:
                continue
            corr, n_corr = self._mean_error(evaluation, corrected)
            other, n_other = self._mean_error(evaluation, None, exclude=corrected)
            every, n_all = self._mean_error(evaluation, None)
            self.comparison[name] = {"corrected": corr, "earlier": other, "all": every,
                                     "test": evaluation.error("test"),
                                     "n_corrected": n_corr, "n_earlier": n_other, "n_all": n_all}
        columns = [("corrected", "corrected px", "mean error on the frames corrected here"),
                   ("test", "held-out px", "mean error on the test images, which neither model trained on"),
                   ("earlier", "others px", "mean error on the other labeled frames"),
                   ("all", "all px", "mean error on every labeled frame")]
        table = self.eval_table
        table.clear()
        table.setRowCount(2)
        table.setColumnCount(len(columns))
        table.setHorizontalHeaderLabels([header for _, header, _ in columns])
        labels = [f"before ({_model_name(result.before.checkpoint) if result.before else 'n/a'})",
                  f"after ({result.checkpoint.name})"]
        table.setVerticalHeaderLabels(["before", "after"])
        for c, (key, _, tip) in enumerate(columns):
            table.horizontalHeaderItem(c).setToolTip(tip)
            for r, name in enumerate(("before", "after")):
                value = self.comparison.get(name, {}).get(key, float("nan"))
                item = QTableWidgetItem("–" if not math.isfinite(value) else f"{value:.2f}")
                item.setTextAlignment(_RIGHT)
                item.setToolTip(labels[r])
                table.setItem(r, c, item)
        table.resizeRowsToContents()
        height = table.horizontalHeader().sizeHint().height() + 2 * table.frameWidth()
        height += sum(table.rowHeight(r) for r in range(table.rowCount()))
        table.setFixedHeight(max(height + 2, 40))
        table.show()
        after = result.after
        test = after.error("test")
        text = f"{_model_name(result.checkpoint)}: test error {test:.2f} px on its held-out frames"
        if result.before is not None:
            def held_out(evaluation):
                return set(evaluation.per_image.loc[evaluation.per_image["split"] == "test", "image"])

            same = held_out(result.before) == held_out(after)
            text += f" (before: {result.before.error('test'):.2f} px on {'the same' if same else 'its own'} frames)"
        n = self.comparison.get("after", {}).get("n_corrected", 0)
        text += f"; {n} corrected frames" if n else "; no corrected frames yet"
        if result.before is None and result.before_error:
            text += f". The model before could not be evaluated: {result.before_error}"
        self.eval_label.setText(text)

    def _show_predictions(self, video: Image, predictions: Predictions) -> None:
        """A read-only layer with the retrained model's predictions over the video."""
        bodyparts = predictions.bodyparts
        colors = prediction_colors(bodyparts)
        keep = np.isfinite(predictions.xy).all(axis=2)
        data, features, face = prediction_points(predictions.xy, predictions.likelihood, keep, bodyparts, colors)
        meta = {
            "bodyparts": list(bodyparts),
            "colors": {bp: tuple(float(v) for v in colors[k]) for k, bp in enumerate(bodyparts)},
            "scorer": predictions.scorer,
            "video": str(self.video_path(video)) if self.video_path(video) else None,
            "checkpoint": str(predictions.checkpoint) if predictions.checkpoint else None,
            "path": str(predictions.path) if predictions.path else None,
            "posekit_predictions": True,
            "readonly": True,
        }
        name = f"{video.name} predictions (retrained)"
        layer = self.predictions_layer
        if layer is not None and layer in self.viewer.layers:
            layer.data = data
            layer.features = features
            if len(face):
                layer.face_color = face
            layer.metadata.update(meta)
        else:
            info = video.metadata.get("video") or {}
            size = marker_size(info.get("width") or video.data.shape[2], info.get("height") or video.data.shape[1])
            kwargs = points_kwargs(name, features, face, size, meta)
            active = self.viewer.layers.selection.active
            layer = self.viewer.add_points(data, scale=tuple(video.scale), translate=tuple(video.translate), **kwargs)
            if active is not None and active in self.viewer.layers:
                self.viewer.layers.selection.active = active
            self.predictions_layer = layer
        layer.shown = features["likelihood"].to_numpy() >= 0.6 if len(features) else np.zeros(0, bool)
        layer.editable = False
