"""Model resolution: a project folder, its config.yaml or a checkpoint to one checkpoint, key and name."""

from __future__ import annotations

import os

import pytest

from napari_posekit.controllers.models import (
    latest_checkpoint,
    model_key,
    model_name,
    project_folder,
    resolve_model,
    resume_checkpoint,
)
from napari_posekit.core.workflow import MODELS_FOLDER, ProjectError, model_folder


@pytest.fixture
def project(tmp_path):
    """A folder with a config.yaml (what makes it a project here)."""
    folder = tmp_path / "mouse-me-2024-01-01"
    folder.mkdir()
    (folder / "config.yaml").write_text("Task: mouse\ndate: Jan1\nTrainingFraction:\n- 0.95\niteration: 0\n")
    return folder


def _checkpoint(project, name, mtime):
    path = project / MODELS_FOLDER / "iteration-0" / name / "train" / "checkpoint.pt"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"weights")
    os.utime(path, ns=(mtime, mtime))
    return path


def test_project_folder_takes_the_folder_or_its_config(project, tmp_path):
    assert project_folder(str(project)) == project
    assert project_folder(str(project / "config.yaml")) == project
    assert project_folder(f"  {project}  ") == project
    assert project_folder("") is None and project_folder(None) is None
    assert project_folder(str(tmp_path)) is None  # no config.yaml
    assert project_folder(str(tmp_path / "nowhere" / "config.yaml")) is None


def test_model_name_and_key(project):
    path = _checkpoint(project, "mouseJan1-trainset95shuffle1", 1_000_000_000)
    assert model_name(path) == "mouseJan1-trainset95shuffle1"
    assert model_name(project / "elsewhere" / "model.pt") == "elsewhere"
    assert model_key(path) == (str(path.resolve()), 1_000_000_000)
    os.utime(path, ns=(2_000_000_000, 2_000_000_000))  # fine-tuning writes under the same name
    assert model_key(path) == (str(path.resolve()), 2_000_000_000)
    assert model_key(None) is None and model_key(project / "missing.pt") is None


def test_resolve_model_takes_the_latest_checkpoint_of_a_project(project, tmp_path):
    older = _checkpoint(project, "mouseJan1-trainset95shuffle1", 1_000_000_000)
    newer = _checkpoint(project, "mouseJan1-trainset95shuffle1-block", 2_000_000_000)
    for text in (project, project / "config.yaml", str(project)):
        ref = resolve_model(text)
        assert ref.checkpoint == newer and ref.name == "mouseJan1-trainset95shuffle1-block"
        assert ref.key == model_key(newer)
    assert resolve_model(older).checkpoint == older  # a checkpoint is itself
    assert latest_checkpoint(project) == newer
    with pytest.raises(FileNotFoundError, match="no such project, checkpoint or model file"):
        resolve_model(tmp_path / "nowhere")


def test_a_project_without_a_model(project):
    with pytest.raises(ProjectError, match="no trained model yet"):
        resolve_model(project)
    assert latest_checkpoint(project) is None and latest_checkpoint(None) is None


def test_resume_checkpoint_follows_the_split(project, tmp_path):
    assert resume_checkpoint(project) is None and resume_checkpoint(None) is None
    random = model_folder(project, split="random") / "train" / "checkpoint.pt"
    random.parent.mkdir(parents=True)
    random.write_bytes(b"weights")
    assert resume_checkpoint(project) == random
    assert resume_checkpoint(project, split="block") is None
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.yaml").write_text(": not yaml: [")
    assert resume_checkpoint(broken) is None  # an unreadable config: nothing to resume
