"""Training widget on a multi-animal project: the finder, then the pose network, as one run; where the model is."""

from __future__ import annotations

import pytest
from test_analysis_multianimal import make_two_animal_project

from napari_posekit._napari._training_widget import TrainingWidget

TIMEOUT = 180_000

pytestmark = pytest.mark.usefixtures("torch_threads")


def test_train_a_two_animal_project(make_napari_viewer, qtbot, tmp_path):
    project = make_two_animal_project(tmp_path)
    viewer = make_napari_viewer()
    widget = TrainingWidget(viewer)
    widget.project.setText(str(project / "config.yaml"))
    widget.backbone.setCurrentText("resnet18")
    widget.pretrained.setChecked(False)
    widget.batch_size.setValue(4)
    widget.epochs.setValue(1)
    widget.minutes.setValue(0)
    texts = []
    job = widget.start(device="cpu")
    assert job is not None and not widget.resume_button.isEnabled()
    qtbot.waitUntil(lambda: texts.append(widget.status.text()) or not widget.busy, timeout=TIMEOUT)

    folder = next(project.glob("posekit-models/*/*/multianimal.json")).parent
    text = widget.status.text()
    assert "Trained the multi-animal model" in text and str(folder.relative_to(project)) in text
    assert any(t.startswith("finding the animals · epoch") for t in texts)
    steps = widget.curve.history.steps
    assert steps == sorted(steps) and len(steps) >= 4  # both networks' steps on one curve
    assert widget.evaluation is None and widget.checkpoint is None  # no single-animal evaluation

    assert widget.start(resume=True) is None and "cannot be resumed" in widget.status.text()
    assert widget.evaluate() is None and "not evaluated here" in widget.status.text()
