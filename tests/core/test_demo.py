"""The demo pipeline (napari-free): a tiny run end to end, output-folder checks, the CLI's refusal."""

from __future__ import annotations

import io
import json
import math
import os

import numpy as np
import pandas as pd
import pytest

from conftest import TINY_DEMO
from napari_posekit.cli import main
from napari_posekit.core.collected_data import read_collected
from napari_posekit.core.config import read_config
from napari_posekit.core.demo_pipeline import (
    MARKER,
    DemoError,
    DemoOptions,
    TextProgress,
    check_output_dir,
    format_result,
    run_pipeline,
)
from napari_posekit.core.predictions import read_predictions
from napari_posekit.core.video import read_metadata

TINY = DemoOptions(**TINY_DEMO)


pytestmark = pytest.mark.usefixtures("torch_threads")


def test_pipeline_makes_a_deeplabcut_project_predictions_and_a_labeled_video(tmp_path):
    out = tmp_path / "demo"
    steps, lines = [], []
    result = run_pipeline(
        out, TINY, progress=lambda step, fraction, *a, **k: steps.append((step, fraction)), log=lines.append
    )

    # the project, in DeepLabCut's layout
    project = result.project
    assert project.parent == out / "project" and (project / "config.yaml").is_file()
    config = read_config(project)
    assert list(config.bodyparts) == ["snout", "leftear", "rightear", "tailbase"] and config["skeleton"]
    assert result.video == project / "videos" / result.video.name and result.video.is_file()
    h5, csv = result.collected
    assert h5.name == "CollectedData_posekit.h5" and csv.name == "CollectedData_posekit.csv" and csv.is_file()
    assert h5.parent == project / "labeled-data" / result.video.stem
    labels = read_collected(h5)
    assert len(labels) == TINY.n_labeled == len(result.labeled_frames)
    for key in labels.index:  # ("labeled-data", <video>, "img07.png") and the image is there
        assert key[0] == "labeled-data" and (project / "/".join(key)).is_file()
    truth = read_predictions(result.groundtruth_csv)
    np.testing.assert_allclose(labels.to_numpy().reshape(-1, 4, 2), truth.xy[result.labeled_frames])
    assert result.checkpoint.is_file() and "posekit-models" in result.checkpoint.parts
    assert all(path.is_file() for path in result.evaluation_files)

    # predictions for every frame, readable, in DeepLabCut's layout, and the labeled video
    predictions = read_predictions(result.predictions)
    assert predictions.xy.shape == (TINY.n_frames, 4, 2)
    assert result.predictions.parent == project / "videos" and result.predictions_csv.is_file()
    columns = pd.read_hdf(result.predictions).columns
    assert list(columns.names) == ["scorer", "bodyparts", "coords"]
    assert read_metadata(result.labeled_video).n_frames == TINY.n_frames

    # the error against the ground truth, and what the person is told
    assert math.isfinite(result.mean_error_px) and result.mean_error_px >= 0
    assert set(result.bodypart_error_px) == set(config.bodyparts)
    summary = json.loads(result.summary.read_text())
    assert summary["mean_error_px"] == pytest.approx(result.mean_error_px)
    assert {"project", "training", "analysis", "labeled_video", "total"} <= set(summary["timings"])
    text = format_result(result)
    for path in (result.config, result.predictions, result.labeled_video, result.checkpoint):
        assert str(path) in text
    assert {s for s, _ in steps} == {"k-means", "training", "analysis", "video"}
    assert any("project:" in line for line in lines)

    # a rerun starts the project afresh and reuses the sample (same content, same name)
    (project / "stale.txt").write_text("from the first run")
    video_mtime = result.groundtruth_csv.stat().st_mtime_ns
    again = run_pipeline(out, TINY)
    assert not (again.project / "stale.txt").exists()
    assert again.groundtruth_csv.stat().st_mtime_ns == video_mtime
    assert math.isfinite(again.mean_error_px)


def test_output_folder_that_is_a_file_or_under_a_file_is_refused(tmp_path):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(DemoError, match="is a file"):
        check_output_dir(a_file)
    with pytest.raises(DemoError, match="is a file"):
        run_pipeline(a_file / "demo", TINY)
    assert a_file.read_text() == "x"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(DemoError, match="cannot write"):
            check_output_dir(locked / "demo")
    finally:
        locked.chmod(0o700)


def test_folder_with_a_project_the_demo_did_not_make_is_left_alone(tmp_path):
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "mine.txt").write_text("keep")
    with pytest.raises(DemoError, match="did not make"):
        check_output_dir(tmp_path)
    assert (tmp_path / "project" / "mine.txt").read_text() == "keep"
    (tmp_path / MARKER).write_text("")  # a folder the demo made: its project may be replaced
    assert check_output_dir(tmp_path) == tmp_path


def test_cli_refuses_an_unwritable_output_folder_before_any_work(tmp_path, capsys, monkeypatch):
    import napari_posekit.demo

    def must_not_run(**kwargs):
        raise AssertionError("the demo started")

    monkeypatch.setattr(napari_posekit.demo, "run_demo", must_not_run)
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    assert main(["demo", "--screenshot", "--output-dir", str(a_file)]) == 1
    assert "is a file" in capsys.readouterr().err
    assert main(["demo", "--screenshot", "--output-dir", str(a_file / "sub")]) == 1
    assert "is a file" in capsys.readouterr().err
    monkeypatch.setenv("POSEKIT_OUTPUT_DIR", str(a_file))
    assert main(["demo", "--screenshot"]) == 1
    assert str(a_file) in capsys.readouterr().err
    assert main(["demo", "--minutes", "0", "--output-dir", str(tmp_path / "ok")]) == 2
    assert not (tmp_path / "ok").exists()


def test_text_progress_prints_eta_lines_without_a_terminal():
    stream = io.StringIO()
    bar = TextProgress(stream)
    for i in range(11):
        bar("training", i / 10, note="epoch 1")
    bar("video", 1.0)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("training") and "ETA" in lines[0] and "epoch 1" in lines[0]
    assert lines[-2].startswith("training") and "100%" in lines[-2]
    assert lines[-1].startswith("video")
