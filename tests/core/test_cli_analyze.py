"""posekit analyze / label-video / filter."""

from __future__ import annotations

import pytest

from napari_posekit.cli import main
from napari_posekit.core.batch import resolve_model
from napari_posekit.core.filtering import filtered_path
from napari_posekit.core.inference import output_paths
from napari_posekit.core.labeled_video import labeled_video_path
from napari_posekit.core.predictions import read_predictions
from napari_posekit.core.synthetic import make_behaviour
from napari_posekit.core.video import read_metadata, write_video

N_FRAMES = 24


@pytest.fixture(scope="module")
def project(tiny_trained_project):
    """The shared sample project with its tiny trained model; the commands only read it."""
    return tiny_trained_project


@pytest.fixture()
def video(tmp_path):
    frames = make_behaviour(n_frames=N_FRAMES, height=96, width=128, seed=2).frames
    return write_video(frames, tmp_path / "session1.mp4", fps=25)


def test_analyze_one_video_in_process_then_keep_it(project, video, capsys):
    _, scorer = resolve_model(project)
    h5 = output_paths(video, scorer)["h5"]
    assert main(["analyze", str(project), str(video), "--device", "cpu", "--batch-size", "4"]) == 0
    out = capsys.readouterr()
    assert f"written: {h5}" in out.out and "frame" in out.err  # the progress bar
    predictions = read_predictions(h5)
    assert predictions.xy.shape == (N_FRAMES, 4, 2) and predictions.scorer == scorer

    assert main(["analyze", str(project), str(video.parent), "--device", "cpu"]) == 0  # a folder: the same video
    assert f"kept (exists, --overwrite to redo): {h5}" in capsys.readouterr().out


def test_analyze_reports_a_bad_video_and_goes_on(project, video, tmp_path, capsys):
    bogus = tmp_path / "bogus.mp4"
    bogus.write_text("not a video")
    out = tmp_path / "out"
    assert (
        main(["analyze", str(project), str(bogus), str(video), "--local", "--device", "cpu", "--output-dir", str(out)])
        == 1
    )
    captured = capsys.readouterr()
    assert "error: " in captured.err and "bogus.mp4" in captured.err
    assert len(list(out.glob("session1DLC_*.h5"))) == 1


def test_label_video_analyses_first_then_filter(project, video, capsys):
    _, scorer = resolve_model(project)
    h5 = output_paths(video, scorer)["h5"]
    assert main(["label-video", str(project), str(video), "--device", "cpu", "--trail", "3"]) == 0
    labeled = labeled_video_path(h5)
    assert h5.is_file() and labeled.name == f"session1{scorer}_labeled.mp4"
    assert f"written: {labeled}" in capsys.readouterr().out
    assert read_metadata(labeled).n_frames == N_FRAMES

    assert main(["filter", str(h5), "--method", "savgol", "--window", "5"]) == 0
    filtered = filtered_path(h5)
    assert f"written: {filtered}" in capsys.readouterr().out
    assert read_predictions(filtered).xy.shape == (N_FRAMES, 4, 2)
    assert filtered.with_suffix(".csv").is_file()

    assert main(["label-video", str(project), str(video), "--filtered", "--no-skeleton", "--pcutoff", "0"]) == 0
    assert read_metadata(labeled_video_path(filtered)).n_frames == N_FRAMES


def test_clear_errors(tmp_path, video, capsys):
    missing = tmp_path / "no-such-project"
    assert main(["analyze", str(missing), str(video)]) == 1
    err = capsys.readouterr().err
    assert f"error: cannot use the model {missing}" in err and "no such project, checkpoint or model file" in err

    assert main(["analyze", str(missing), str(tmp_path / "a.mp4"), str(tmp_path / "b.mp4")]) == 1  # the batch path
    assert "no such project, checkpoint or model file" in capsys.readouterr().err

    assert main(["label-video", str(missing), str(video)]) == 1
    assert "no such project, checkpoint or model file" in capsys.readouterr().err

    assert main(["filter", str(tmp_path / "none.h5")]) == 1
    assert "prediction file not found" in capsys.readouterr().err

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["analyze", str(missing), str(empty)]) == 1
    assert "no videos to analyse" in capsys.readouterr().err
