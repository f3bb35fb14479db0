"""The Training widget's settings, progress and evaluation tables, without Qt."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from napari_posekit.controllers.training import (
    ImageStack,
    LossHistory,
    SettingsError,
    TrainingRun,
    TrainSettings,
    evaluation_points,
    evaluation_table,
    evaluation_target,
    evaluation_text,
    find_image,
    train_kwargs,
    worst_images,
)
from napari_posekit.core.options import TRAIN_MINUTES, TrainOptions
from napari_posekit.core.workflow import Evaluation


def test_defaults_are_the_cores():
    settings, options = TrainSettings.defaults(), TrainOptions()
    assert (settings.backbone, settings.pretrained, settings.batch_size, settings.lr, settings.split) == (
        options.backbone,
        options.pretrained,
        options.batch_size,
        options.lr,
        options.split,
    )
    assert settings.epochs == 0 and settings.minutes == TRAIN_MINUTES and settings.input_scale == 0
    kwargs = train_kwargs(settings)
    assert kwargs == {
        "backbone": options.backbone,
        "pretrained": True,
        "batch_size": options.batch_size,
        "lr": options.lr,
        "split": options.split,
        "epochs": None,
        "max_minutes": TRAIN_MINUTES,
    }


def test_train_kwargs_map_no_limit_and_default_and_take_overrides():
    settings = TrainSettings(
        backbone=" resnet18 ",
        pretrained=False,
        batch_size=4,
        lr=1e-3,
        split="block",
        epochs=3,
        minutes=0,
        input_scale=0.5,
    )
    kwargs = train_kwargs(settings, input_size=(64, 64), device="cpu")
    assert kwargs["backbone"] == "resnet18" and kwargs["epochs"] == 3 and kwargs["max_minutes"] is None
    assert kwargs["input_scale"] == 0.5 and kwargs["input_size"] == (64, 64) and kwargs["device"] == "cpu"
    assert train_kwargs(settings, epochs=None, max_minutes=1.0)["epochs"] is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"epochs": 0, "minutes": 0}, "set a number of epochs or a time budget"),
        ({"backbone": "  "}, "choose a backbone"),
        ({"split": "sideways"}, "the test split is one of random, block"),
        ({"batch_size": 8, "epochs": -2}, "epochs must be at least 1"),
    ],
)
def test_settings_no_run_can_use_are_a_message(change, message):
    values = {
        "backbone": "resnet18",
        "pretrained": True,
        "batch_size": 8,
        "lr": 1e-3,
        "split": "random",
        "epochs": 0,
        "minutes": 10.0,
        **change,
    }
    with pytest.raises(SettingsError, match=message):
        train_kwargs(TrainSettings(**values))


def test_loss_history_replaces_what_a_resumed_run_repeats():
    history = LossHistory()
    for step, loss in enumerate([1.0, 0.5, float("nan"), 0.25], start=1):
        history.add_loss(step, loss)
    history.add_test(2, 4.0)
    history.add_test(4, float("nan"))
    assert history.steps == [1, 2, 4] and history.losses == [1.0, 0.5, 0.25] and history.test_steps == [2]
    history.add_loss(3, 0.4)  # resumed from step 2
    history.add_test(2, 3.0)
    assert history.steps == [1, 2, 3] and history.test_errors == [3.0]
    history.clear()
    assert not history.steps and not history.test_steps


def test_training_run_records_progress_and_says_how_it_ended(tmp_path):
    history = LossHistory()
    run = TrainingRun(tmp_path)
    for i in range(4):
        assert run.record({"event": "warning", "message": f"label {i}"}, history) == "warning"
    assert (
        run.warnings == 4 and not run.show_warning() and run.more_warnings() == "… and 1 more warnings about the labels"
    )
    step = {"epoch": 2, "step": 5, "loss": 0.02, "progress": 0.4, "eta_s": 75.0}
    assert run.record(step, history) == "step" and history.steps == [5]
    assert (
        run.record({"event": "evaluated", "epoch": 2, "step": 5, "test_error_px": 3.456, "progress": 0.5}, history)
        == "evaluated"
    )
    assert run.fraction == 0.5 and run.epoch == 2 and history.test_errors == [3.456]
    assert run.status_text(history, "1:15") == "epoch 2 · loss 0.0200 · test 3.46 px · ETA 1:15"
    checkpoint = tmp_path / "posekit-models" / "iteration-0" / "m" / "train" / "checkpoint.pt"
    assert run.finished_text(checkpoint) == (
        "Finished after epoch 2; checkpoint: posekit-models/iteration-0/m/train/checkpoint.pt. Evaluating…"
    )
    run.stopped = True
    assert run.finished_text(Path("/elsewhere/checkpoint.pt")).startswith(
        "Stopped at epoch 2; checkpoint saved: /elsewhere/checkpoint.pt."
    )
    assert TrainingRun(tmp_path).more_warnings() is None and TrainingRun(tmp_path).fraction == 0.0


@pytest.fixture
def evaluation(tmp_path):
    summary = pd.DataFrame(
        {
            "split": ["train", "test"],
            "images": [9, 3],
            "epochs": [3, 3],
            "mean_error_px": [1.234, np.nan],
            "mean_error_px_pcutoff": [1.0, 2.0],
            "snout_error_px": [0.5, 3.0],
            "pck@5px": [0.9, 0.5],
        }
    )
    per_image = pd.DataFrame(
        {
            "image": ["labeled-data/v/img0.png", "labeled-data/v/img1.png", "labeled-data/w/img1.png"],
            "split": ["test", "test", "train"],
            "mean_error_px": [2.0, 7.5, 1.0],
            "snout_x": [10.0, 11.0, 12.0],
            "snout_y": [20.0, np.nan, 22.0],
            "snout_likelihood": [0.9, 0.1, 0.8],
            "tail_x": [30.0, 31.0, 32.0],
            "tail_y": [40.0, 41.0, 42.0],
            "tail_likelihood": [0.7, 0.6, 0.5],
        }
    )
    checkpoint = tmp_path / "posekit-models" / "iteration-0" / "mouseJan1-trainset95shuffle1" / "train" / "c.pt"
    return Evaluation(checkpoint=checkpoint, summary=summary, per_image=per_image, pcutoff=0.6, files=[])


def test_evaluation_table_text_and_worst_images(evaluation):
    table = evaluation_table(evaluation)
    assert table.headers == ["images", "error px", "p>0.6 px", "snout", "PCK@5"]
    assert table.rows == ["train", "test"]
    assert table.cells == [["9", "1.23", "1.00", "0.50", "90%"], ["3", "–", "2.00", "3.00", "50%"]]
    assert "likelihood >= 0.6" in table.tooltips[2]
    assert evaluation_text(evaluation) == "mouseJan1-trainset95shuffle1, 3 epochs: test error nan px, train 1.23 px"
    assert worst_images(evaluation) == [
        ("img1.png  7.5 px", "labeled-data/v/img1.png"),
        ("img0.png  2.0 px", "labeled-data/v/img0.png"),
    ]
    assert worst_images(evaluation, 1) == [("img1.png  7.5 px", "labeled-data/v/img1.png")]


def test_find_image_prefers_the_path_then_the_folder_then_the_name(tmp_path):
    project = tmp_path / "project"
    other = str(tmp_path / "other" / "config.yaml")
    stacks = [
        ImageStack("other project", ["labeled-data/v/img1.png"], "labeled-data/v", other),
        ImageStack("w", ["img1.png"], str(tmp_path / "w")),
        ImageStack("v", ["labeled-data\\v\\img0.png", "labeled-data/v/img1.png"], None, str(project / "config.yaml")),
    ]
    assert find_image("labeled-data/v/img1.png", stacks, project) == ("v", 1)
    assert find_image("labeled-data/w/img1.png", stacks, project) == ("w", 0)  # by folder and name
    assert find_image("labeled-data/x/img0.png", stacks, project) == ("v", 0)  # by name
    assert find_image("labeled-data/x/img9.png", stacks, project) is None
    assert find_image("labeled-data/v/img1.png", stacks[:1], None) == ("other project", 0)  # no project: all count


def test_evaluation_points_of_one_stack(evaluation):
    data, parts, likelihood, bodyparts = evaluation_points(
        evaluation.per_image, ["labeled-data/v/img1.png", "labeled-data/v/img0.png"]
    )
    assert bodyparts == ["snout", "tail"]
    assert data.tolist() == [[1, 20, 10], [1, 40, 30], [0, 41, 31]]  # img1's snout has no y: left out
    assert parts == ["snout", "tail", "tail"] and likelihood.tolist() == [0.9, 0.7, 0.6]
    data, parts, likelihood, _ = evaluation_points(evaluation.per_image, ["nothing.png"])
    assert data.shape == (0, 3) and parts == [] and len(likelihood) == 0


def test_evaluation_target(tmp_path):
    project = tmp_path / "p"
    mine = project / "posekit-models" / "c.pt"
    assert evaluation_target(tmp_path / "x.pt", mine, project) == tmp_path / "x.pt"
    assert evaluation_target(None, mine, project) == mine
    assert evaluation_target(None, tmp_path / "q" / "c.pt", project) is None  # another project's: its latest
    assert evaluation_target(None, None, project) is None
