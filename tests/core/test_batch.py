"""Many videos on a Dask cluster: one task per video, skipping, failures, an existing scheduler."""

from __future__ import annotations

import numpy as np
import pytest

from napari_posekit.core import batch
from napari_posekit.core.batch import BatchError, analyze_one, analyze_videos, find_videos, resolve_model
from napari_posekit.core.inference import output_paths
from napari_posekit.core.predictions import read_predictions
from napari_posekit.core.project import ProjectError
from napari_posekit.core.sample import write_sample_project
from napari_posekit.core.synthetic import make_behaviour
from napari_posekit.core.train import CheckpointError
from napari_posekit.core.video import write_video
from napari_posekit.core.workflow import latest_checkpoint

N_FRAMES = 30


@pytest.fixture(scope="module")
def project(tiny_trained_project):
    """The shared sample project with its tiny trained model; the tests only read it."""
    return tiny_trained_project


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    frames = make_behaviour(n_frames=N_FRAMES, height=96, width=128, seed=1).frames
    return [write_video(frames, folder / "a.mp4"), write_video(frames[::-1], folder / "b.mp4")]


def test_find_videos_expands_folders_and_leaves_out_hidden_and_labeled_files(tmp_path):
    for name in ["b.mp4", "a.AVI", ".a.partial.mp4", "aDLC_x_labeled.mp4", "notes.txt"]:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub").mkdir()
    found = find_videos([tmp_path, tmp_path / "b.mp4", tmp_path / "missing.mp4"])
    assert [p.name for p in found] == ["a.AVI", "b.mp4", "missing.mp4"]
    assert all(p.is_absolute() for p in found)


def test_resolve_model_fails_early_with_the_reason(tmp_path, project):
    checkpoint, scorer = resolve_model(project)
    assert checkpoint == latest_checkpoint(project) and scorer.startswith("DLC_resnet18_sample")
    assert resolve_model(checkpoint) == (checkpoint, scorer)
    with pytest.raises(FileNotFoundError, match="no such project, checkpoint or model file"):
        resolve_model(tmp_path / "nothing")
    (tmp_path / "model.pt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="not a posekit checkpoint"):
        resolve_model(tmp_path / "model.pt")
    untrained = write_sample_project(tmp_path / "untrained", n_frames=4, height=64, width=96).parent
    with pytest.raises(ProjectError, match="no trained model yet"):
        analyze_videos(untrained, [tmp_path / "a.mp4"])
    with pytest.raises(BatchError, match="not a scheduler address"):
        batch._connect("nowhere", timeout=1)


def test_analyze_one_in_process_caches_the_model(tmp_path, project, videos, torch_threads):
    batch._PREDICTORS.clear()
    checkpoint, scorer = resolve_model(project)
    h5 = analyze_one(checkpoint, videos[0], tmp_path, device="cpu", torch_threads=1, batch_size=4)
    assert h5 == str(output_paths(videos[0], scorer, tmp_path)["h5"])
    assert analyze_one(checkpoint, videos[1], tmp_path, device="cpu", torch_threads=1) != h5
    assert len(batch._PREDICTORS) == 1
    bogus = tmp_path / "bogus.mp4"
    bogus.write_text("not a video")
    with pytest.raises(batch.VideoFailed, match="bogus.mp4"):
        analyze_one(checkpoint, bogus, tmp_path, device="cpu", torch_threads=1)


def test_analyze_videos_on_a_local_cluster(tmp_path, project, videos):
    bogus = tmp_path / "bogus.mp4"
    bogus.write_text("this is text, not a video")
    missing = tmp_path / "missing.mp4"
    out = tmp_path / "out"
    seen = []
    result = analyze_videos(
        project,
        [*videos, bogus, missing],
        output_dir=out,
        n_workers=2,
        batch_size=4,
        device="cpu",
        on_result=lambda video, status, value: seen.append((video.name, status)),
    )
    assert sorted(seen) == [("a.mp4", "done"), ("b.mp4", "done"), ("bogus.mp4", "failed"), ("missing.mp4", "failed")]
    assert set(result.done) == set(videos) and not result.skipped and not result.ok
    assert "no such video file" in result.failed[missing]
    assert "bogus.mp4" in result.failed[bogus]
    for video, h5 in result.done.items():
        assert h5 == output_paths(video, result.scorer, out)["h5"]
        predictions = read_predictions(h5)
        assert predictions.xy.shape == (N_FRAMES, 4, 2) and predictions.likelihood.shape == (N_FRAMES, 4)
        assert np.isfinite(predictions.xy).all()
        assert predictions.scorer == result.scorer and predictions.metadata["n_frames"] == N_FRAMES

    again = analyze_videos(project, videos, output_dir=out)  # nothing to do: no cluster is started
    assert again.skipped == result.done and not again.done and again.ok


def test_analyze_videos_on_an_existing_scheduler_leaves_it_running(tmp_path, project, videos, torch_threads):
    from distributed import Client, LocalCluster

    with LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, protocol="tcp://", dashboard_address=None, silence_logs=40
    ) as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tcp://")
        result = analyze_videos(
            project, videos[:1], output_dir=tmp_path, scheduler=address, device="cpu", torch_threads=1
        )
        assert list(result.done) == videos[:1] and result.ok
        assert read_predictions(result.done[videos[0]]).n_frames == N_FRAMES
        with Client(address) as client:  # still there
            assert client.submit(sum, [1, 2]).result() == 3
            assert len(client.scheduler_info()["workers"]) == 1
