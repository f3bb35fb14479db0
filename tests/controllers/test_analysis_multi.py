"""The Analysis widget's multi-animal part without napari: which analysis, blocks, tracking, files, training events."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_posekit.controllers import analysis_multi as am
from napari_posekit.controllers.training import LossHistory, TrainingRun, iter_train_multi
from napari_posekit.core.config import write_config
from napari_posekit.core.multianimal import read_tracks

INDIVIDUALS = ["female", "male"]
PARTS = ["head", "thorax", "abdomen"]


def _project(folder, multi: bool):
    folder.mkdir(parents=True)
    config = {"Task": "t", "scorer": "me", "date": "Dec2", "project_path": str(folder)}
    if multi:
        config.update(multianimalproject=True, individuals=INDIVIDUALS, multianimalbodyparts=PARTS, bodyparts="MULTI!")
    else:
        config.update(bodyparts=PARTS)
    write_config(folder / "config.yaml", config)
    return folder


def _multi_model(project):
    folder = project / "posekit-models" / "iteration-0" / "tDec2-trainset95shuffle1"
    (folder / "pose").mkdir(parents=True)
    (folder / "pose" / "checkpoint.pt").write_bytes(b"")
    (folder / "multianimal.json").write_text(json.dumps({"kind": "napari-posekit-multianimal"}))
    return folder


def test_the_model_box_and_the_project_choose_the_analysis(tmp_path):
    multi = _project(tmp_path / "pair", multi=True)
    single = _project(tmp_path / "mouse", multi=False)
    (multi / "videos").mkdir()
    video = multi / "videos" / "clip.mp4"
    folder = _multi_model(multi)
    assert am.analysis_kind(multi, video) == am.MULTI
    assert am.analysis_kind(multi / "config.yaml", None) == am.MULTI
    assert am.analysis_kind(single, video) == am.SINGLE  # a project in the box decides
    assert am.analysis_kind(folder, video) == am.MULTI
    assert am.analysis_kind(folder / "pose" / "checkpoint.pt", video) == am.MULTI

    checkpoint = tmp_path / "elsewhere" / "train" / "checkpoint.pt"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"")
    with pytest.raises(am.ModelMismatch, match="single-animal model.*multi-animal project"):
        am.analysis_kind(checkpoint, video)
    with pytest.raises(am.ModelMismatch, match="single-animal model"):
        am.analysis_kind(checkpoint, None, project=multi)  # the viewer's project when the video has none
    with pytest.raises(am.ModelMismatch, match="multi-animal model but mouse is a single-animal project"):
        am.analysis_kind(folder, tmp_path / "mouse" / "video.mp4", project=single)
    assert am.analysis_kind(checkpoint, tmp_path / "loose.mp4") == am.SINGLE  # no project: as before


class _Model:
    individuals = INDIVIDUALS
    bodyparts = PARTS
    skeleton = (("head", "thorax"),)
    scorer = "DLC_test"
    folder = None
    backend = "torch-eager-float32"


def _crossing_poses(n: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Two animals walking past each other; the finder's assignment swapped on frames 10-19."""
    t = np.arange(n, dtype=np.float32)
    centres = np.stack([np.stack([20 + 3 * t, 40 + 0 * t], -1), np.stack([110 - 3 * t, 60 + 0 * t], -1)], 1)
    offsets = np.array([[10.0, 0.0], [0.0, 0.0], [-10.0, 0.0]], np.float32)
    poses = np.concatenate([centres[:, :, None] + offsets, np.full((n, 2, 3, 1), 0.9, np.float32)], -1)
    evidence = np.tile(np.array([[0.9, 0.1], [0.1, 0.9]], np.float32), (n, 1, 1))
    poses[10:20] = poses[10:20, ::-1]
    evidence[10:20] = np.array([[0.4, 0.6], [0.6, 0.4]], np.float32)
    return poses.astype(np.float32), evidence


def test_blocks_build_the_analysis_then_tracking_fixes_the_swap_and_writes(tmp_path):
    poses, evidence = _crossing_poses()
    analyses = am.MultiAnalyses()
    run = am.MultiRun("video", 0, 30, 40, video_path=tmp_path / "clip.mp4")
    analyses.receive(run, {"event": "ready", "key": ("k",), "model": _Model(), "backend": "auto"})
    for s in range(0, 30, 8):
        event = {"event": "block", "start": s, "poses": poses[s : s + 8], "evidence": evidence[s : s + 8]}
        analyses.receive(run, {**event, "done": min(s + 8, 30), "fps": 50.0})
    analysis = analyses.get("video")
    assert analysis is run.analysis and analysis.analysed.sum() == 30 and not analysis.analysed[30:].any()
    assert "30/30 frames" in run.status_text() and "2 animals" in run.status_text()

    path = am.tracks_path(analysis, "clip", None)
    assert path == tmp_path / "clipDLC_test_el.h5"
    tracks, written, note = am.TrackingPlan.of(analysis, path).run()
    assert note == "" and written[0] == path and path.is_file()
    # one track per animal: the female keeps moving right through frames 10-19
    assert np.all(np.diff(tracks.poses[:, 0, 1, 0]) > 0)
    analysis.take_tracked(tracks)
    run.written = written
    assert analysis.tracked and "Analysed and tracked 30 frames of clip (50.0 frames/s)" in run.finished_text("clip")

    # tracking again (more frames analysed later) starts from the finder's poses, which match its evidence
    assert np.allclose(am.TrackingPlan.of(analysis, None).poses, poses, equal_nan=True)
    assert not np.allclose(analysis.poses[10:20], poses[10:20])  # while the tracked ones are shown

    back = read_tracks(path)
    assert back.individuals == INDIVIDUALS and back.bodyparts == PARTS
    assert np.allclose(back.poses[..., :2], tracks.poses[..., :2])
    assert am.find_tracks_file(tmp_path / "clip.mp4") == path
    assert am.find_tracks_file(tmp_path / "other.mp4") is None
    reopened = am.read_tracks_file(path, "layer", 40)
    assert reopened.tracked and reopened.analysed.sum() == 30 and reopened.saved == path

    # a new model starts a new analysis of the video
    again = am.MultiRun("video", 0, 8, 40)
    analyses.receive(again, {"event": "ready", "key": ("other",), "model": _Model(), "backend": "auto"})
    analyses.receive(
        again, {"event": "block", "start": 0, "poses": poses[:8], "evidence": evidence[:8], "done": 8, "fps": 1.0}
    )
    assert analyses.get("video") is not analysis and analyses.get("video").analysed.sum() == 8


def test_poses_the_tracker_cannot_follow_keep_the_finders_identities(monkeypatch):
    poses, evidence = _crossing_poses()
    analysis = am.MultiAnalysis.new("v", 30, _Model(), ("k",), None)
    analysis.add(0, poses, evidence)

    def drops_all(p, e):
        return np.full_like(p, np.nan), np.zeros(p.shape[:2], np.float32)

    def refuses(p, e):
        raise ValueError("max_distance must be a positive number of pixels, got 0.0")

    for tracker, why in ((drops_all, "kept only 0 of the 60 animals found"), (refuses, "max_distance")):
        monkeypatch.setattr("napari_posekit.core.topdown.track_identities", tracker)
        tracks, written, note = am.TrackingPlan.of(analysis, None).run()
        assert written == [] and why in note and "finder's identities" in note
        assert np.allclose(tracks.poses, poses)  # nothing is lost
        assert np.allclose(tracks.identity[:10], 0.9) and np.allclose(tracks.identity[10:20], 0.4)


def test_a_folder_that_cannot_be_written_keeps_the_tracks(tmp_path):
    poses, evidence = _crossing_poses()
    analysis = am.MultiAnalysis.new("v", 30, _Model(), ("k",), None)
    analysis.add(0, poses, evidence)
    (tmp_path / "a file").write_text("")
    target = tmp_path / "a file" / "clip_el.h5"  # its folder is a file
    tracks, written, note = am.TrackingPlan.of(analysis, target).run()
    assert written == [] and "Could not write clip_el.h5" in note and "Save predictions" in note
    assert np.isfinite(tracks.poses[..., 0]).all()


def test_multi_animal_training_events_run_over_both_networks(monkeypatch, tmp_path):
    calls = {}

    def fake(project, **options):
        calls.update(options)
        for stage, lo in (("finder", 0.0), ("pose", 0.5)):
            for step in (1, 2):
                yield {"stage": stage, "step": step, "epoch": 1, "loss": 0.5 / step, "progress": step / 2,
                       "overall": lo + step / 4, "eta_s": 1.0}  # fmt: skip
        return tmp_path

    monkeypatch.setattr("napari_posekit.core.topdown.iter_train_multianimal", fake)
    gen = iter_train_multi("p", stop=None, max_minutes=2.0, epochs=None, backbone="resnet18", lr=1e-3,
                           batch_size=8, input_scale=0.5)  # fmt: skip
    events = []
    with pytest.raises(StopIteration) as done:
        while True:
            events.append(next(gen))
    assert done.value.value == tmp_path
    assert [e["step"] for e in events] == [1, 2, 3, 4]  # numbered on from the finder's
    assert [e["progress"] for e in events] == [0.25, 0.5, 0.75, 1.0]
    assert all(0 <= e["eta_s"] <= 120 for e in events)
    assert calls["minutes"] == 2.0 and calls["backbone"] == "resnet18" and "input_scale" not in calls
    assert "lr" in calls and "batch_size" not in calls  # the default batch size is the core's choice

    run, history = TrainingRun(tmp_path, multi=True), LossHistory()
    for event in events:
        run.record(event, history)
    assert history.steps == [1, 2, 3, 4] and run.status_text(history, "0:10").startswith("body parts · epoch 1")
    assert "Start trains it again" in run.finished_text(tmp_path)  # no multianimal.json: not complete
    (tmp_path / "multianimal.json").write_text("{}")
    assert "Trained the multi-animal model" in run.finished_text(tmp_path)


def test_the_reader_keeps_its_place_across_blocks(monkeypatch):
    seen = []

    def fake_predict(model, frames, *, start, stop, batch_size):
        seen.append((frames, start, stop))
        n = stop - start
        return np.arange(start, stop), np.zeros((n, 2, 3, 3), np.float32), np.zeros((n, 2, 2), np.float32)

    monkeypatch.setattr("napari_posekit.core.topdown.predict_video", fake_predict)
    monkeypatch.setattr(am, "load_multi_model", lambda *a, **k: (("k",), _Model()))
    frames = np.zeros((70, 8, 8, 3), np.uint8)
    stop_after = iter([False, False, True])
    events = list(am.iter_multi_analysis("m", None, frames, 0, 70, 4, lambda: next(stop_after), block=32))
    assert [e["event"] for e in events] == ["ready", "block", "block"]
    assert [(s, e) for _, s, e in seen] == [(0, 32), (32, 64)] and all(f is frames for f, _, _ in seen)
