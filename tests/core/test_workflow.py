"""Project-level training and evaluation (models inside the project) and the train/evaluate CLI."""

from __future__ import annotations

import hashlib
import math
import re
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import drain, require_shared
from napari_posekit.cli import main
from napari_posekit.core.collected_data import read_collected, write_collected
from napari_posekit.core.model import UnknownBackboneError
from napari_posekit.core.options import TrainOptions
from napari_posekit.core.project import ProjectError
from napari_posekit.core.sample import write_sample_project
from napari_posekit.core.train import TrainingMemoryError, load_checkpoint
from napari_posekit.core.workflow import (
    MODELS_FOLDER,
    evaluate_project,
    find_swapped_pairs,
    infer_symmetric_pairs,
    iter_evaluate_project,
    latest_checkpoint,
    project_training_data,
    train_project,
)

pytestmark = [pytest.mark.usefixtures("torch_threads"), pytest.mark.torch_threads(2)]

FAST = {"backbone": "resnet18", "pretrained": False, "batch_size": 4, "input_size": (64, 64), "device": "cpu"}


@pytest.fixture()
def project(tmp_path):
    return write_sample_project(tmp_path, n_frames=16, height=64, width=96).parent


def _collected(project):
    path = next((project / "labeled-data").glob("*/CollectedData_*.h5"))
    return path, read_collected(path)


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_infer_symmetric_pairs():
    assert infer_symmetric_pairs(["snout", "leftear", "rightear", "tailbase"]) == [("leftear", "rightear")]
    assert infer_symmetric_pairs(["L_paw", "R_paw", "left_hip", "right_hip", "nose"]) == [
        ("L_paw", "R_paw"),
        ("left_hip", "right_hip"),
    ]
    assert infer_symmetric_pairs(["leftear", "nose"]) == []


def test_find_swapped_pairs_points_at_the_frame_labeled_the_other_way_round():
    rng = np.random.default_rng(0)
    n = 30
    angle = rng.uniform(-np.pi, np.pi, n)  # heading of each frame
    heading = np.stack([np.cos(angle), np.sin(angle)], axis=1)
    normal = np.stack([-heading[:, 1], heading[:, 0]], axis=1)
    centre = rng.uniform(50, 400, (n, 2))
    xy = np.stack(
        [
            centre + 30 * heading,
            centre + 20 * heading + 8 * normal,
            centre + 20 * heading - 8 * normal,
            centre - 40 * heading,
        ],
        axis=1,
    ) + rng.normal(0, 0.5, (n, 4, 2))
    parts = ["snout", "leftear", "rightear", "tailbase"]
    pairs = [("leftear", "rightear")]
    assert find_swapped_pairs(xy, parts, pairs) == []
    xy[7, [1, 2]] = xy[7, [2, 1]]
    assert find_swapped_pairs(xy, parts, pairs) == [(7, "leftear", "rightear", 29, 30)]
    xy[3, 2] = np.nan  # a frame without both of the pair is not judged
    xy[[5, 6], 0] = xy[[5, 6], 3] = np.nan  # nor one without any other part
    assert find_swapped_pairs(xy, parts, pairs) == [(7, "leftear", "rightear", 26, 27)]
    assert find_swapped_pairs(xy[:8], parts, pairs) == []  # too few frames to know the convention
    xy[:12, [1, 2]] = xy[:12, [2, 1]]  # no clear convention: nothing is flagged
    assert find_swapped_pairs(xy, parts, pairs) == []


def test_train_evaluate_and_find_the_latest_model_from_the_project(project):
    _events, checkpoint = drain(train_project(project, epochs=3, **FAST))
    assert checkpoint == latest_checkpoint(project)
    rel = checkpoint.relative_to(project).as_posix()
    assert re.fullmatch(
        rf"{MODELS_FOLDER}/iteration-0/sample[A-Z][a-z]{{2}}\d+-trainset95shuffle1/train/checkpoint\.pt", rel
    )
    _, _, meta = load_checkpoint(checkpoint)
    assert meta["epoch"] == 3 and meta["train_config"]["symmetric_pairs"] == [["leftear", "rightear"]]
    assert len(meta["split"]["train"]) == 15 and len(meta["split"]["test"]) == 1

    evaluation = evaluate_project(project)
    assert evaluation.checkpoint == checkpoint
    summary = evaluation.summary
    assert list(summary["split"]) == ["train", "test"] and list(summary["images"]) == [15, 1]
    for column in ["mean_error_px", "mean_error_px_pcutoff", "pck@2px", "pck@5px", "pck@10px", "snout_error_px"]:
        assert column in summary
    assert math.isfinite(evaluation.error("train")) and math.isfinite(evaluation.error("test"))
    # mean over keypoints equals the mean of the per-image table's errors
    errors = evaluation.per_image[[f"{bp}_error_px" for bp in ["snout", "leftear", "rightear", "tailbase"]]]
    train_rows = evaluation.per_image["split"] == "train"
    assert evaluation.error("train") == pytest.approx(np.nanmean(errors[train_rows].to_numpy()))
    assert len(evaluation.per_image) == 16 and len(evaluation.worst_test) == 1
    written = {p.name for p in evaluation.files}
    assert written == {"evaluation-results.csv", "per-image-errors.csv"}
    table = pd.read_csv(evaluation.files[0])
    assert table["mean_error_px"].tolist() == pytest.approx(summary["mean_error_px"].tolist())


def test_a_new_run_keeps_the_previous_checkpoint_and_resume_continues(project):
    _, first = drain(train_project(project, epochs=1, **FAST))
    first_digest = _digest(first)
    _, second = drain(train_project(project, epochs=1, **FAST))
    kept = sorted(first.parent.glob("checkpoint-*.pt"))
    assert second == first and len(kept) == 1 and _digest(kept[0]) == first_digest
    events, resumed = drain(train_project(project, epochs=3, resume=True, **FAST))
    assert next(e["epoch"] for e in events if "event" not in e) == 2
    assert load_checkpoint(resumed)[2]["epoch"] == 3


def test_fine_tuning_from_the_latest_model_is_a_new_run_that_keeps_the_old_checkpoint(project):
    _, first = drain(train_project(project, epochs=1, eval_every=0, **FAST))
    first_digest = _digest(first)
    events, tuned = drain(train_project(project, epochs=1, init_from=True, eval_every=0, **FAST))
    assert tuned == first == latest_checkpoint(project)
    kept = sorted(first.parent.glob("checkpoint-*.pt"))
    assert len(kept) == 1 and _digest(kept[0]) == first_digest  # the model it started from is kept
    meta = load_checkpoint(tuned)[2]
    assert next(e["epoch"] for e in events if "event" not in e) == 1 and meta["epoch"] == 1
    assert meta["train_config"]["init_weights"] == str(kept[0])
    with pytest.raises(ValueError, match="not both"):
        next(train_project(project, epochs=1, init_from=True, resume=True, **FAST))


def _add_labeled_copies(project, n):
    """Label ``n`` more images (copies of labeled ones) whose names sort first, shifting every position."""
    path, df = _collected(project)
    added = df.iloc[:n].copy()
    names = []
    for i, key in enumerate(added.index):
        name = f"img0000{i}a.png"
        shutil.copy(project / "/".join(key), project / key[0] / key[1] / name)
        names.append((key[0], key[1], name))
    added.index = pd.MultiIndex.from_tuples(names)
    write_collected(pd.concat([added, df]), path)
    return {f"{k[1]}/{k[2]}" for k in names}


def test_splits_are_kept_by_image_name_and_fine_tuning_keeps_the_held_out_images(project):
    _, first = drain(train_project(project, epochs=1, eval_every=0, train_fraction=0.75, **FAST))
    split = load_checkpoint(first)[2]["split"]
    assert len(split["test_images"]) == len(split["test"]) >= 2
    before = evaluate_project(project, first, write=False)
    added = _add_labeled_copies(project, 3)

    # the old model is evaluated on the same held-out images, although every position moved
    after_adding = evaluate_project(project, first, write=False)
    held_out = after_adding.per_image[after_adding.per_image["split"] == "test"]
    assert sorted(held_out["image"].map(lambda s: "/".join(s.split("/")[-2:]))) == sorted(split["test_images"])
    assert after_adding.error("test") == pytest.approx(before.error("test"))
    assert (after_adding.per_image["split"] == "unused").sum() == 3

    # fine-tuning holds out the same images; the new ones train
    _, tuned = drain(train_project(project, epochs=1, init_from=True, eval_every=0, **FAST))
    tuned_split = load_checkpoint(tuned)[2]["split"]
    assert sorted(tuned_split["test_images"]) == sorted(split["test_images"])
    assert added <= set(tuned_split["train_images"])
    assert len(tuned_split["train_images"]) == len(split["train_images"]) + 3


def test_project_problems_are_clear_errors_and_write_nothing(project, monkeypatch):
    path, df = _collected(project)
    models = project / MODELS_FOLDER

    # a body part never labeled
    broken = df.copy()
    broken.loc[:, broken.columns.get_level_values("bodyparts") == "tailbase"] = np.nan
    write_collected(broken, path.parent)
    with pytest.raises(ProjectError, match="tailbase never labeled"):
        drain(train_project(project, epochs=1, **FAST))

    # no labeled frames at all
    write_collected(df * np.nan, path.parent)
    with pytest.raises(ProjectError, match="no labeled frames"):
        drain(train_project(project, epochs=1, **FAST))

    # infinite coordinates
    broken = df.copy()
    broken.iloc[2, 0] = np.inf
    write_collected(broken, path.parent)
    with pytest.raises(ProjectError, match="infinite"):
        drain(train_project(project, epochs=1, **FAST))

    # images of mixed sizes in one folder train as they are (DeepLabCut's projects have them)
    write_collected(df, path.parent)
    image = next(path.parent.glob("*.png"))
    original = image.read_bytes()
    Image.new("RGB", (50, 40)).save(image)
    assert image in project_training_data(project).images
    image.write_bytes(original)

    # a labeled image missing on disk
    image.rename(image.with_suffix(".bak"))
    with pytest.raises(ProjectError, match="missing on disk"):
        drain(train_project(project, epochs=1, **FAST))
    image.with_suffix(".bak").rename(image)

    # unknown backbone
    with pytest.raises(UnknownBackboneError, match="resnet19"):
        drain(train_project(project, epochs=1, **{**FAST, "backbone": "resnet19"}))
    assert not models.exists()

    # labels outside the image: a warning, and those keypoints are left out
    broken = df.copy()
    broken.iloc[3, 0] = 500.0
    write_collected(broken, path.parent)
    data = project_training_data(project)
    assert len(data.warnings) == 1 and "outside the 96x64 image" in data.warnings[0]
    assert np.isnan(data.xy[3, 0]).all() and not np.isnan(data.xy[3, 1]).any()
    events, checkpoint = drain(train_project(project, epochs=1, **FAST))
    assert events[0] == {"event": "warning", "message": data.warnings[0]}
    before = _digest(checkpoint)

    # not enough memory for the batch: clear error, the earlier checkpoint is untouched
    def out_of_memory(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr("napari_posekit.core.train.pose_loss", out_of_memory)
    with pytest.raises(TrainingMemoryError, match="batch size 4"):
        drain(train_project(project, epochs=1, **FAST))
    assert _digest(checkpoint) == before and not list(checkpoint.parent.glob("checkpoint-*.pt"))


def test_evaluate_without_a_model_is_a_clear_error(project):
    with pytest.raises(ProjectError, match="no trained model"):
        evaluate_project(project)


def test_cli_train_and_evaluate(project, capsys):
    code = main(
        [
            "train",
            str(project / "config.yaml"),
            "--backbone",
            "resnet18",
            "--no-pretrained",
            "--epochs",
            "2",
            "--batch-size",
            "4",
            "--crop",
            "64",
            "--split",
            "block",
            "--device",
            "cpu",
        ]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "model saved:" in out.out and "test" in out.out and "mean error" in out.out
    assert "-block/train/checkpoint.pt" in out.out
    code = main(["evaluate", str(project), "--pcutoff", "0.1"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "with p-cutoff 0.1" in out.out and "evaluation-results.csv" in out.out

    code = main(["train", str(project), "--backbone", "resnet19", "--epochs", "1"])
    assert code == 1 and "unknown timm backbone 'resnet19'" in capsys.readouterr().err


def test_default_pretrained_backbone_trains_with_augmentation(project):
    """The default path: packaged ImageNet EfficientNet-Lite0, augmentation on, flips with symmetric pairs."""
    events, checkpoint = drain(
        train_project(project, epochs=1, batch_size=4, input_size=(64, 64), device="cpu", eval_every=1)
    )
    model, _, meta = load_checkpoint(checkpoint)
    assert meta["model_config"]["backbone"] == "efficientnet_lite0" and meta["model_config"]["head"] == "fpn"
    assert model.stride == 4 and meta["input_scale"] == 1.0
    assert math.isfinite(events[-1]["test_error_px"])


def test_cli_trains_and_evaluates_the_real_openfield_project(tmp_path, capsys):
    """From the real DeepLabCut project with ImageNet weights offline (one short epoch)."""
    source = require_shared("dlc_openfield-Pranav-2018-10-30")
    project = tmp_path / source.name
    project.mkdir()
    shutil.copy(source / "config.yaml", project / "config.yaml")
    shutil.copytree(source / "labeled-data", project / "labeled-data")
    before = _digest(project / "config.yaml")
    code = main(["train", str(project), "--epochs", "1", "--crop", "128", "--device", "cpu"])
    out = capsys.readouterr()
    assert code == 0, out.err
    checkpoint = latest_checkpoint(project)
    assert checkpoint.parent.parent.name == "openfieldOct30-trainset95shuffle1"
    meta = load_checkpoint(checkpoint)[2]
    assert meta["epoch"] == 1 and len(meta["split"]["train"]) == 110 and len(meta["split"]["test"]) == 6
    assert meta["bodyparts"] == ["snout", "leftear", "rightear", "tailbase"]
    table = pd.read_csv(checkpoint.parent.parent / "evaluation" / "evaluation-results.csv")
    assert table["images"].tolist() == [110, 6] and table["mean_error_px"].notna().all()
    assert _digest(project / "config.yaml") == before  # training leaves the project's files alone
    # the one frame of this dataset whose ears are labeled the other way round is pointed out
    assert "labeled-data/m4s1/img0102.png: leftear and rightear look swapped: 115 of 116 images" in out.err
    assert "swapped? (trained as labeled)" in out.err and "posekit check-labels" in out.err


def test_train_project_takes_an_options_object_and_names_unknown_options(project):
    options = TrainOptions(
        backbone="resnet18", pretrained=False, batch_size=4, input_size=(64, 64), epochs=1, eval_every=0, split="block"
    )
    _, checkpoint = drain(train_project(project, options, device="cpu"))
    assert checkpoint.parent.parent.name.endswith("-trainset95shuffle1-block")
    meta = load_checkpoint(checkpoint)[2]
    assert meta["split"]["kind"] == "block" and meta["split"]["train_fraction"] == 0.95
    assert meta["train_config"]["symmetric_pairs"] == [["leftear", "rightear"]]  # inferred from the names
    with pytest.raises(TypeError, match="unknown training option 'epoch'"):
        next(train_project(project, epoch=1))


def test_evaluation_reports_progress_and_can_be_stopped(project):
    _, checkpoint = drain(train_project(project, epochs=1, eval_every=0, **FAST))
    events, evaluation = drain(iter_evaluate_project(project, checkpoint, write=False))
    assert events == [{"event": "predict", "done": done, "total": 16} for done in (0, 8, 16)]
    seen = []
    full = evaluate_project(project, checkpoint, write=False, progress=seen.append)
    assert seen == events
    pd.testing.assert_frame_equal(evaluation.summary, full.summary)
    pd.testing.assert_frame_equal(evaluation.per_image, full.per_image)

    calls = iter(range(100))
    events, stopped = drain(iter_evaluate_project(project, checkpoint, stop=lambda: next(calls) >= 1))
    assert stopped is None and [e["done"] for e in events] == [0, 8]
    assert not (checkpoint.parent.parent / "evaluation").exists()  # stopped: nothing written
