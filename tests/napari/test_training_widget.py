"""Training widget: train, stop/resume, evaluate, show the worst frames; errors; a responsive event loop."""

from __future__ import annotations

import gc
import math
import re
import shutil
import sys
import time

import numpy as np
import pytest
from qtpy.QtCore import QTimer

from conftest import require_shared
from napari_posekit._napari import _training_widget, jobs
from napari_posekit._napari._labeling import LabelingWidget
from napari_posekit._napari._training_widget import TrainingWidget
from napari_posekit._napari._writer import write_keypoints
from napari_posekit._napari.jobs import PROGRESS_TOTAL, format_eta
from napari_posekit._napari.layers import is_keypoints_layer
from napari_posekit._napari.loss_curve import linear_ticks, log_ticks
from napari_posekit.core.collected_data import read_collected, write_collected
from napari_posekit.core.config import read_config, write_config
from napari_posekit.core.sample import write_sample_project
from napari_posekit.core.train import load_checkpoint
from napari_posekit.core.workflow import MODELS_FOLDER, latest_checkpoint

FAST = {"input_size": (64, 64), "device": "cpu"}
TIMEOUT = 180_000


pytestmark = pytest.mark.usefixtures("torch_threads")


@pytest.fixture
def project(tmp_path):
    """A 12-frame synthetic project, every frame labeled, a quarter of them for testing."""
    config_path = write_sample_project(tmp_path, n_frames=12, height=64, width=96)
    config = read_config(config_path)
    config["TrainingFraction"] = [0.75]
    write_config(config_path, config)
    return config_path.parent


def _configure(widget, project, epochs):
    widget.project.setText(str(project / "config.yaml"))
    widget.backbone.setCurrentText("resnet18")
    widget.pretrained.setChecked(False)
    widget.batch_size.setValue(4)
    widget.epochs.setValue(epochs)
    widget.minutes.setValue(0)


def _idle(widget):
    return widget.start_button.isEnabled() and not widget.stop_button.isEnabled() and not widget.busy


def test_helpers():
    assert format_eta(252) == "4:12" and format_eta(5) == "0:05" and format_eta(3725) == "1:02:05"
    assert format_eta(float("nan")) == "?" and format_eta(None) == "?"
    assert linear_ticks(0, 10, 5) == [0, 2, 4, 6, 8, 10]
    assert log_ticks(0.003, 2.0) == pytest.approx([0.01, 0.1, 1.0])
    assert log_ticks(0.03, 0.09) == pytest.approx([0.03, 0.05, 0.07])


def test_event_loop_stays_responsive_while_training(make_napari_viewer, qtbot, project):
    """Kept before the other training tests: run alone, this file measures the first run in the process."""
    viewer = make_napari_viewer()
    widget = TrainingWidget(viewer)
    # what training imports lazily is imported now, in the main thread (an import in the worker stalls the loop)
    assert {"timm", "torchvision.transforms.v2"} <= set(sys.modules)
    _configure(widget, project, epochs=6)
    qtbot.waitUntil(lambda: not widget.label_jobs.busy, timeout=TIMEOUT)  # the label checks, before training
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    # what earlier tests left behind is collected now and kept out of later collections: a full collection of
    # their objects during training would hold the interpreter for a long time and say nothing about training
    gc.collect()
    gc.freeze()
    try:
        timer.start()
        qtbot.wait(100)
        started = time.perf_counter()
        widget.start(**FAST)
        qtbot.waitUntil(lambda: widget.evaluation is not None and not widget.busy, timeout=TIMEOUT)
        duration = time.perf_counter() - started
        timer.stop()
    finally:
        gc.unfreeze()
    gaps = np.diff([t for t in ticks if t >= started])
    assert duration > 2.0 and len(gaps) > 100
    print(f"training + evaluation {duration:.1f} s, {len(gaps)} timer ticks, longest gap {1000 * gaps.max():.0f} ms")
    assert gaps.max() < 0.150


@pytest.mark.filterwarnings("ignore:.*labels lie outside")
def test_train_evaluate_and_show_the_worst_frame(make_napari_viewer, qtbot, project, monkeypatch):
    warnings: list[str] = []
    monkeypatch.setattr(_training_widget, "show_warning", warnings.append)
    labels = next((project / "labeled-data").glob("*/CollectedData_*.h5"))
    df = read_collected(labels)
    df.iloc[3, 0] = 500.0  # one label outside its image: a warning, training goes on without it
    write_collected(df, labels.parent)
    viewer = make_napari_viewer()
    widget = TrainingWidget(viewer)
    assert widget.backbone.currentText() == "efficientnet_lite0" and widget.pretrained.isChecked()
    assert widget.input_scale.text() == "default" and "input_scale" not in widget.options()
    assert widget.options()["max_minutes"] == 10 and widget.options()["epochs"] is None
    _configure(widget, project, epochs=3)
    assert _idle(widget) and not widget.resume_button.isEnabled()  # nothing to resume yet

    job = widget.start(**FAST)
    assert job is not None and job.progress_bar is not None and widget.jobs.running("train") is job
    assert not widget.start_button.isEnabled() and not widget.resume_button.isEnabled()
    assert widget.stop_button.isEnabled()
    assert widget.start() is None  # one run at a time
    qtbot.waitUntil(lambda: widget.evaluation is not None and not widget.busy, timeout=TIMEOUT)

    assert len(warnings) == 1 and "outside the 96x64 image" in warnings[0]
    checkpoint = latest_checkpoint(project)
    assert widget.checkpoint == checkpoint and checkpoint.relative_to(project).parts[0] == MODELS_FOLDER
    assert load_checkpoint(checkpoint)[2]["epoch"] == 3
    assert _idle(widget) and widget.resume_button.isEnabled()
    assert widget.status.text().startswith("Finished after epoch 3")
    # 9 training images, batch 4: 3 steps per epoch; a test error after every epoch
    # the test error after the first epoch and the last; between them only when evaluating is cheap enough
    assert widget.curve.steps == list(range(1, 10)) and 2 <= len(widget.curve.test_errors) <= 3
    assert all(math.isfinite(v) and v > 0 for v in widget.curve.losses)

    evaluation = widget.evaluation
    assert evaluation.checkpoint == checkpoint
    table = widget.table
    headers = [table.horizontalHeaderItem(c).text() for c in range(table.columnCount())]
    assert headers[:2] == ["images", "error px"] and headers[2].startswith("p>")
    assert {"snout", "leftear", "rightear", "tailbase", "PCK@2", "PCK@5", "PCK@10"} <= set(headers)
    rows = [table.verticalHeaderItem(r).text() for r in range(table.rowCount())]
    assert rows == ["train", "test"]
    assert table.item(0, 0).text() == "9" and table.item(1, 0).text() == "3"
    assert float(table.item(1, 1).text()) == pytest.approx(evaluation.error("test"), abs=0.01)
    assert "test error" in widget.eval_label.text()

    worst = evaluation.worst_test
    assert widget.worst.count() == 3
    first = worst.iloc[0]
    assert widget.worst.item(0).text() == f"{first['image'].split('/')[-1]}  {first['mean_error_px']:.1f} px"

    # the project is not open yet: the widget opens its labeled-data folder
    widget.jump_to_worst(0)
    keypoints = next(layer for layer in viewer.layers if is_keypoints_layer(layer))
    frame = keypoints.metadata["images"].index(first["image"])
    assert viewer.dims.current_step[0] == frame
    name = f"predictions ({checkpoint.parent.parent.name})"
    predictions = viewer.layers[name]
    assert predictions is widget.predictions_layer
    assert len(predictions.data) == 12 * 4  # every labeled image of the folder, every body part
    assert set(predictions.symbol) == {predictions.symbol[0]} and str(predictions.symbol[0]) == "cross"
    assert "likelihood" in predictions.features and predictions.editable is False
    on_frame = predictions.data[:, 0] == frame
    snout = on_frame & (predictions.features["bodypart"] == "snout").to_numpy()
    assert predictions.data[snout, 1:].tolist() == [[first["snout_y"], first["snout_x"]]]
    snout_color = keypoints.metadata["colors"]["snout"]
    assert np.allclose(predictions.face_color[snout][0], snout_color)
    # not a layer of the project's labels: the Labeling widget and the writer leave it alone
    assert not is_keypoints_layer(predictions)
    labeling = LabelingWidget(viewer)
    assert labeling.layer is keypoints
    assert name not in [labeling.layer_box.itemText(i) for i in range(labeling.layer_box.count())]
    with pytest.raises(ValueError, match="only keypoints layers"):
        write_keypoints(
            str(project / "x.h5"),
            predictions.data,
            {"metadata": predictions.metadata, "features": predictions.features},
        )
    # the same layer is reused for another row; the project is not opened twice
    n_layers = len(viewer.layers)
    widget.jump_to_worst(2)
    assert len(viewer.layers) == n_layers
    assert viewer.dims.current_step[0] == keypoints.metadata["images"].index(worst.iloc[2]["image"])


def test_stop_saves_a_checkpoint_and_resume_continues(make_napari_viewer, qtbot, project):
    viewer = make_napari_viewer()
    widget = TrainingWidget(viewer)
    _configure(widget, project, epochs=6)
    job = widget.start(**FAST)
    qtbot.waitUntil(lambda: len(widget.curve.steps) >= 4, timeout=TIMEOUT)  # into the second epoch
    qtbot.wait(200)  # two redraws of the job runner
    assert re.fullmatch(r"epoch \d · loss \d\.\d{4} · test \d+\.\d\d px · ETA \d+:\d\d", widget.status.text())
    assert 0 < job.progress_bar.n < PROGRESS_TOTAL
    assert job.progress_bar.desc.startswith("Training: epoch ")
    widget.stop()
    assert not widget.stop_button.isEnabled() and "Stopping" in widget.status.text()
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)
    checkpoint = widget.checkpoint
    stopped_at = load_checkpoint(checkpoint)[2]["epoch"]
    assert 2 <= stopped_at < 6 and widget.status.text().startswith(f"Stopped at epoch {stopped_at}")
    assert widget.evaluation is None  # a stopped run is not evaluated on its own
    assert _idle(widget) and widget.resume_button.isEnabled()
    steps_before = list(widget.curve.steps)

    widget.resume_button.click()  # the settings' epochs (6), counted from the first run
    assert widget.jobs.running("train") is not None and widget.stop_button.isEnabled()
    qtbot.waitUntil(lambda: widget.evaluation is not None and not widget.busy, timeout=TIMEOUT)
    assert "Training failed" not in widget.status.text()
    assert widget.checkpoint == checkpoint and load_checkpoint(checkpoint)[2]["epoch"] == 6 > stopped_at
    assert widget.evaluation.checkpoint == checkpoint
    steps = widget.curve.steps
    assert steps[: len(steps_before)] == steps_before and steps == sorted(set(steps)) and steps[-1] == 18
    assert steps[len(steps_before)] == 3 * stopped_at + 1  # the resumed run goes on from its checkpoint


def test_bad_input_is_a_message_and_writes_nothing(make_napari_viewer, qtbot, project, monkeypatch):
    errors: list[str] = []
    monkeypatch.setattr(_training_widget, "show_error", errors.append)
    monkeypatch.setattr(jobs, "show_error", errors.append)  # a job's failure
    viewer = make_napari_viewer()
    widget = TrainingWidget(viewer)
    assert widget.start() is None and "choose a project" in errors[-1]
    widget.project.setText(str(project / "nowhere"))
    assert widget.start() is None and "not a project" in widget.status.text()
    _configure(widget, project, epochs=0)  # neither epochs nor minutes
    assert widget.start() is None and "time budget" in errors[-1]
    assert _idle(widget)

    labels = next((project / "labeled-data").glob("*/CollectedData_*.h5"))
    original = read_collected(labels)
    write_collected(original * np.nan, labels.parent)
    widget.epochs.setValue(1)
    job = widget.start(**FAST)
    assert job is not None
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)
    assert "no labeled frames" in widget.status.text() and "no labeled frames" in errors[-1]
    assert _idle(widget) and widget.evaluation is None and widget.checkpoint is None
    assert not (project / MODELS_FOLDER).exists()

    # evaluating without a model is a message too
    write_collected(original, labels.parent)
    widget.evaluate()
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)
    assert "Evaluation failed" in widget.eval_label.text() and "Evaluation failed" in errors[-1]
    assert widget.evaluate_button.isEnabled()


def test_project_path_comes_from_the_opened_project(make_napari_viewer, tmp_path):
    src = require_shared("dlc_openfield-Pranav-2018-10-30")
    project = tmp_path / "openfield"
    shutil.copytree(src / "labeled-data", project / "labeled-data")
    shutil.copy(src / "config.yaml", project / "config.yaml")
    viewer = make_napari_viewer()
    widget = TrainingWidget(viewer)
    assert widget.project.text() == "" and not widget.resume_button.isEnabled()
    viewer.open(str(project / "config.yaml"), plugin="napari-posekit")
    assert widget.project.text() == str(project / "config.yaml")
    assert widget.start_button.isEnabled() and not widget.resume_button.isEnabled()  # no model yet
    later = TrainingWidget(viewer)  # a widget opened after the project finds it too
    assert later.project.text() == str(project / "config.yaml")
