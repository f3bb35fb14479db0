"""Training dock widget: train a pose model on a project, watch the loss, evaluate, inspect the worst frames.

Training runs :func:`~napari_posekit.core.workflow.train_project` in a napari
``thread_worker``; the worker never touches layers or widgets. Yielded
progress is only recorded by the signal handlers; a timer redraws the status,
the progress bar and the loss curve at most ten times a second, so the event
loop stays responsive however fast the steps come. Stop asks the generator to
stop between steps (it saves a checkpoint first); Resume continues that
checkpoint. When training ends, the model is evaluated and the test images
with the largest errors are listed: clicking one shows it with the network's
predictions next to the labels.
"""

from __future__ import annotations

import importlib.util
import math
import os
import sys
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from napari.layers import Points
from napari.qt.threading import thread_worker
from napari.utils import progress as napari_progress
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QPointF, QRectF, Qt, QTimer
from qtpy.QtGui import QColor, QFont, QPainter, QPen, QPolygonF
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
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from napari_posekit._napari.layers import bodypart_colors
from napari_posekit._napari._viewer import unwrap_viewer
from napari_posekit.core.model import PretrainedWeightsError
from napari_posekit.core.project import ProjectError
from napari_posekit.core.train import DEFAULT_LR, TrainingMemoryError
from napari_posekit.core.workflow import Evaluation, evaluate_project, model_folder, train_project

BACKBONES = ["efficientnet_lite0", "resnet18", "resnet50", "mobilenetv3_large_100"]
PROGRESS_TOTAL = 1000
REFRESH_MS = 100
WORST_SHOWN = 10
MAX_WARNINGS_SHOWN = 3
# problems of the project or the settings: a message for the person, not a traceback
# (UnknownBackboneError and CheckpointError are ValueErrors; a missing checkpoint is an OSError)
EXPECTED_ERRORS = (ProjectError, PretrainedWeightsError, TrainingMemoryError, ValueError, OSError)


@dataclass
class _Failed:
    """What a worker returns for an expected error.

    superqt's generator worker drops a RuntimeError (such as
    PretrainedWeightsError) without any signal, so errors come back as values.
    """

    error: BaseException


def _import_triton() -> None:
    """Import triton (torchvision pulls it in through ``torch._dynamo``) with its own LLVM symbols.

    Importing triton after an OpenGL driver has loaded Mesa's ``libLLVM``
    (napari's canvas on Linux without a vendor driver, or under Xvfb) crashes
    the process: the two LLVMs' symbols clash. With ``RTLD_DEEPBIND`` triton's
    library binds to its own copy.
    """
    if sys.platform != "linux" or "triton" in sys.modules or not hasattr(os, "RTLD_DEEPBIND"):
        return
    try:
        if importlib.util.find_spec("triton") is None:
            return
        with open("/proc/self/maps") as maps:
            if "libLLVM" not in maps.read():
                return
    except (OSError, ValueError, ImportError):
        return
    flags = sys.getdlopenflags()
    sys.setdlopenflags(flags | os.RTLD_DEEPBIND)
    try:
        with suppress(Exception):  # torch works without triton
            import triton  # noqa: F401
    finally:
        sys.setdlopenflags(flags)


def preload_training_modules() -> None:
    """Import here, in the main thread, the libraries that training and evaluation import lazily.

    An import in a worker thread holds the GIL for up to ~150 ms at a time
    (loading code and extension modules), which freezes the event loop; done
    once when the widget opens, the workers import nothing large.
    """
    _import_triton()
    for name in ("torchvision.transforms.v2", "torchvision.tv_tensors", "timm"):
        with suppress(ImportError):
            importlib.import_module(name)


def _train_job(project: Path, options: dict[str, Any], resume: bool, stop: Callable[[], bool]):
    try:
        checkpoint = yield from train_project(project, resume=resume, stop=stop, **options)
    except EXPECTED_ERRORS as err:
        return _Failed(err)
    return checkpoint


def _evaluate_job(project: Path, checkpoint: Path | None):
    try:
        return evaluate_project(project, checkpoint)
    except EXPECTED_ERRORS as err:
        return _Failed(err)


def format_eta(seconds: float | None) -> str:
    """``m:ss`` (``h:mm:ss`` from an hour on); ``?`` when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = round(seconds)
    h, m, s = s // 3600, s // 60 % 60, s % 60
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _error_message(err: BaseException) -> str:
    text = str(err) or type(err).__name__
    return text if not isinstance(err, OSError) or not err.filename else f"{err.strerror or text}: {err.filename}"


def _model_name(checkpoint: Path) -> str:
    """The model folder's name (``<Task><date>-trainset95shuffle1``) of a checkpoint."""
    checkpoint = Path(checkpoint)
    return checkpoint.parent.parent.name if checkpoint.parent.name == "train" else checkpoint.parent.name


# --------------------------------------------------------------------------- loss curve
def _nice_step(span: float, n: int) -> float:
    raw = span / max(n, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if factor * magnitude >= raw:
            return factor * magnitude
    return 10 * magnitude


def linear_ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    """Round tick values covering ``[lo, hi]``."""
    if not hi > lo:
        return [lo]
    step = _nice_step(hi - lo, n)
    first = math.ceil(lo / step - 1e-9) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def log_ticks(lo: float, hi: float) -> list[float]:
    """Ticks at 1, 2, 5 times powers of ten inside ``[lo, hi]`` (powers of ten only when there are many)."""
    out: list[float] = []
    for mantissas in ((1.0,), (1.0, 2.0, 5.0), (1.0, 1.5, 2.0, 3.0, 5.0, 7.0)):
        out = [
            m * 10.0**e
            for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
            for m in mantissas
            if lo * (1 - 1e-9) <= m * 10.0**e <= hi * (1 + 1e-9)
        ]
        if len(out) >= 2:
            return out[:: max(1, len(out) // 6)]
    return out or [lo]


_LEFT = Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter
_RIGHT = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
_CENTER = Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop


class LossCurve(QWidget):
    """Training loss per step (log scale, left axis) and test error in pixels (right axis)."""

    LOSS_COLOR = QColor(86, 160, 242)
    TEST_COLOR = QColor(245, 146, 52)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.test_steps: list[int] = []
        self.test_errors: list[float] = []
        self.setMinimumHeight(190)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.MinimumExpanding)

    def clear(self) -> None:
        for values in (self.steps, self.losses, self.test_steps, self.test_errors):
            values.clear()
        self.update()

    def add_loss(self, step: int, loss: float) -> None:
        """Record one step (a resumed run replaces what it repeats); the next paint shows it."""
        while self.steps and self.steps[-1] >= step:
            self.steps.pop(), self.losses.pop()
        if math.isfinite(loss) and loss > 0:
            self.steps.append(int(step))
            self.losses.append(float(loss))

    def add_test(self, step: int, error_px: float) -> None:
        while self.test_steps and self.test_steps[-1] >= step:
            self.test_steps.pop(), self.test_errors.pop()
        if math.isfinite(error_px):
            self.test_steps.append(int(step))
            self.test_errors.append(float(error_px))

    # -- painting --------------------------------------------------------------
    @staticmethod
    def _smooth(values: np.ndarray) -> np.ndarray:
        """Centred moving average over about a twentieth of the points (shorter at the ends)."""
        n, half = len(values), len(values) // 40
        if half < 1:
            return values
        total = np.concatenate([[0.0], np.cumsum(values)])
        lo = np.clip(np.arange(n) - half, 0, n)
        hi = np.clip(np.arange(n) + half + 1, 0, n)
        return (total[hi] - total[lo]) / (hi - lo)

    def _decimate(self, x: np.ndarray, y: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
        """At most ``bins`` points: means over equal runs of steps."""
        if len(x) <= bins:
            return x, y
        edges = np.linspace(0, len(x), bins + 1).astype(int)
        counts = np.diff(edges)
        keep = counts > 0
        return tuple(np.add.reduceat(v, edges[:-1])[keep] / counts[keep] for v in (x, y))

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        font = QFont(self.font())
        font.setPointSizeF(max(7.0, font.pointSizeF() * 0.85))
        painter.setFont(font)
        metrics = painter.fontMetrics()
        text = self.palette().color(self.foregroundRole())
        grid = QColor(text)
        grid.setAlpha(40)
        fh = metrics.height()
        left, right = metrics.horizontalAdvance("0.0001") + 12, metrics.horizontalAdvance("000") + 16
        top, bottom = fh + 8, 2 * fh + 6
        plot = QRectF(left, top, max(self.width() - left - right, 10), max(self.height() - top - bottom, 10))
        painter.setPen(QPen(grid, 1))
        painter.drawRect(plot)
        if not self.steps:
            painter.setPen(text)
            painter.drawText(plot, Qt.AlignmentFlag.AlignCenter, "The loss appears here during training")
            painter.end()
            return

        steps = np.asarray(self.steps, dtype=float)
        x0, x1 = float(steps[0]), float(max(steps[-1], self.test_steps[-1] if self.test_steps else 0))
        if x1 <= x0:
            x0, x1 = x0 - 1, x0 + 1
        logs = np.log10(np.asarray(self.losses))
        lo, hi = float(logs.min()), float(logs.max())
        if hi - lo < 0.1:
            lo, hi = lo - 0.05, hi + 0.05
        pad = 0.05 * (hi - lo)
        lo, hi = lo - pad, hi + pad

        def px(x: np.ndarray | float):
            return plot.left() + (np.asarray(x, dtype=float) - x0) / (x1 - x0) * plot.width()

        def py_loss(v: np.ndarray | float):
            return plot.bottom() - (np.asarray(v, dtype=float) - lo) / (hi - lo) * plot.height()

        # axes: x (steps), left (loss, log), right (test px)
        for tick in linear_ticks(x0, x1, max(2, int(plot.width() // 70))):
            x = float(px(tick))
            painter.setPen(QPen(grid, 1))
            painter.drawLine(QPointF(x, plot.top()), QPointF(x, plot.bottom()))
            painter.setPen(text)
            painter.drawText(QRectF(x - 40, plot.bottom() + 2, 80, fh), _CENTER, f"{tick:g}")
        painter.drawText(QRectF(plot.left(), plot.bottom() + fh + 2, plot.width(), fh), _CENTER, "step")
        for tick in log_ticks(10**lo, 10**hi):
            y = float(py_loss(math.log10(tick)))
            painter.setPen(QPen(grid, 1))
            painter.drawLine(QPointF(plot.left(), y), QPointF(plot.right(), y))
            painter.setPen(self.LOSS_COLOR)
            painter.drawText(QRectF(0, y - fh / 2, left - 4, fh), _RIGHT, f"{tick:.3g}")
        painter.setPen(self.LOSS_COLOR)
        painter.drawText(QRectF(0, 2, left + 40, fh), Qt.AlignmentFlag.AlignLeft, "loss (log)")

        bins = max(int(plot.width()), 2)
        painter.setClipRect(plot.adjusted(-1, -1, 1, 1))
        raw = QColor(self.LOSS_COLOR)
        raw.setAlpha(70)
        for values, colour, width in ((logs, raw, 1.0), (self._smooth(logs), self.LOSS_COLOR, 2.0)):
            xs, ys = self._decimate(steps, values, bins)
            painter.setPen(QPen(colour, width))
            painter.drawPolyline(QPolygonF([QPointF(a, b) for a, b in zip(px(xs), py_loss(ys))]))
        painter.setClipping(False)

        if self.test_errors:
            errors = np.asarray(self.test_errors)
            ticks = linear_ticks(0.0, float(errors.max()) * 1.1 or 1.0, 3)
            top_px = max(ticks[-1], float(errors.max()) * 1.05)

            def py_test(v):
                return plot.bottom() - np.asarray(v, dtype=float) / top_px * plot.height()

            painter.setPen(self.TEST_COLOR)
            for tick in ticks:
                y = float(py_test(tick))
                painter.drawText(QRectF(plot.right() + 4, y - fh / 2, right - 4, fh), _LEFT, f"{tick:g}")
            painter.drawText(QRectF(plot.right() - 40, 2, right + 40, fh), Qt.AlignmentFlag.AlignRight, "test px")
            xs, ys = px(np.asarray(self.test_steps)), py_test(errors)
            painter.setPen(QPen(self.TEST_COLOR, 1.5))
            if len(xs) > 1:
                painter.drawPolyline(QPolygonF([QPointF(a, b) for a, b in zip(xs, ys)]))
            painter.setBrush(self.TEST_COLOR)
            for a, b in zip(xs, ys):
                painter.drawEllipse(QPointF(a, b), 2.5, 2.5)
            painter.setBrush(Qt.BrushStyle.NoBrush)

        # legend, top right inside the plot
        entries = [("train loss", self.LOSS_COLOR)]
        if self.test_errors:
            entries.append(("test error (px)", self.TEST_COLOR))
        width = max(metrics.horizontalAdvance(label) for label, _ in entries) + 26
        box = QRectF(plot.right() - width - 4, plot.top() + 4, width, len(entries) * fh + 4)
        back = self.palette().color(self.backgroundRole())
        back.setAlpha(200)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(back)
        painter.drawRect(box)
        for i, (label, colour) in enumerate(entries):
            y = box.top() + 2 + i * fh + fh / 2
            painter.setPen(QPen(colour, 2))
            painter.drawLine(QPointF(box.left() + 4, y), QPointF(box.left() + 18, y))
            painter.setPen(text)
            painter.drawText(QRectF(box.left() + 22, y - fh / 2, width, fh), _LEFT, label)
        painter.end()


# --------------------------------------------------------------------------- the widget
def _layer_config(layer) -> str | None:
    """The config.yaml of a keypoints layer opened by the project reader."""
    meta = getattr(layer, "metadata", None) or {}
    if isinstance(layer, Points) and meta.get("config") and not meta.get("posekit_predictions"):
        return str(meta["config"])
    return None


def _is_project_layer(layer) -> bool:
    meta = getattr(layer, "metadata", None) or {}
    return isinstance(layer, Points) and bool(meta.get("images")) and not meta.get("posekit_predictions")


class TrainingWidget(QWidget):
    """Settings, Start/Stop/Resume, a live loss curve, the evaluation table and the worst test images."""

    def __init__(self, napari_viewer):
        super().__init__()
        preload_training_modules()
        self.viewer = unwrap_viewer(napari_viewer)
        self.worker = None
        self.eval_worker = None
        self.evaluation: Evaluation | None = None
        self.checkpoint: Path | None = None
        self.last_progress: dict[str, Any] = {}
        self.last_test_px: float | None = None
        self.progress_bar = None
        self._stop_requested = False
        self._dirty = False
        self._recent_losses: list[float] = []
        self._warnings = 0
        self._evaluate_when_done: Path | None = None
        self._evaluated_project: Path | None = None

        # project
        self.project = QLineEdit()
        self.project.setPlaceholderText("project config.yaml or folder")
        self.project.textChanged.connect(self._update_buttons)
        browse = QPushButton("…")
        browse.setMaximumWidth(30)
        browse.clicked.connect(self._browse)
        # settings
        self.backbone = QComboBox()
        self.backbone.setEditable(True)
        self.backbone.addItems(BACKBONES)
        self.pretrained = QCheckBox("ImageNet weights")
        self.pretrained.setChecked(True)
        self.input_scale = QDoubleSpinBox()
        self.input_scale.setRange(0.0, 4.0)
        self.input_scale.setDecimals(2)
        self.input_scale.setSingleStep(0.05)
        self.input_scale.setSpecialValueText("default")
        self.input_scale.setValue(0.0)
        self.input_scale.setToolTip(
            "Scale images by this factor for the network (default: from the labels, 1 unless the animal spans more than a 224-px crop; Resume keeps the trained scale)"
        )
        self.batch_size = QSpinBox()
        self.batch_size.setRange(1, 1024)
        self.batch_size.setValue(8)
        self.epochs = QSpinBox()
        self.epochs.setRange(0, 1_000_000)
        self.epochs.setSpecialValueText("no limit")
        self.epochs.setValue(0)
        self.epochs.setToolTip("Passes over the training images; training ends at this or the time budget")
        self.minutes = QDoubleSpinBox()
        self.minutes.setRange(0.0, 100_000.0)
        self.minutes.setDecimals(1)
        self.minutes.setSuffix(" min")
        self.minutes.setSpecialValueText("no limit")
        self.minutes.setValue(10.0)
        self.minutes.setToolTip("Wall-clock training time; the learning rate schedule follows it")
        self.lr = QDoubleSpinBox()
        self.lr.setRange(1e-6, 1.0)
        self.lr.setDecimals(6)
        self.lr.setSingleStep(1e-4)
        self.lr.setValue(DEFAULT_LR)
        self.split = QComboBox()
        self.split.addItems(["random", "block"])
        self.split.currentTextChanged.connect(self._update_buttons)
        self.split.setToolTip("random: test images drawn at random; block: the last labeled images, a contiguous block")
        # actions
        self.start_button = QPushButton("Start")
        self.start_button.clicked.connect(lambda: self.start())
        self.stop_button = QPushButton("Stop")
        self.stop_button.clicked.connect(self.stop)
        self.resume_button = QPushButton("Resume")
        self.resume_button.clicked.connect(lambda: self.start(resume=True))
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.curve = LossCurve()
        # evaluation
        self.evaluate_button = QPushButton("Evaluate")
        self.evaluate_button.clicked.connect(lambda: self.evaluate())
        self.eval_label = QLabel("")
        self.eval_label.setWordWrap(True)
        self.table = QTableWidget(0, 0)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.table.hide()  # until there is an evaluation
        self.worst = QListWidget()
        self.worst.setMaximumHeight(170)
        self.worst.itemClicked.connect(lambda item: self.jump_to_worst(self.worst.row(item)))
        self.predictions_layer: Points | None = None

        row = QHBoxLayout()
        row.addWidget(self.project)
        row.addWidget(browse)
        form = QFormLayout()
        form.addRow("Project:", row)
        form.addRow("Backbone:", self.backbone)
        form.addRow("", self.pretrained)
        form.addRow("Input scale:", self.input_scale)
        form.addRow("Batch size:", self.batch_size)
        form.addRow("Epochs:", self.epochs)
        form.addRow("Time budget:", self.minutes)
        form.addRow("Learning rate:", self.lr)
        form.addRow("Test split:", self.split)
        buttons = QHBoxLayout()
        for button in (self.start_button, self.stop_button, self.resume_button):
            buttons.addWidget(button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        layout.addWidget(self.curve, 1)
        evaluation = QHBoxLayout()
        evaluation.addWidget(QLabel("<b>Evaluation</b>"))
        evaluation.addStretch(1)
        evaluation.addWidget(self.evaluate_button)
        layout.addLayout(evaluation)
        layout.addWidget(self.eval_label)
        layout.addWidget(self.table)
        layout.addWidget(QLabel("Worst test images (click to show with predictions):"))
        layout.addWidget(self.worst)

        self._timer = QTimer(self)
        self._timer.setInterval(REFRESH_MS)
        self._timer.timeout.connect(self._refresh)
        self.viewer.layers.events.inserted.connect(self._on_inserted)
        for layer in self.viewer.layers:
            if not self.project.text() and _layer_config(layer):
                self.project.setText(_layer_config(layer))
        self._update_buttons()

    # -- project and settings -------------------------------------------------
    def _on_inserted(self, event) -> None:
        config = _layer_config(event.value)
        if config and self.worker is None:
            self.project.setText(config)

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Project config.yaml", "", "config.yaml (config.yaml)")
        if path:
            self.project.setText(path)

    def _project_path(self) -> Path | None:
        text = self.project.text().strip()
        if not text:
            return None
        path = Path(text).expanduser()
        if path.name.endswith(".yaml"):
            path = path.parent
        return path if (path / "config.yaml").is_file() else None

    def _checkpoint_for_resume(self) -> Path | None:
        project = self._project_path()
        if project is None:
            return None
        try:
            path = model_folder(project, split=self.split.currentText()) / "train" / "checkpoint.pt"
        except Exception:  # noqa: BLE001 - an unreadable config: Resume stays off, Start says why
            return None
        return path if path.is_file() else None

    def options(self) -> dict[str, Any]:
        """Keyword arguments for ``train_project`` from the settings."""
        options: dict[str, Any] = {
            "backbone": self.backbone.currentText().strip(),
            "pretrained": self.pretrained.isChecked(),
            "batch_size": self.batch_size.value(),
            "lr": self.lr.value(),
            "split": self.split.currentText(),
            "epochs": self.epochs.value() or None,
            "max_minutes": self.minutes.value() or None,
        }
        if self.input_scale.value() > 0:
            options["input_scale"] = self.input_scale.value()
        return options

    # -- training -------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self.worker is not None or self.eval_worker is not None

    def _fail(self, what: str, message: str) -> None:
        self.status.setText(f"{what}: {message}")
        show_error(f"{what}: {message}")

    def start(self, resume: bool = False, **overrides):
        """Start (or resume) training in a worker; returns the worker, or None with a message.

        ``overrides`` are further keyword arguments for ``train_project``
        (e.g. ``input_size``, ``device``).
        """
        if self.busy:
            return None
        project = self._project_path()
        if project is None:
            text = self.project.text().strip()
            reason = f"'{text}' is not a project (no config.yaml)" if text else "choose a project first"
            self._fail("Cannot train", reason)
            return None
        options = {**self.options(), **overrides}
        if options.get("epochs") is None and options.get("max_minutes") is None:
            self._fail("Cannot train", "set a number of epochs or a time budget (both are 'no limit')")
            return None
        self._stop_requested = False
        self._evaluate_when_done = None
        self.last_progress = {}
        self._recent_losses = []
        self._warnings = 0
        if not resume:
            self.curve.clear()
            self.last_test_px = None
        worker = thread_worker(_train_job, ignore_errors=True)(
            project, options, resume, lambda: self._stop_requested
        )
        worker.yielded.connect(self._on_yielded)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_errored)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self._project_running = project
        self.progress_bar = napari_progress(total=PROGRESS_TOTAL, desc="Resuming training" if resume else "Training")
        self.status.setText("Resuming training…" if resume else "Starting training…")
        self._update_buttons()
        self._timer.start()
        worker.start()
        return worker

    def stop(self) -> None:
        """Ask training to stop after the current step; it saves a checkpoint first."""
        if self.worker is not None and not self._stop_requested:
            self._stop_requested = True
            self.status.setText("Stopping: saving a checkpoint…")
            self._update_buttons()

    def _on_yielded(self, p: dict[str, Any]) -> None:
        # only record here: the timer draws (steps can come faster than the screen needs)
        event = p.get("event")
        if event == "warning":
            self._warnings += 1
            if self._warnings <= MAX_WARNINGS_SHOWN:
                show_warning(str(p.get("message")))
            return
        if event == "evaluated":
            self.last_test_px = p.get("test_error_px")
            if self.last_test_px is not None:
                self.curve.add_test(int(p["step"]), float(self.last_test_px))
        else:
            self.curve.add_loss(int(p["step"]), float(p["loss"]))
            self._recent_losses = (self._recent_losses + [float(p["loss"])])[-20:]
        self.last_progress = p
        self._dirty = True

    def _status_text(self) -> str:
        p = self.last_progress
        parts = [f"epoch {p['epoch']}"]
        if self._recent_losses:
            parts.append(f"loss {np.mean(self._recent_losses):.4f}")
        if self.last_test_px is not None and math.isfinite(self.last_test_px):
            parts.append(f"test {self.last_test_px:.2f} px")
        parts.append(f"ETA {format_eta(p.get('eta_s'))}")
        return " · ".join(parts)

    def _refresh(self) -> None:
        if not self._dirty or not self.last_progress:
            return
        self._dirty = False
        p = self.last_progress
        if self.progress_bar is not None:
            value = round(PROGRESS_TOTAL * min(max(float(p.get("progress", 0.0)), 0.0), 1.0))
            if value != self.progress_bar.n:
                self.progress_bar.update(value - self.progress_bar.n)
            self.progress_bar.set_description(f"Training: epoch {p['epoch']}, ETA {format_eta(p.get('eta_s'))}")
        if not self._stop_requested:
            self.status.setText(self._status_text())
        self.curve.update()

    def _on_returned(self, result) -> None:
        self._refresh()
        if self._warnings > MAX_WARNINGS_SHOWN:
            show_warning(f"… and {self._warnings - MAX_WARNINGS_SHOWN} more warnings about the labels")
        if isinstance(result, _Failed):
            self._fail("Training failed", _error_message(result.error))
            return
        self.checkpoint = Path(result)
        try:
            where = self.checkpoint.relative_to(self._project_running)
        except ValueError:
            where = self.checkpoint
        epoch = self.last_progress.get("epoch", "?")
        if self._stop_requested:
            text = f"Stopped at epoch {epoch}; checkpoint saved: {where}. Resume continues it."
        else:
            text = f"Finished after epoch {epoch}; checkpoint: {where}. Evaluating…"
            self._evaluate_when_done = self.checkpoint
        self.status.setText(text)
        show_info(text)

    def _on_errored(self, err: BaseException) -> None:
        # unexpected errors: napari also shows the traceback
        self.status.setText(f"Training failed: {type(err).__name__}: {err}")

    def _on_finished(self) -> None:
        self._timer.stop()
        if self.progress_bar is not None:
            self.progress_bar.close()
            self.progress_bar = None
        self.curve.update()
        self.worker = None
        self._update_buttons()
        if self._evaluate_when_done is not None:
            checkpoint, self._evaluate_when_done = self._evaluate_when_done, None
            self.evaluate(checkpoint)

    def _update_buttons(self, *_args) -> None:
        training = self.worker is not None
        self.start_button.setEnabled(not self.busy)
        self.resume_button.setEnabled(not self.busy and self._checkpoint_for_resume() is not None)
        self.stop_button.setEnabled(training and not self._stop_requested)
        self.evaluate_button.setEnabled(not self.busy)

    # -- evaluation -----------------------------------------------------------
    def evaluate(self, checkpoint: str | os.PathLike | None = None):
        """Evaluate ``checkpoint`` (default: the last one trained here, else the project's latest) in a worker."""
        if self.busy:
            return None
        project = self._project_path()
        if project is None:
            self._fail("Cannot evaluate", "choose a project first")
            return None
        if checkpoint is None and self.checkpoint is not None and self.checkpoint.is_relative_to(project.resolve()):
            checkpoint = self.checkpoint
        worker = thread_worker(_evaluate_job, ignore_errors=True)(project, Path(checkpoint) if checkpoint else None)
        worker.returned.connect(self._on_evaluated)
        worker.errored.connect(lambda err: self.eval_label.setText(f"Evaluation failed: {type(err).__name__}: {err}"))
        worker.finished.connect(self._on_eval_finished)
        self.eval_worker = worker
        self._eval_project = project
        self.eval_label.setText("Evaluating…")
        self._update_buttons()
        worker.start()
        return worker

    def _on_eval_finished(self) -> None:
        self.eval_worker = None
        self.status.setText(self.status.text().removesuffix(" Evaluating…"))
        self._update_buttons()

    def _on_evaluated(self, result) -> None:
        if isinstance(result, _Failed):
            self.eval_label.setText(f"Evaluation failed: {_error_message(result.error)}")
            show_error(f"Evaluation failed: {_error_message(result.error)}")
            return
        self.evaluation = result
        self._evaluated_project = self._eval_project.resolve()
        self._fill_table(result)
        self._fill_worst(result)
        epochs = int(result.summary["epochs"].iloc[0]) if "epochs" in result.summary else "?"
        self.eval_label.setText(
            f"{_model_name(result.checkpoint)}, {epochs} epochs: test error {result.error('test'):.2f} px, "
            f"train {result.error('train'):.2f} px"
        )

    def _fill_table(self, evaluation: Evaluation) -> None:
        summary = evaluation.summary
        parts = [c for c in summary.columns if c.endswith("_error_px") and c != "mean_error_px"]
        pck = [c for c in summary.columns if c.startswith("pck@")]
        cutoff = f"{evaluation.pcutoff:g}"
        columns = [  # (summary column, header, format, tooltip)
            ("images", "images", "{:.0f}", "labeled images"),
            ("mean_error_px", "error px", "{:.2f}", "mean error over labeled keypoints (pixels)"),
            ("mean_error_px_pcutoff", f"p>{cutoff} px", "{:.2f}",
             f"mean error of keypoints predicted with likelihood >= {cutoff} (pixels)"),
            *[(c, c[: -len("_error_px")], "{:.2f}", f"{c[: -len('_error_px')]}: mean error (pixels)") for c in parts],
            *[(c, "PCK@" + c[4:].removesuffix("px"), "{:.0%}",
               f"keypoints within {c[4:].removesuffix('px')} px of the label") for c in pck],
        ]
        self.table.clear()
        self.table.setRowCount(len(summary))
        self.table.setColumnCount(len(columns))
        self.table.setHorizontalHeaderLabels([header for _, header, _, _ in columns])
        self.table.setVerticalHeaderLabels([str(s) for s in summary["split"]])
        for c, (column, _, fmt, tooltip) in enumerate(columns):
            self.table.horizontalHeaderItem(c).setToolTip(tooltip)
            for r, value in enumerate(summary[column]):
                item = QTableWidgetItem("–" if pd.isna(value) else fmt.format(value))
                item.setTextAlignment(_RIGHT)
                self.table.setItem(r, c, item)
        self.table.show()
        self._fit_table()

    def _fit_table(self) -> None:
        """Exactly as high as its rows (plus a scroll bar when the columns do not fit)."""
        self.table.resizeRowsToContents()
        height = self.table.horizontalHeader().sizeHint().height() + 2 * self.table.frameWidth()
        height += sum(self.table.rowHeight(r) for r in range(self.table.rowCount()))
        height += self.table.horizontalScrollBar().sizeHint().height()
        self.table.setFixedHeight(max(height, 40))

    def _fill_worst(self, evaluation: Evaluation) -> None:
        self.worst.clear()
        worst = evaluation.worst_test.head(WORST_SHOWN)
        for image, error in zip(worst["image"], worst["mean_error_px"]):
            value = "n/a" if pd.isna(error) else f"{error:.1f} px"
            item = QListWidgetItem(f"{Path(str(image)).name}  {value}")
            item.setToolTip(str(image))
            item.setData(Qt.ItemDataRole.UserRole, str(image))
            self.worst.addItem(item)
        if not len(worst):
            self.worst.addItem("(no test images)")

    # -- worst frames -----------------------------------------------------------
    def _find_image(self, image: str) -> tuple[Points, int] | None:
        """The keypoints layer of the evaluated project showing ``image``, and its frame index there.

        Layers of other projects are skipped; layers opened from a folder outside
        any project count. The image matches by its relative path, else by its
        folder and file name, else by file name.
        """
        image = image.replace("\\", "/")
        parts = image.split("/")
        folder_name = parts[-2] if len(parts) > 1 else None

        def same_project(layer) -> bool:
            config = layer.metadata.get("config")
            project = self._evaluated_project
            return not config or project is None or Path(config).resolve().parent == project

        layers = [layer for layer in self.viewer.layers if _is_project_layer(layer) and same_project(layer)]
        for match in (
            lambda name, layer: name == image,
            lambda name, layer: name.split("/")[-1] == parts[-1]
            and Path(str(layer.metadata.get("folder", ""))).name == folder_name,
            lambda name, layer: name.split("/")[-1] == parts[-1],
        ):
            for layer in layers:
                names = [str(n).replace("\\", "/") for n in layer.metadata["images"]]
                for index, name in enumerate(names):
                    if match(name, layer):
                        return layer, index
        return None

    def jump_to_worst(self, row: int) -> None:
        """Show the ``row``-th worst test image with the model's predictions (opening the project if needed)."""
        if self.evaluation is None:
            return
        worst = self.evaluation.worst_test.head(WORST_SHOWN)
        if not 0 <= row < len(worst):
            return
        image = str(worst["image"].iloc[row])
        found = self._find_image(image)
        if found is None and self._evaluated_project is not None:
            folder = (self._evaluated_project / image).parent
            if folder.is_dir():
                self.viewer.open(str(folder), plugin="napari-posekit")
                found = self._find_image(image)
        if found is None:
            self._fail("Cannot show", f"{image} is not open in the viewer and could not be opened")
            return
        layer, frame = found
        self._show_predictions(layer)
        step = list(self.viewer.dims.current_step)
        step[0] = frame
        self.viewer.dims.current_step = tuple(step)
        self.viewer.layers.selection.active = layer

    def _show_predictions(self, layer: Points) -> None:
        """A read-only Points layer with the predictions for the images of ``layer``."""
        evaluation = self.evaluation
        per_image = evaluation.per_image
        names = [str(n).replace("\\", "/") for n in layer.metadata["images"]]
        index = {name: i for i, name in enumerate(names)}
        bodyparts = [c[: -len("_likelihood")] for c in per_image.columns if c.endswith("_likelihood")]
        colors = layer.metadata.get("colors") or bodypart_colors(bodyparts)
        fallback = bodypart_colors(bodyparts)
        rows, frames = [], []
        for r, image in enumerate(per_image["image"]):
            frame = index.get(str(image).replace("\\", "/"))
            if frame is not None:
                rows.append(r)
                frames.append(frame)
        data, parts, likelihood = [], [], []
        for r, frame in zip(rows, frames):
            record = per_image.iloc[r]
            for bp in bodyparts:
                x, y = float(record[f"{bp}_x"]), float(record[f"{bp}_y"])
                if math.isfinite(x) and math.isfinite(y):
                    data.append((frame, y, x))
                    parts.append(bp)
                    likelihood.append(float(record[f"{bp}_likelihood"]))
        features = pd.DataFrame(
            {"bodypart": pd.Categorical(parts, categories=bodyparts), "likelihood": np.asarray(likelihood, dtype=float)}
        )
        face = np.array([tuple(colors.get(bp, fallback[bp])) for bp in parts], dtype=float).reshape(-1, 4)
        name = f"predictions ({_model_name(evaluation.checkpoint)})"
        metadata = {
            "posekit_predictions": True,
            "readonly": True,
            "checkpoint": str(evaluation.checkpoint),
            "folder": layer.metadata.get("folder"),
        }
        sizes = np.asarray(layer.size, dtype=float).ravel()
        size = float(np.median(sizes)) if sizes.size else 8.0
        data = np.asarray(data, dtype=float).reshape(-1, 3)
        existing = next((other for other in self.viewer.layers if other.name == name), None)
        if isinstance(existing, Points) and existing.metadata.get("posekit_predictions"):
            predictions = existing
            predictions.data = data
            predictions.features = features
            if len(face):
                predictions.face_color = face
            predictions.symbol = "cross"
            predictions.metadata.update(metadata)
        else:
            predictions = self.viewer.add_points(
                data, ndim=3, name=name, features=features, symbol="cross", size=size,
                border_width=0, metadata=metadata, **({"face_color": face} if len(face) else {}),
            )
        predictions.editable = False
        self.predictions_layer = predictions
