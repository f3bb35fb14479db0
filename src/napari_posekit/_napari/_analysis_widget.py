"""Analysis dock widget: run a trained model over a video layer and watch the predictions arrive.

Analysis runs :func:`~napari_posekit.core.inference.iter_analyze` in a napari
``thread_worker``: the worker loads the model (kept for the next run) and
predicts block after block; it never touches layers. Every block it yields is
copied into arrays the widget holds for the whole video, and a timer turns
them into layers at most five times a second (less often when the layers are
large), so the event loop stays responsive:

* ``"<video> predictions"``: Points ``(frame, y, x)`` with ``bodypart`` and
  ``likelihood`` features, one colour per body part (the labeled videos'
  colours); keypoints below the p-cutoff are hidden (the ``shown`` mask);
* ``"<video> skeleton"``: Vectors, the skeleton edges whose two ends are above
  the p-cutoff;
* ``"<video> tracks"``: Tracks, one per body part ``(track_id, t, y, x)``,
  from the keypoints above the p-cutoff, with a tail of the chosen length.

Stop ends a run between blocks; what was analysed stays. Save writes
DeepLabCut's ``<video stem><scorer>.h5`` and ``.csv`` beside the video; the
filter preview adds ``"<video> predictions (filtered)"`` and
``"<video> tracks (filtered)"`` next to the raw layers, and Save filtered
writes ``<stem>_filtered.h5``. Export labeled video draws the predictions on
the video in a second worker and writes an MP4 beside the predictions.
Problems (a bad model path, a model for other body parts, a video that cannot
be read) are shown as notifications and leave the layers as they were.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from napari.layers import Image, Points, Tracks, Vectors
from napari.qt.threading import thread_worker
from napari.utils import progress as napari_progress
from napari.utils.colormaps import Colormap
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)
from superqt import QLabeledDoubleSlider

from napari_posekit._napari.layers import points_kwargs
from napari_posekit._napari.layers import marker_size, prediction_colors, prediction_points
from napari_posekit.core.options import PCUTOFF as DEFAULT_PCUTOFF
from napari_posekit._napari._training_widget import (
    _error_message,
    _Failed,
    _layer_config,
    preload_training_modules,
)
from napari_posekit._napari._viewer import unwrap_viewer
from napari_posekit.core.inference import AnalysisError, iter_analyze, output_paths
from napari_posekit.core.project import ProjectError
from napari_posekit.core.video import VideoError

REFRESH_MS = 200
DEBOUNCE_MS = 120
# problems of the model, the video or a file: a message for the person, not a traceback
# (CheckpointError is a ValueError, a missing file an OSError). Errors come back as values:
# superqt's generator worker drops a RuntimeError (AnalysisError, torch's errors) without a signal.
EXPECTED_ERRORS = (AnalysisError, ProjectError, VideoError, ValueError, OSError, RuntimeError)
RANGES = ("Current frame", "Frame range", "Whole video")
FILTERS = (("median", "median"), ("Savitzky–Golay", "savgol"))


# --------------------------------------------------------------------------- workers
def _resolve_checkpoint(path: Path) -> Path:
    from napari_posekit.core.workflow import latest_checkpoint

    return latest_checkpoint(path) if path.is_dir() or path.suffix in (".yaml", ".yml") else path


def _load_predictor(model: str, cached: tuple | None) -> tuple[tuple, Any]:
    """``(key, Predictor)`` for a project folder, config.yaml or checkpoint; ``cached`` when it is the same file."""
    from napari_posekit.core.inference import Predictor
    from napari_posekit.core.train import default_device

    path = Path(model).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such project or checkpoint")
    checkpoint = _resolve_checkpoint(path)
    key = (str(checkpoint.resolve()), checkpoint.stat().st_mtime_ns)
    if cached is not None and cached[0] == key:
        return cached
    return key, Predictor.load(path, device=default_device())


def _analyze_job(model: str, cached: tuple | None, source: Any, start: int, stop: int, batch_size: int,
                 fast: bool, should_stop: Callable[[], bool]):
    """Load the model, then yield ``{"event": "chunk", ...}`` per block; returns the frames done or ``_Failed``."""
    done = 0
    try:
        key, predictor = _load_predictor(model, cached)
        yield {"event": "ready", "key": key, "predictor": predictor}
        t0 = time.monotonic()
        for chunk in iter_analyze(predictor, source, start=start, stop=stop, batch_size=batch_size, fast=fast,
                                  should_stop=should_stop):
            done += len(chunk.xy)
            yield {"event": "chunk", "chunk": chunk, "done": done, "fps": done / max(time.monotonic() - t0, 1e-9)}
    except EXPECTED_ERRORS as err:
        return _Failed(err)
    return done


def _export_job(make: Callable[[], Any], should_stop: Callable[[], bool]):
    """Drive a labeled-video generator, yielding frames written; returns its path, None when stopped, or ``_Failed``."""
    try:
        frames = make()
        while True:
            if should_stop():
                frames.close()  # leaves no file behind
                return None
            try:
                done = next(frames)
            except StopIteration as finished:
                return finished.value
            yield done
    except EXPECTED_ERRORS as err:
        return _Failed(err)


# --------------------------------------------------------------------------- layer data
def skeleton_data(xy: np.ndarray, keep: np.ndarray, bodyparts: list[str], skeleton) -> np.ndarray:
    """Vectors data ``(n, 2, 3)`` (frame, y, x) for every skeleton edge with both ends kept."""
    out = []
    for a, b in skeleton:
        if a not in bodyparts or b not in bodyparts:
            continue
        i, j = bodyparts.index(a), bodyparts.index(b)
        f = np.flatnonzero(keep[:, i] & keep[:, j])
        start = np.column_stack([f, xy[f, i, 1], xy[f, i, 0]])
        delta = np.column_stack([np.zeros(len(f)), xy[f, j, 1] - xy[f, i, 1], xy[f, j, 0] - xy[f, i, 0]])
        out.append(np.stack([start, delta], axis=1))
    return np.concatenate(out).astype(float) if out else np.empty((0, 2, 3))


def tracks_data(xy: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tracks data ``(M, 4)`` (body part, frame, y, x) sorted by track then time, and each row's body part."""
    parts, frames = np.nonzero(np.asarray(keep).T)
    data = np.column_stack([parts, frames, xy[frames, parts, 1], xy[frames, parts, 0]]).astype(float)
    return data.reshape(-1, 4), parts


def _track_colormap(colors: np.ndarray, name: str) -> Colormap:
    """Body part ``k`` of ``K`` is drawn in ``colors[k]`` for the value ``(k + 0.5) / K``."""
    return Colormap(np.asarray(colors, dtype=float).reshape(-1, 4), interpolation="zero", name=name)


def _runs(mask: np.ndarray) -> list[list[int]]:
    """``[[start, stop], ...]`` of the runs of True."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return [[int(a), int(b)] for a, b in zip(edges[::2], edges[1::2])]


@dataclass(eq=False)
class Analysis:
    """Predictions of one video layer, held for the whole video (NaN where not analysed or not found)."""

    layer: Image
    model_key: tuple
    bodyparts: list[str]
    skeleton: list[tuple[str, str]]
    scorer: str
    checkpoint: Path | None
    video_path: Path | None
    xy: np.ndarray
    likelihood: np.ndarray
    analysed: np.ndarray
    failed: dict[int, str] = field(default_factory=dict)
    saved: Path | None = None
    filtered: tuple[np.ndarray, np.ndarray] | None = None
    filter_options: dict | None = None
    layers: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def new(cls, layer: Image, n_frames: int, predictor, key: tuple, video_path: Path | None) -> Analysis:
        k = len(predictor.bodyparts)
        return cls(
            layer=layer, model_key=key, bodyparts=list(predictor.bodyparts), skeleton=list(predictor.skeleton),
            scorer=predictor.scorer, checkpoint=predictor.checkpoint, video_path=video_path,
            xy=np.full((n_frames, k, 2), np.nan), likelihood=np.zeros((n_frames, k)),
            analysed=np.zeros(n_frames, bool),
        )

    @property
    def colors(self) -> np.ndarray:
        return prediction_colors(self.bodyparts)

    def add(self, chunk) -> None:
        s, e = chunk.start, chunk.stop
        self.xy[s:e] = chunk.xy
        self.likelihood[s:e] = chunk.likelihood
        self.analysed[s:e] = True
        for i in range(s, e):
            self.failed.pop(i, None)
        self.failed.update(chunk.failed)

    def present(self) -> np.ndarray:
        """``(N, K)``: analysed and found."""
        return self.analysed[:, None] & np.isfinite(self.xy).all(axis=2)

    def metadata(self) -> dict:
        """What a prediction file records about this analysis (``_meta.json``)."""
        video = self.layer.metadata.get("video") or {}
        failed = sorted(self.failed)
        return {
            "video": str(self.video_path) if self.video_path else None,
            "layer": self.layer.name,
            "n_frames": int(len(self.xy)),
            "fps": video.get("fps"),
            "width": video.get("width") or int(self.layer.data.shape[2]),
            "height": video.get("height") or int(self.layer.data.shape[1]),
            "checkpoint": str(self.checkpoint) if self.checkpoint else None,
            "skeleton": [list(e) for e in self.skeleton],
            "analysed_frames": _runs(self.analysed),
            "failed_frames": failed,
            "failed_reasons": {str(i): self.failed[i] for i in failed[:100]},
        }


def analysable_layers(viewer) -> list[Image]:
    """Image layers with a time axis: videos from the plugin's reader and image stacks."""
    return [layer for layer in viewer.layers if isinstance(layer, Image) and layer.ndim >= 3]


# --------------------------------------------------------------------------- widget
class AnalysisWidget(QWidget):
    """Model, video and frames, Analyze/Stop, p-cutoff and tails, save, filter and labeled-video export."""

    def __init__(self, napari_viewer):
        super().__init__()
        preload_training_modules()
        self.viewer = unwrap_viewer(napari_viewer)
        self.worker = None
        self.export_worker = None
        self.progress_bar = None
        self.export_progress = None
        self.analyses: dict[object, Analysis] = {}  # layer.unique_id (stable across napari's layer proxies) -> analysis
        self.last_output: Path | None = None
        self._predictor: tuple | None = None  # (key, Predictor) of the model loaded last
        self._run: dict[str, Any] | None = None
        self._stop_requested = False
        self._export_stop = False
        self._dirty = False
        self._next_draw = 0.0
        self._chosen: Image | None = None

        # model and video
        self.model = QLineEdit()
        self.model.setPlaceholderText("project folder, config.yaml or checkpoint (.pt)")
        browse = QPushButton("…")
        browse.setMaximumWidth(30)
        browse.clicked.connect(self._browse)
        self.video_box = QComboBox()
        self.video_box.currentIndexChanged.connect(self._on_video_chosen)
        self.range_box = QComboBox()
        self.range_box.addItems(RANGES)
        self.range_box.setCurrentText("Whole video")
        self.range_box.currentIndexChanged.connect(self._update_controls)
        self.first = QSpinBox()
        self.last = QSpinBox()
        for box in (self.first, self.last):
            box.setRange(0, 0)
        self.batch_size = QSpinBox()
        self.batch_size.setRange(1, 1024)
        self.batch_size.setValue(8)
        self.fast = QCheckBox("fast (crop around the animal)")
        self.fast.setChecked(True)
        self.fast.setToolTip(
            "Run the network on a crop around where the animal was a moment before, at full resolution; "
            "frames where that is unsure are redone on the whole frame"
        )
        self.analyze_button = QPushButton("Analyze")
        self.analyze_button.clicked.connect(lambda: self.analyze())
        self.stop_button = QPushButton("Stop")
        self.stop_button.clicked.connect(self.stop)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        # display
        self.pcutoff = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
        self.pcutoff.setRange(0.0, 1.0)
        self.pcutoff.setDecimals(2)
        self.pcutoff.setSingleStep(0.01)
        self.pcutoff.setValue(DEFAULT_PCUTOFF)
        self.pcutoff.setToolTip("Keypoints with a lower likelihood are hidden and left out of skeleton and tracks")
        self.tail_length = QSpinBox()
        self.tail_length.setRange(0, 100_000)
        self.tail_length.setValue(20)
        self.tail_length.setSuffix(" frames")
        self.tail_length.valueChanged.connect(self._on_tail_length)
        self.save_button = QPushButton("Save predictions")
        self.save_button.clicked.connect(lambda: self.save_predictions())
        # filter
        self.filter_method = QComboBox()
        for text, method in FILTERS:
            self.filter_method.addItem(text, method)
        self.filter_window = QSpinBox()
        self.filter_window.setRange(3, 999)
        self.filter_window.setSingleStep(2)
        self.filter_window.setValue(5)
        self.filter_window.setSuffix(" frames")
        self.filter_window.editingFinished.connect(self._odd_window)
        self.preview_button = QPushButton("Preview")
        self.preview_button.clicked.connect(lambda: self.preview_filter())
        self.save_filtered_button = QPushButton("Save filtered")
        self.save_filtered_button.clicked.connect(lambda: self.save_filtered())
        # labeled video
        self.export_filtered = QCheckBox("filtered")
        self.export_filtered.setToolTip("Draw the filtered predictions (as previewed) instead of the raw ones")
        self.export_button = QPushButton("Export labeled video")
        self.export_button.clicked.connect(lambda: self.export_video())

        row = QHBoxLayout()
        row.addWidget(self.model)
        row.addWidget(browse)
        self.span_row = QWidget()
        span = QHBoxLayout(self.span_row)
        span.setContentsMargins(0, 0, 0, 0)
        span.addWidget(QLabel("from"))
        span.addWidget(self.first, 1)
        span.addWidget(QLabel("to"))
        span.addWidget(self.last, 1)
        form = QFormLayout()
        form.addRow("Model:", row)
        form.addRow("Video:", self.video_box)
        form.addRow("Frames:", self.range_box)
        form.addRow(self.span_row)
        form.addRow("Batch size:", self.batch_size)
        form.addRow("", self.fast)
        buttons = QHBoxLayout()
        buttons.addWidget(self.analyze_button)
        buttons.addWidget(self.stop_button)
        display = QFormLayout()
        display.addRow("p-cutoff:", self.pcutoff)
        display.addRow("Tail length:", self.tail_length)
        filters = QFormLayout()
        filters.addRow("Method:", self.filter_method)
        filters.addRow("Window:", self.filter_window)
        filter_buttons = QHBoxLayout()
        filter_buttons.addWidget(self.preview_button)
        filter_buttons.addWidget(self.save_filtered_button)
        export = QHBoxLayout()
        export.addWidget(self.export_button, 1)
        export.addWidget(self.export_filtered)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        layout.addWidget(QLabel("<b>Predictions</b>"))
        layout.addLayout(display)
        layout.addWidget(self.save_button)
        layout.addWidget(QLabel("<b>Filter</b>"))
        layout.addLayout(filters)
        layout.addLayout(filter_buttons)
        layout.addWidget(QLabel("<b>Labeled video</b>"))
        layout.addLayout(export)
        layout.addStretch(1)

        self._timer = QTimer(self)
        self._timer.setInterval(REFRESH_MS)
        self._timer.timeout.connect(self._refresh)
        self._pcutoff_timer = QTimer(self)
        self._pcutoff_timer.setSingleShot(True)
        self._pcutoff_timer.setInterval(DEBOUNCE_MS)
        self._pcutoff_timer.timeout.connect(self.apply_pcutoff)
        self.pcutoff.valueChanged.connect(lambda _value: self._pcutoff_timer.start())
        self.viewer.layers.events.inserted.connect(self._on_inserted)
        self.viewer.layers.events.removed.connect(self._on_removed)
        for layer in self.viewer.layers:
            self._prefill_model(layer)
            if isinstance(layer, Image):
                layer.events.name.connect(self._refresh_videos)
        self._refresh_videos()
        self._update_controls()

    # -- model and video ---------------------------------------------------------
    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Model: a checkpoint or a project's config.yaml", "", "Models (*.pt config.yaml);;All files (*)"
        )
        if path:
            self.model.setText(str(Path(path).parent) if Path(path).name == "config.yaml" else path)

    def _prefill_model(self, layer) -> None:
        config = _layer_config(layer)
        if config and not self.model.text().strip():
            self.model.setText(str(Path(config).parent))

    def _on_inserted(self, event) -> None:
        self._prefill_model(event.value)
        if isinstance(event.value, Image):
            event.value.events.name.connect(self._refresh_videos)
            self._refresh_videos()

    def _on_removed(self, event) -> None:
        layer = event.value
        self.analyses.pop(layer.unique_id, None)
        for analysis in self.analyses.values():
            for key, value in list(analysis.layers.items()):
                if value is layer:
                    del analysis.layers[key]
        if isinstance(layer, Image):
            layer.events.name.disconnect(self._refresh_videos)
            self._refresh_videos()

    def _refresh_videos(self, *_args) -> None:
        chosen = self._chosen
        current = chosen.name if chosen is not None and chosen in self.viewer.layers else self.video_box.currentText()
        names = [layer.name for layer in analysable_layers(self.viewer)]
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

    def video_layer(self) -> Image | None:
        name = self.video_box.currentText()
        return self.viewer.layers[name] if name and name in self.viewer.layers else None

    def _on_video_chosen(self, *_args) -> None:
        layer = self.video_layer()
        n = int(layer.data.shape[0]) if layer is not None else 1
        for box in (self.first, self.last):
            box.setRange(0, max(n - 1, 0))
        if layer is not self._chosen:  # another video: the range is all of it
            self._chosen = layer
            self.first.setValue(0)
            self.last.setValue(max(n - 1, 0))
        self._update_controls()

    def _update_controls(self, *_args) -> None:
        self.span_row.setVisible(self.range_box.currentText() == "Frame range")
        running = self.worker is not None
        exporting = self.export_worker is not None
        have = self.current_analysis() is not None
        self.analyze_button.setEnabled(not running)
        self.stop_button.setEnabled((running and not self._stop_requested) or exporting)
        for button in (self.save_button, self.preview_button, self.save_filtered_button):
            button.setEnabled(have and not running)
        self.export_button.setEnabled(have and not running and not exporting)

    def current_analysis(self) -> Analysis | None:
        layer = self.video_layer()
        return self.analyses.get(layer.unique_id) if layer is not None else None

    def current_frame(self, layer: Image) -> int:
        """The frame of ``layer`` the viewer shows."""
        frame = layer.world_to_data(self.viewer.dims.point)[0]
        return int(np.clip(round(float(frame)), 0, layer.data.shape[0] - 1))

    def frame_span(self, layer: Image) -> tuple[int, int]:
        """``(start, stop)`` of the frames to analyse."""
        n = int(layer.data.shape[0])
        which = self.range_box.currentText()
        if which == "Current frame":
            frame = self.current_frame(layer)
            return frame, frame + 1
        if which == "Frame range":
            first, last = sorted((self.first.value(), self.last.value()))
            return min(first, n - 1), min(last, n - 1) + 1
        return 0, n

    @staticmethod
    def _frames_of(layer: Image) -> tuple[Any, Path | None]:
        """What the worker reads frames from (the video file when there is one) and the video's path."""
        path = (layer.metadata.get("video") or {}).get("path")
        if path and Path(path).is_file():
            return str(path), Path(path)
        return layer.data, None

    # -- analysis -----------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self.worker is not None

    def _fail(self, what: str, message: str) -> None:
        self.status.setText(f"{what}: {message}")
        show_error(f"{what}: {message}")

    def analyze(self, which: str | None = None):
        """Analyse the chosen frames in a worker; returns the worker, or None with a message.

        ``which`` is one of ``"Current frame"``, ``"Frame range"``, ``"Whole video"``
        (default: the widget's choice).
        """
        if self.busy:
            return None
        if which is not None:
            self.range_box.setCurrentText(which)
        layer = self.video_layer()
        if layer is None:
            self._fail("Cannot analyse", "open a video first (File > Open)")
            return None
        if layer.multiscale or layer.ndim != 3:
            self._fail("Cannot analyse", f"{layer.name} is not a video or a stack of 2D images")
            return None
        model = self.model.text().strip()
        if not model:
            self._fail("Cannot analyse", "choose a model: a project folder, its config.yaml or a checkpoint (.pt)")
            return None
        if not Path(model).expanduser().exists():
            self._fail("Cannot analyse", f"{model}: no such project or checkpoint")
            return None
        start, stop = self.frame_span(layer)
        source, video_path = self._frames_of(layer)
        self._stop_requested = False
        self._run = {
            "layer": layer, "start": start, "stop": stop, "video_path": video_path, "analysis": None,
            "predictor": None, "key": None, "done": 0, "fps": 0.0, "failed": 0,
        }
        worker = thread_worker(_analyze_job, ignore_errors=True)(
            model, self._predictor, source, start, stop, self.batch_size.value(), self.fast.isChecked(),
            lambda: self._stop_requested,
        )
        worker.yielded.connect(self._on_yielded)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_errored)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self.progress_bar = napari_progress(total=stop - start, desc=f"Analyzing {layer.name}")
        what = f"frame {start}" if stop - start == 1 else f"frames {start}–{stop - 1}"
        self.status.setText(f"Loading the model to analyse {what}…")
        self._update_controls()
        self._timer.start()
        worker.start()
        return worker

    def stop(self) -> None:
        """Ask the analysis to stop after the current block (what was analysed stays), or the export to stop."""
        if self.export_worker is not None:
            self._export_stop = True
        if self.worker is not None and not self._stop_requested:
            self._stop_requested = True
            self.status.setText("Stopping…")
            self._update_controls()

    def _on_yielded(self, event: dict[str, Any]) -> None:
        run = self._run
        if run is None:
            return
        if event["event"] == "ready":
            self._predictor = (event["key"], event["predictor"])
            run["predictor"], run["key"] = event["predictor"], event["key"]
            return
        chunk = event["chunk"]
        analysis = run["analysis"]
        if analysis is None:  # the first block: only now replace what the layer had
            layer = run["layer"]
            analysis = self.analyses.get(layer.unique_id)
            if analysis is None or analysis.model_key != run["key"] or len(analysis.xy) != layer.data.shape[0]:
                old = analysis
                analysis = Analysis.new(layer, int(layer.data.shape[0]), run["predictor"], run["key"],
                                        run["video_path"])
                if old is not None:  # another model: its layers show the new predictions, its filter preview goes
                    for key, old_layer in list(old.layers.items()):
                        if key.startswith("filtered"):
                            if old_layer in self.viewer.layers:
                                self.viewer.layers.remove(old_layer)
                        else:
                            analysis.layers[key] = old_layer
                self.analyses[layer.unique_id] = analysis
            run["analysis"] = analysis
        analysis.add(chunk)
        run["done"], run["fps"] = event["done"], event["fps"]
        run["failed"] += len(chunk.failed)
        self._dirty = True

    @staticmethod
    def _status_text(run: dict[str, Any]) -> str:
        total = run["stop"] - run["start"]
        parts = [f"{run['done']}/{total} frames", f"{run['fps']:.1f} frames/s"]
        if run["failed"]:
            parts.append(f"{run['failed']} frames could not be decoded")
        return " · ".join(parts)

    # napari's progress bar processes events when it changes, so the worker's later signals can be
    # handled inside these methods: each works on its own run, and touches the bar last.
    def _refresh(self) -> None:
        run = self._run
        if run is None:
            return
        self._draw(run)
        if run["done"] and not self._stop_requested:
            self.status.setText(self._status_text(run))
        bar = self.progress_bar
        if bar is not None and run["done"] != bar.n:
            bar.set_description(f"Analyzing {run['layer'].name}: {run['fps']:.1f} frames/s")
            bar.update(run["done"] - bar.n)

    def _draw(self, run: dict[str, Any], final: bool = False) -> None:
        """Show what arrived: every so often (drawing takes at most a fifth of the time), all of it at the end."""
        now = time.monotonic()
        if self._dirty and run["analysis"] is not None and (final or now >= self._next_draw):
            self._dirty = False
            self.show_analysis(run["analysis"], grow=not final)
            self._next_draw = time.monotonic() + 4 * (time.monotonic() - now)

    def _on_returned(self, result) -> None:
        run = self._run
        if run is None:
            return
        analysis = run["analysis"]
        if analysis is not None and analysis.filtered is not None and analysis.filter_options is not None:
            analysis.filtered = self._filtered(analysis, **analysis.filter_options)  # the preview follows
            self._dirty = True
        self._dirty = True
        self._draw(run, final=True)
        if isinstance(result, _Failed):
            self._fail("Analysis failed", _error_message(result.error))
            return
        name = run["layer"].name
        total = run["stop"] - run["start"]
        if run["done"] < total:
            text = f"Stopped: {run['done']} of {total} frames of {name} analysed ({run['fps']:.1f} frames/s)."
        else:
            what = f"frame {run['start']}" if total == 1 else f"{total} frames"
            text = f"Analysed {what} of {name} ({run['fps']:.1f} frames/s)."
        if run["failed"]:
            text += f" {run['failed']} frames could not be decoded (no predictions there)."
        self.status.setText(text)

    def _on_errored(self, err: BaseException) -> None:
        # unexpected errors: napari also shows the traceback
        self.status.setText(f"Analysis failed: {type(err).__name__}: {err}")

    def _on_finished(self) -> None:
        self._timer.stop()
        bar, self.progress_bar = self.progress_bar, None
        self.worker = None
        self._run = None
        self._stop_requested = False
        self._update_controls()
        if bar is not None:
            bar.close()

    # -- layers ------------------------------------------------------------------
    def _layer(self, analysis: Analysis, key: str, make: Callable[[], Any], kind: type,
               create: bool) -> tuple[Any, bool]:
        """The analysis' layer ``key`` if it is still in the viewer, else a new one from ``make()`` (or None)."""
        layer = analysis.layers.get(key)
        if isinstance(layer, kind) and layer in self.viewer.layers:
            return layer, False
        if not create:
            return None, False
        layer = make()
        analysis.layers[key] = layer
        return layer, True

    def _placement(self, analysis: Analysis) -> dict[str, Any]:
        video = analysis.layer
        return {"scale": tuple(video.scale), "translate": tuple(video.translate)}

    def _layer_metadata(self, analysis: Analysis, **extra) -> dict[str, Any]:
        colors = analysis.colors
        return {
            "bodyparts": list(analysis.bodyparts),
            "colors": {bp: tuple(float(c) for c in colors[k]) for k, bp in enumerate(analysis.bodyparts)},
            "scorer": analysis.scorer,
            "skeleton": [list(e) for e in analysis.skeleton],
            "video": str(analysis.video_path) if analysis.video_path else None,
            "checkpoint": str(analysis.checkpoint) if analysis.checkpoint else None,
            "posekit_predictions": True,
            "readonly": True,
            **extra,
        }

    def adopt(self, analysis: Analysis) -> None:
        """Take ``analysis`` (predictions made elsewhere for one of the viewer's videos) as this widget's own.

        Its layers are drawn and Save, Preview and Export work on it as on an analysis run here.
        """
        self.analyses[analysis.layer.unique_id] = analysis
        if analysis.saved is not None:
            self.last_output = analysis.saved
        self.show_analysis(analysis)
        self._update_controls()

    def show_analysis(self, analysis: Analysis, create: bool = True, grow: bool = False,
                      data_changed: bool = True) -> None:
        """Update the layers of ``analysis`` (and its filter preview) from its arrays.

        ``create`` adds the layers that are missing. ``grow`` (while an analysis
        runs) lets the Points layer grow in large steps, the rows past the
        predictions hidden: napari's Points does work on every point whenever
        points are added. Without ``data_changed`` (a new p-cutoff) only what
        is shown changes.
        """
        if analysis.layer not in self.viewer.layers:
            return
        cutoff = self.pcutoff.value()
        present = analysis.present()
        above = present & (analysis.likelihood >= cutoff)
        selection = list(self.viewer.layers.selection)
        active = self.viewer.layers.selection.active
        added = False
        if analysis.skeleton:
            vectors = skeleton_data(analysis.xy, above, analysis.bodyparts, analysis.skeleton)
            added |= self._set_vectors(analysis, vectors, create)
        added |= self._set_tracks(analysis, "tracks", analysis.xy, above, create)
        added |= self._set_points(analysis, "points", analysis.xy, analysis.likelihood, present, cutoff, create,
                                  grow=grow, data_changed=data_changed)
        if analysis.filtered is not None:
            xy_f, p_f = analysis.filtered
            keep = analysis.analysed[:, None] & np.isfinite(xy_f).all(axis=2)
            added |= self._set_tracks(analysis, "filtered_tracks", xy_f, keep, create)
            added |= self._set_points(analysis, "filtered_points", xy_f, p_f, keep, None, create)
        if added:  # a new layer takes the selection; give it back
            self.viewer.layers.selection.clear()
            self.viewer.layers.selection.update(layer for layer in selection if layer in self.viewer.layers)
            if active in self.viewer.layers:
                self.viewer.layers.selection.active = active

    def _set_points(self, analysis: Analysis, key: str, xy, likelihood, keep, cutoff: float | None,
                    create: bool, *, grow: bool = False, data_changed: bool = True) -> bool:
        filtered = key == "filtered_points"
        data, features, face = prediction_points(xy, likelihood, keep, analysis.bodyparts, analysis.colors)
        shown = np.ones(len(data), bool) if cutoff is None else features["likelihood"].to_numpy() >= cutoff
        name = f"{analysis.layer.name} predictions" + (" (filtered)" if filtered else "")

        def make():
            video = analysis.layer.metadata.get("video") or {}
            width = video.get("width") or analysis.layer.data.shape[2]
            height = video.get("height") or analysis.layer.data.shape[1]
            kwargs = points_kwargs(name, features, face, marker_size(width, height),
                                   self._layer_metadata(analysis, filtered=filtered))
            kwargs.update(shown=shown, **self._placement(analysis))
            if filtered:
                kwargs.update(symbol="diamond", opacity=0.8)
            layer = self.viewer.add_points(data, **kwargs)
            layer.editable = False
            return layer

        layer, added = self._layer(analysis, key, make, Points, create)
        if layer is None or added:
            return added
        size = len(layer.data)
        size = (max(len(data), 2 * size) if len(data) > size else size) if grow else len(data)
        if size > len(data):  # hidden rows keep the length
            pad = size - len(data)
            data = np.concatenate([data, np.zeros((pad, 3))])
            hidden = {"bodypart": pd.Categorical.from_codes(np.zeros(pad, int), categories=analysis.bodyparts),
                      "likelihood": np.zeros(pad)}
            features = pd.concat([features, pd.DataFrame(hidden)], ignore_index=True)
            face = np.concatenate([face, np.zeros((pad, 4))])
            shown = np.concatenate([shown, np.zeros(pad, bool)])
        if data_changed or size != len(layer.data):
            layer.data = data
            layer.features = features
            if len(face):
                layer.face_color = face
            layer.metadata.update(self._layer_metadata(analysis, filtered=filtered))
            layer.editable = False
        layer.shown = shown
        return added

    def _set_vectors(self, analysis: Analysis, data: np.ndarray, create: bool) -> bool:
        def make():
            return self.viewer.add_vectors(
                data, name=f"{analysis.layer.name} skeleton", edge_width=1.5, edge_color="white",
                vector_style="line", opacity=0.7, metadata=self._layer_metadata(analysis),
                **self._placement(analysis),
            )

        layer, added = self._layer(analysis, "skeleton", make, Vectors, create)
        if layer is not None and not added:
            layer.data = data
        return added

    def _set_tracks(self, analysis: Analysis, key: str, xy: np.ndarray, keep: np.ndarray, create: bool) -> bool:
        filtered = key == "filtered_tracks"
        data, parts = tracks_data(xy, keep)
        empty = not len(data)
        if empty:  # napari's Tracks cannot be empty; a lone vertex draws no line
            data, parts = np.array([[0.0, float(np.argmax(analysis.analysed)), 0.0, 0.0]]), np.zeros(1, int)
        metadata = self._layer_metadata(analysis, filtered=filtered, empty=empty)
        k = max(len(analysis.bodyparts), 1)
        values = {"bodypart_color": (parts + 0.5) / k}
        colors = analysis.colors
        if filtered:  # lighter, so the smoothed tracks stand out from the raw ones
            colors = np.column_stack([0.5 + 0.5 * colors[:, :3], np.ones(len(colors))])
        colormap = _track_colormap(colors, f"posekit-bodyparts-{id(analysis)}-{key}")
        name = f"{analysis.layer.name} tracks" + (" (filtered)" if filtered else "")

        def make():
            return self.viewer.add_tracks(
                data, name=name, features=values, color_by="bodypart_color",
                colormaps_dict={"bodypart_color": colormap}, tail_length=self.tail_length.value(), head_length=0,
                tail_width=3 if filtered else 2, opacity=1.0 if filtered else 0.6, blending="translucent",
                metadata=metadata, **self._placement(analysis),
            )

        layer, added = self._layer(analysis, key, make, Tracks, create)
        if layer is not None and not added:
            with warnings.catch_warnings():  # new data drops the features until they are set again below
                warnings.simplefilter("ignore", UserWarning)
                layer.data = data
                layer.colormaps_dict = {"bodypart_color": colormap}
                layer.features = values
            layer.color_by = "bodypart_color"
            layer.metadata.update(metadata)
        return added

    def apply_pcutoff(self) -> None:
        """Hide keypoints below the p-cutoff and redraw skeletons and tracks (and the filter previews)."""
        self._pcutoff_timer.stop()
        running = self._run["analysis"] if self._run is not None else None
        for analysis in list(self.analyses.values()):
            if analysis is running:  # redrawn with what arrives next
                self._dirty = True
                continue
            if analysis.filtered is not None and analysis.filter_options is not None:
                analysis.filtered = self._filtered(analysis, **analysis.filter_options)
            if analysis.layers:
                self.show_analysis(analysis, create=False, data_changed=False)

    def _on_tail_length(self, value: int) -> None:
        for analysis in self.analyses.values():
            for key in ("tracks", "filtered_tracks"):
                layer = analysis.layers.get(key)
                if isinstance(layer, Tracks):
                    layer.tail_length = int(value)

    # -- saving ------------------------------------------------------------------
    def _need_analysis(self, what: str) -> Analysis | None:
        analysis = self.current_analysis()
        if analysis is None:
            layer = self.video_layer()
            target = f" of {layer.name}" if layer is not None else ""
            self._fail(f"Cannot {what}", f"there are no predictions{target} yet; analyse the video first")
        elif self.busy:
            self._fail(f"Cannot {what}", "wait for the analysis to end (or stop it)")
            return None
        return analysis

    def _default_path(self, analysis: Analysis) -> Path | None:
        """``<video stem><scorer>.h5`` beside the video, or the path it was saved to."""
        if analysis.saved is not None:
            return analysis.saved
        if analysis.video_path is not None:
            return output_paths(analysis.video_path, analysis.scorer)["h5"]
        return None

    def _ask_path(self, analysis: Analysis, suggestion: Path | None) -> Path | None:
        if suggestion is None:
            folder = analysis.layer.metadata.get("folder") or analysis.layer.source.path or os.getcwd()
            folder = Path(folder) if Path(folder).is_dir() else Path(folder).parent
            suggestion = folder / f"{analysis.layer.name}{analysis.scorer}.h5"
        path, _ = QFileDialog.getSaveFileName(self, "Save predictions", str(suggestion), "Predictions (*.h5)")
        if not path:
            return None
        path = Path(path)
        return path if path.suffix.lower() == ".h5" else path.with_name(path.name + ".h5")

    def save_predictions(self, path: str | os.PathLike | None = None) -> Path | None:
        """Write the predictions as DeepLabCut's ``.h5`` + ``.csv`` (+ ``_meta.json``); returns the ``.h5``.

        Default: ``<video stem><scorer>.h5`` beside a video file; an image stack asks where.
        """
        from napari_posekit.core.predictions import write_predictions

        analysis = self._need_analysis("save")
        if analysis is None:
            return None
        target = Path(path) if path is not None else self._default_path(analysis)
        if target is None:
            target = self._ask_path(analysis, None)
            if target is None:
                return None
        try:
            written = write_predictions(target, analysis.xy, analysis.likelihood, analysis.bodyparts, analysis.scorer,
                                        csv=True, metadata=analysis.metadata())
        except (OSError, ValueError) as err:
            self._fail("Cannot save the predictions", _error_message(err))
            return None
        analysis.saved = written
        self.last_output = written
        text = f"Saved the predictions: {written}"
        self.status.setText(text)
        show_info(text)
        return written

    # -- filter --------------------------------------------------------------------
    def _odd_window(self) -> None:
        if self.filter_window.value() % 2 == 0:
            self.filter_window.setValue(self.filter_window.value() + 1)

    def filter_options(self) -> dict[str, Any]:
        self._odd_window()
        return {"method": self.filter_method.currentData(), "window": int(self.filter_window.value())}

    def _filtered(self, analysis: Analysis, method: str, window: int) -> tuple[np.ndarray, np.ndarray]:
        from napari_posekit.core.filtering import filter_predictions

        xy, likelihood = filter_predictions(analysis.xy, analysis.likelihood, method=method, window=window,
                                            pcutoff=self.pcutoff.value())
        return xy, likelihood

    def preview_filter(self) -> Analysis | None:
        """Filter the predictions and show them beside the raw ones."""
        analysis = self._need_analysis("filter")
        if analysis is None:
            return None
        options = self.filter_options()
        try:
            analysis.filtered = self._filtered(analysis, **options)
        except ValueError as err:
            self._fail("Cannot filter", str(err))
            return None
        analysis.filter_options = options
        self.show_analysis(analysis)
        self.status.setText(
            f"Filter preview: {self.filter_method.currentText()}, window {options['window']} frames, "
            f"p-cutoff {self.pcutoff.value():.2f}."
        )
        return analysis

    def save_filtered(self, path: str | os.PathLike | None = None) -> Path | None:
        """Write the filtered predictions as ``<stem>_filtered.h5`` (+ ``.csv``); returns the ``.h5``."""
        from napari_posekit.core.filtering import filtered_path
        from napari_posekit.core.predictions import write_predictions

        analysis = self._need_analysis("save filtered predictions")
        if analysis is None:
            return None
        options = self.filter_options()
        if analysis.filtered is None or analysis.filter_options != options:
            if self.preview_filter() is None:
                return None
        if path is None:
            raw = self._default_path(analysis) or self._ask_path(analysis, None)
            if raw is None:
                return None
            path = filtered_path(raw)
        xy, likelihood = analysis.filtered
        metadata = analysis.metadata()
        metadata["filter"] = {**options, "pcutoff": float(self.pcutoff.value())}
        try:
            written = write_predictions(path, xy, likelihood, analysis.bodyparts, analysis.scorer, csv=True,
                                        metadata=metadata)
        except (OSError, ValueError) as err:
            self._fail("Cannot save the filtered predictions", _error_message(err))
            return None
        self.last_output = written
        text = f"Saved the filtered predictions: {written}"
        self.status.setText(text)
        show_info(text)
        return written

    # -- labeled video -------------------------------------------------------------
    def export_video(self, path: str | os.PathLike | None = None):
        """Write the video with the predictions drawn on it, in a worker; returns the worker (or None).

        The frames from the first to the last analysed one are written, with the
        p-cutoff, tail length and colours of the layers, to
        ``<predictions stem>_labeled.mp4`` beside the predictions (saved first
        when they are not yet); with *filtered* checked, the filter preview's
        predictions and ``<stem>_filtered_labeled.mp4``.
        """
        from napari_posekit.core.labeled_video import iter_labeled_video, labeled_video_path

        analysis = self._need_analysis("export a labeled video")
        if analysis is None or self.export_worker is not None:
            return None
        filtered = self.export_filtered.isChecked()
        if path is None:
            if analysis.saved is None and self.save_predictions() is None:
                return None
            h5 = analysis.saved
            if filtered:
                h5 = self.save_filtered()
                if h5 is None:
                    return None
            path = labeled_video_path(h5)
        elif filtered and analysis.filtered is None and self.preview_filter() is None:
            return None
        xy, likelihood = analysis.filtered if filtered else (analysis.xy, analysis.likelihood)
        frames = np.flatnonzero(analysis.analysed)
        start, stop = int(frames[0]), int(frames[-1]) + 1
        source, _ = self._frames_of(analysis.layer)
        options = {
            "skeleton": list(analysis.skeleton), "pcutoff": float(self.pcutoff.value()),
            "trail_length": int(self.tail_length.value()), "skeleton_color": (255, 255, 255),
            "start": start, "stop": stop, "fps": (analysis.layer.metadata.get("video") or {}).get("fps"),
        }
        bodyparts = list(analysis.bodyparts)

        def make():
            return iter_labeled_video(source, xy.copy(), likelihood.copy(), bodyparts, path, **options)

        self._export_stop = False
        worker = thread_worker(_export_job, ignore_errors=True)(make, lambda: self._export_stop)
        worker.yielded.connect(self._on_export_progress)
        worker.returned.connect(self._on_exported)
        worker.errored.connect(lambda err: self.status.setText(f"Export failed: {type(err).__name__}: {err}"))
        worker.finished.connect(self._on_export_finished)
        self.export_worker = worker
        self.export_progress = napari_progress(total=stop - start, desc=f"Labeled video {Path(path).name}")
        self.status.setText(f"Writing {Path(path).name}…")
        self._update_controls()
        worker.start()
        return worker

    def _on_export_progress(self, done: int) -> None:
        bar = self.export_progress
        if bar is not None and (done - bar.n >= max(1, bar.total // 100) or done == bar.total):
            bar.update(done - bar.n)

    def _on_exported(self, result) -> None:
        if isinstance(result, _Failed):
            self._fail("Cannot export the labeled video", _error_message(result.error))
        elif result is None:
            self.status.setText("Labeled video stopped; nothing was written.")
        else:
            self.last_output = Path(result)
            text = f"Wrote the labeled video: {result}"
            self.status.setText(text)
            show_info(text)

    def _on_export_finished(self) -> None:
        bar, self.export_progress = self.export_progress, None
        self.export_worker = None
        self._update_controls()
        if bar is not None:
            bar.close()
