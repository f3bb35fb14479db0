"""Export in the Training widget and exported models (.onnx) in the Analysis widget, in a real viewer."""

from __future__ import annotations

import shutil
import threading

import pytest
from qtpy.QtCore import Qt

from conftest import TINY_PROJECT
from napari_posekit._napari import _analysis_widget, _training_widget, jobs
from napari_posekit._napari._analysis_widget import AnalysisWidget
from napari_posekit._napari._training_widget import TrainingWidget
from napari_posekit.controllers.analysis import CHOOSING_TEXT
from napari_posekit.controllers.models import export_path, run_export
from napari_posekit.core.engines import available_runtimes
from napari_posekit.core.model_file import read_model_meta
from napari_posekit.core.predictor import Predictor
from napari_posekit.core.sample import write_sample_project
from napari_posekit.core.workflow import latest_checkpoint

TIMEOUT = 120_000
N_FRAMES = TINY_PROJECT["n_frames"]

pytestmark = pytest.mark.usefixtures("torch_threads")


def _messages(monkeypatch, *modules):
    shown: list[str] = []
    for module in modules:
        monkeypatch.setattr(module, "show_error", shown.append)
    return shown


def test_export_button_writes_the_latest_model(make_napari_viewer, qtbot, tiny_project_copy, tmp_path, monkeypatch):
    errors = _messages(monkeypatch, _training_widget, jobs)
    monkeypatch.setattr(_training_widget, "show_info", lambda text: None)
    offered: list[tuple[str, str]] = []
    answer = {"path": str(tmp_path / "tiny-int8")}  # no suffix: .onnx is added

    def save_dialog(parent, caption, directory, filter):
        offered.append((directory, filter))
        return answer["path"], filter

    monkeypatch.setattr(_training_widget.QFileDialog, "getSaveFileName", save_dialog)
    viewer = make_napari_viewer()
    widget = TrainingWidget(viewer)
    assert not widget.export_button.isEnabled()  # no project yet
    widget.project.setText(str(tiny_project_copy / "config.yaml"))
    assert widget.export_button.isEnabled() and not widget.int8.isChecked()
    assert widget.int8.text() == "int8 (calibrated on the labeled frames)"

    widget.int8.setChecked(True)
    qtbot.mouseClick(widget.export_button, Qt.MouseButton.LeftButton)
    checkpoint = latest_checkpoint(tiny_project_copy)
    assert offered == [(str(export_path(checkpoint, int8=True)), "ONNX model (*.onnx)")]  # the core's default
    assert widget.busy and not widget.export_button.isEnabled() and not widget.start_button.isEnabled()
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)
    written = tmp_path / "tiny-int8.onnx"
    assert widget.exported is not None and widget.exported.path == written and written.is_file()
    text = widget.export_label.text()
    assert text.startswith("Exported the model (int8, ") and str(written) in text  # outside the project: all of it
    assert (" kB, " in text or " MB, " in text) and read_model_meta(written)["precision"] == "int8" and not errors
    assert widget.export_button.isEnabled() and widget.start_button.isEnabled()

    # the dialog asked before replacing a file: the export replaces it
    answer["path"] = str(written)
    widget.int8.setChecked(False)
    before = written.stat().st_mtime_ns
    assert widget.export_model() is not None
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)
    assert read_model_meta(written)["precision"] == "float32" and written.stat().st_mtime_ns != before

    # a folder that is not there: the reason in the widget, no traceback, nothing written
    answer["path"] = str(tmp_path / "missing" / "model.onnx")
    assert widget.export_model() is not None
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)
    text = widget.export_label.text()
    assert text.startswith("Export failed: ") and "does not exist" in text and "Traceback" not in text
    assert errors and errors[-1] == text and not (tmp_path / "missing").exists()

    answer["path"] = ""  # cancelled: nothing happens
    assert widget.export_model() is None and not widget.busy


def test_export_is_disabled_without_a_model(make_napari_viewer, tmp_path, monkeypatch):
    errors = _messages(monkeypatch, _training_widget, jobs)
    config = write_sample_project(tmp_path, n_frames=6, height=64, width=96)
    viewer = make_napari_viewer()
    widget = TrainingWidget(viewer)
    widget.project.setText(str(config))
    assert not widget.export_button.isEnabled() and "Train a model first" in widget.export_button.toolTip()
    assert widget.export_model(tmp_path / "m.onnx") is None
    assert "no trained model yet" in widget.export_label.text() and "no trained model yet" in errors[-1]


@pytest.fixture(scope="module")
def exported_model(tiny_trained_project, tmp_path_factory):
    return run_export(latest_checkpoint(tiny_trained_project), tmp_path_factory.mktemp("onnx") / "tiny.onnx").path


def test_analysis_with_an_exported_model(
    make_napari_viewer, qtbot, tiny_trained_project, exported_model, tmp_path, monkeypatch
):
    errors = _messages(monkeypatch, _analysis_widget, jobs)
    filters: list[str] = []

    def open_dialog(parent, caption, directory, filter):
        filters.append(filter)
        return str(exported_model), filter

    monkeypatch.setattr(_analysis_widget.QFileDialog, "getOpenFileName", open_dialog)
    threads: list[bool] = []
    load = Predictor.load.__func__

    def load_here(cls, *args, **kwargs):
        threads.append(threading.current_thread() is threading.main_thread())
        return load(cls, *args, **kwargs)

    monkeypatch.setattr(Predictor, "load", classmethod(load_here))
    video = next((tiny_trained_project / "videos").glob("*.mp4"))
    copy = shutil.copy(video, tmp_path / video.name)
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(copy), plugin="napari-posekit")
    widget = AnalysisWidget(viewer)
    assert widget.backend_box.currentText() == "auto" and widget.backend_box.count() > 4
    assert widget.backend_used.isHidden()  # until a model is loaded
    widget.browse_button.click()
    assert "*.onnx" in filters[-1] and "*.pt" in filters[-1] and widget.model.text() == str(exported_model)

    shown: list[str] = []
    status = widget.jobs.status
    widget.jobs.status = lambda text: (shown.append(text), status(text))
    job = widget.analyze("Whole video")  # "auto": this new file's backends are measured first
    assert job is not None and widget.busy
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)
    assert threads == [False]  # the model was loaded in the job's worker, not on the GUI thread
    if len(available_runtimes()) > 1:  # more than one backend to choose from
        assert CHOOSING_TEXT in shown
    backend = widget.analyses.predictor[1].backend
    assert backend.split("-")[0] in ("onnxruntime", "openvino")
    text = widget.status.text()
    assert text.startswith(f"Analysed {N_FRAMES} frames of {layer.name}") and f"on {backend}" in text
    assert widget.backend_used.text() == f"The network runs on {backend}." and not errors
    analysis = widget.current_analysis()
    meta = read_model_meta(exported_model)
    assert analysis.checkpoint == exported_model and analysis.scorer == meta["scorer"]
    assert analysis.bodyparts == meta["bodyparts"] and analysis.analysed.all()
    points = viewer.layers[f"{layer.name} predictions"]
    assert len(points.data) == N_FRAMES * len(meta["bodyparts"])

    # the same model again: kept, not loaded again; another backend: loaded on it, the predictions kept
    widget.analyze("Current frame")
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)
    assert threads == [False]
    widget.backend_box.setCurrentText("onnxruntime-float32")
    widget.analyze("Current frame")
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)
    assert threads == [False, False] and widget.backend_used.text() == "The network runs on onnxruntime-float32."
    assert "on onnxruntime-float32" in widget.status.text() and widget.current_analysis() is analysis

    # a file that is not a posekit model: the reason, the predictions stay
    other = tmp_path / "other.onnx"
    other.write_bytes(b"not onnx at all")
    widget.model.setText(str(other))
    widget.analyze("Whole video")
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)
    assert errors and errors[-1].startswith("Analysis failed") and "Traceback" not in widget.status.text()
    assert widget.current_analysis() is analysis and len(points.data) == N_FRAMES * len(meta["bodyparts"])
