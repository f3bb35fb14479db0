"""posekit train / analyze on a multi-animal project (top-down model)."""

from __future__ import annotations

import numpy as np
import pytest
from test_topdown import ANIMALS, PARTS, two_animals

from conftest import torch_thread_limit
from napari_posekit.cli import main


@pytest.fixture(scope="module")
def ma_project(tmp_path_factory):
    """A two-animal DeepLabCut project with 10 labeled frames (one animal missing from one) and a video."""
    from PIL import Image

    from napari_posekit.core.config import multianimal_config, write_config
    from napari_posekit.core.multianimal import MultiAnimalLabels, write_multianimal_labels
    from napari_posekit.core.video import write_video

    root = tmp_path_factory.mktemp("ma") / "flies-anna-2026-12-02"
    frames, xy = two_animals(10, seed=1)
    xy[4, 1] = np.nan
    images = []
    for i, frame in enumerate(frames):
        key = f"labeled-data/session1/img{i:03d}.png"
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(frame).save(root / key)
        images.append(key)
    config = {"Task": "flies", "scorer": "anna", "date": "Dec2", "project_path": str(root), "iteration": 0}
    config = multianimal_config(config, ANIMALS, PARTS)
    config["TrainingFraction"] = [0.9]
    write_config(root / "config.yaml", config)
    labels = MultiAnimalLabels(images, ANIMALS, PARTS, [], xy, np.zeros((len(images), 0, 2)), "anna")
    write_multianimal_labels(root, labels)
    (root / "videos").mkdir()
    video = write_video(two_animals(12, seed=5)[0], root / "videos" / "session2.mp4", fps=25)
    return root, video


def test_train_then_analyze(ma_project, capsys):
    from napari_posekit.core.multianimal import read_tracks

    root, video = ma_project
    with torch_thread_limit():
        assert main(["train", str(root), "--epochs", "2", "--batch-size", "4", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    folder = root / "posekit-models" / "iteration-0" / "fliesDec2-trainset90shuffle1"
    assert f"multi-animal model saved: {folder}" in out
    assert (folder / "multianimal.json").is_file() and (folder / "finder" / "checkpoint.pt").is_file()

    with torch_thread_limit():
        code = main(["analyze", str(root), str(video), "--device", "cpu", "--backend", "torch-eager-float32"])
    assert code == 0
    out = capsys.readouterr().out
    written = [line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("written: ")]
    assert len(written) == 1 and written[0].endswith("_el.h5")
    tracks = read_tracks(written[0])
    assert tracks.individuals == ANIMALS and tracks.bodyparts == PARTS
    assert tracks.poses.shape == (12, 2, 3, 3)
    assert main(["analyze", str(root), str(video), "--backend", "torch-eager-float32"]) == 0
    assert "kept (exists" in capsys.readouterr().out


def test_multianimal_project_with_a_single_animal_model(ma_project, tiny_trained_project, tmp_path, capsys):
    """A single-animal checkpoint in a multi-animal project's models folder is refused, naming both."""
    import shutil

    from napari_posekit.core.model_paths import latest_checkpoint

    root, video = ma_project
    copy = tmp_path / root.name
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns("posekit-models", "videos"))
    train = copy / "posekit-models" / "iteration-0" / "otherDec2-trainset95shuffle1" / "train"
    train.mkdir(parents=True)
    shutil.copy(latest_checkpoint(tiny_trained_project), train / "checkpoint.pt")
    assert main(["analyze", str(copy), str(video), "--backend", "torch-eager-float32"]) == 1
    err = capsys.readouterr().err
    assert "single-animal" in err and "multi-animal" in err and str(copy) in err


def test_single_animal_project_is_not_trained_as_multianimal(tiny_trained_project):
    from napari_posekit.core.checkpoint import CheckpointError
    from napari_posekit.core.topdown import iter_train_multianimal

    with pytest.raises(CheckpointError, match="single-animal project"):
        next(iter_train_multianimal(tiny_trained_project, epochs=1))
