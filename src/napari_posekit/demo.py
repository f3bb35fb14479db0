"""End-to-end demo on the built-in sample: what the README's first command runs.

The work itself (project, k-means frames, labels, training, analysis, labeled
video, error against the ground truth) is napari-free, in
:mod:`napari_posekit.core.demo_pipeline`. This module opens the result in
napari with the plugin's own readers, widgets and layer builders: the video
(lazy), the predictions as the Analysis widget shows them (points, skeleton,
trajectories), the ground truth (hidden, for comparison), and the Analysis
and Training widgets docked.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np


def run_demo(output_dir: Path, screenshot: bool = False, show: bool = True, minutes: float | None = None) -> int:
    """Run the pipeline, then open napari on its results.

    With ``screenshot`` the viewer is not kept open: it saves
    ``screenshot.png`` in ``output_dir`` and exits. Returns the exit status.
    """
    from napari_posekit.core.demo_pipeline import (
        DemoError,
        DemoOptions,
        TextProgress,
        check_output_dir,
        format_result,
        run_pipeline,
    )

    options = DemoOptions()
    if minutes is not None:
        options.minutes = float(minutes)
    try:
        out = check_output_dir(output_dir)
    except DemoError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(
        f"posekit demo: the whole job on the synthetic sample ({options.n_frames} frames, "
        f"{options.width}x{options.height}), training budget {options.minutes:g} min; outputs in {out}"
    )
    t0 = time.perf_counter()
    progress = TextProgress()
    try:
        result = run_pipeline(out, options, progress=progress, log=lambda text: _log(progress, text))
    except KeyboardInterrupt:
        progress.close()
        print("interrupted", file=sys.stderr)
        return 130
    print(format_result(result), flush=True)

    t = time.perf_counter()
    import napari

    viewer = napari.Viewer(title="napari-posekit demo", show=show)
    viewer.window.resize(1500, 950)
    shown = show_results(viewer, result)
    print(f"napari opened with the video, the predictions and the widgets ({time.perf_counter() - t:.0f} s)")
    if screenshot:
        path = save_screenshot(viewer, out / "screenshot.png", shown["training"])
        viewer.close()
        print(f"screenshot saved: {path}")
        print(f"demo total: {time.perf_counter() - t0:.0f} s")
        return 0
    print(f"demo total until the viewer is up: {time.perf_counter() - t0:.0f} s; close the window to end")
    napari.run()
    return 0


def _log(progress, text: str) -> None:
    progress.close()
    print(text, flush=True)


def show_results(viewer, result) -> dict:
    """Add the video, ground truth and predictions (through the Analysis widget) and dock the widgets.

    Returns ``{"video": layer, "analysis": AnalysisWidget, "training": TrainingWidget}``.
    """
    from napari.layers import Layer

    from napari_posekit._napari._analysis_widget import AnalysisWidget
    from napari_posekit._napari._training_widget import TrainingWidget
    from napari_posekit._napari._video_widget import VideoWidget
    from napari_posekit._napari.layers import Key, keypoints_layer_data
    from napari_posekit.core.config import read_config
    from napari_posekit.core.predictions import read_predictions

    config = read_config(result.config)
    skeleton = [tuple(edge) for edge in config.get("skeleton") or [] if len(edge) == 2]
    (video,) = viewer.open(result.video, plugin="napari-posekit")
    truth = _groundtruth(result)
    if truth is not None:
        data = keypoints_layer_data(
            truth,
            list(config.bodyparts),
            name="ground truth",
            metadata={Key.SKELETON: [list(e) for e in skeleton], Key.READONLY: True},
        )
        layer = viewer.add_layer(Layer.create(*data))
        layer.visible = False  # tick it in the layer list to compare with the predictions
        layer.editable = False
    viewer.window.add_dock_widget(VideoWidget(viewer), name="Video (PoseKit)", area="right")
    training = TrainingWidget(viewer)
    viewer.window.add_dock_widget(training, name="Training (PoseKit)", area="right", tabify=True)
    analysis = AnalysisWidget(viewer)
    analysis_dock = viewer.window.add_dock_widget(analysis, name="Analysis (PoseKit)", area="right", tabify=True)
    training.project.setText(str(result.config))
    analysis.model.setText(str(result.project))

    predictions = read_predictions(result.predictions)
    _show_predictions(analysis, video, predictions, result, skeleton)
    training.evaluate(result.checkpoint)
    analysis_dock.raise_()
    viewer.dims.axis_labels = ("frame", "y", "x")
    viewer.dims.current_step = (_telling_frame(predictions.xy, analysis.tail_length.value()), 0, 0)
    viewer.layers.selection.active = video
    _fit(viewer, analysis_dock)
    return {"video": video, "analysis": analysis, "training": training}


def _fit(viewer, dock, width: int = 430) -> None:
    """A narrower dock than napari's default, so the canvas gets most of the window, and the frame fitted to it."""
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QApplication

    qt_window = getattr(viewer.window, "_qt_window", None)
    if qt_window is not None:
        qt_window.resizeDocks([dock], [width], Qt.Orientation.Horizontal)
    QApplication.processEvents()
    viewer.reset_view()


def _groundtruth(result) -> np.ndarray | None:
    """``(frames, body parts, 2)`` ground truth from the sample's CSV, in the config's body-part order."""
    from napari_posekit.core.predictions import read_predictions

    try:
        truth = read_predictions(result.groundtruth_csv)
    except (OSError, ValueError):
        return None
    return np.asarray(truth.xy, dtype=float)


def _show_predictions(widget, video, predictions, result, skeleton) -> None:
    """Hand the predictions to the Analysis widget as if it had analysed the video, and let it draw them."""
    from napari_posekit.controllers.analysis import Analysis

    checkpoint = Path(result.checkpoint)
    n = int(video.data.shape[0])
    xy = np.full((n, len(predictions.bodyparts), 2), np.nan)
    likelihood = np.zeros((n, len(predictions.bodyparts)))
    m = min(n, predictions.n_frames)
    xy[:m], likelihood[:m] = predictions.xy[:m], np.nan_to_num(predictions.likelihood[:m])
    analysed = np.zeros(n, bool)
    analysed[:m] = True
    analysis = Analysis(
        layer_id=video.unique_id,
        model_key=(str(checkpoint.resolve()), checkpoint.stat().st_mtime_ns),
        bodyparts=list(predictions.bodyparts),
        skeleton=skeleton,
        scorer=predictions.scorer,
        checkpoint=checkpoint,
        video_path=Path(result.video),
        xy=xy,
        likelihood=likelihood,
        analysed=analysed,
        saved=Path(result.predictions),
    )
    widget.adopt(analysis)
    widget.status.setText("The demo's predictions (saved beside the video in the project's videos/).")


def _telling_frame(xy: np.ndarray, tail: int) -> int:
    """A frame in the middle half of the video where the animal moved most over the ``tail`` frames before it."""
    n = len(xy)
    if n < 4:
        return 0
    with np.errstate(invalid="ignore"):
        centre = np.nanmean(xy, axis=1)  # (n, 2); NaN where nothing was found
    step = np.nan_to_num(np.linalg.norm(np.diff(centre, axis=0), axis=1))
    walked = np.concatenate([[0.0], np.cumsum(step)])  # walked[f]: path from frame 0 to frame f
    frames = np.arange(n // 4, 3 * n // 4 + 1)
    path = walked[frames] - walked[np.maximum(frames - max(tail, 1), 0)]
    return int(frames[np.argmax(path)])


def save_screenshot(viewer, path: Path, training=None, timeout: float = 60.0) -> Path:
    """Let the widgets settle (the Training widget's evaluation ends), then save the whole window."""
    from qtpy.QtWidgets import QApplication

    deadline = time.monotonic() + timeout
    while training is not None and training.busy and time.monotonic() < deadline:
        QApplication.processEvents()
        time.sleep(0.05)
    QApplication.processEvents()
    viewer.reset_view()  # the canvas has its final size now
    for _ in range(20):
        QApplication.processEvents()
        time.sleep(0.01)
    viewer.screenshot(str(path), canvas_only=False)
    return Path(path)
