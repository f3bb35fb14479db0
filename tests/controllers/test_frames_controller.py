"""The Frames widget's target project and extraction work, without Qt."""

from __future__ import annotations

from napari_posekit.controllers.frames import extraction_text, iter_select_and_extract, labeled_data_folder, stage_text
from napari_posekit.core.video import write_video


def test_labeled_data_folder(tmp_path):
    (tmp_path / "config.yaml").write_text("Task: mouse\n")
    assert labeled_data_folder(str(tmp_path)) == (tmp_path / "labeled-data", None)
    assert labeled_data_folder(str(tmp_path / "config.yaml")) == (tmp_path / "labeled-data", None)
    folder, message = labeled_data_folder(str(tmp_path / "nowhere" / "config.yaml"))
    assert (
        folder is None
        and message == f"'{tmp_path / 'nowhere'}' is not a project folder (no config.yaml); pick one first."
    )


def _drain(gen):
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as done:
            return events, done.value


def test_select_and_extract_reports_progress_over_both_stages(tmp_path, behaviour):
    video = write_video(behaviour.frames[:40], tmp_path / "clip.mp4", fps=25)
    events, result = _drain(iter_select_and_extract(video, "kmeans", 3, tmp_path / "labeled-data"))
    assert len(result.written) == 3 and result.folder == tmp_path / "labeled-data" / "clip"
    stages = [e["stage"] for e in events]
    assert stages[0] == "select" and stages[-1] == "write" and stages == sorted(stages)  # select, then write
    progress = [e["progress"] for e in events]
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert stage_text(events[0]).startswith("Reading frames… ") and stage_text(events[-1]) == "Writing frames… 100%"
    assert extraction_text(result) == f"3 frames written to {result.folder}"

    events, again = _drain(iter_select_and_extract(video, "uniform", 3, tmp_path / "labeled-data", frames=[39]))
    assert {e["stage"] for e in events} == {"write"} and [p.name for p in again.written] == ["img39.png"]
    events, uniform = _drain(iter_select_and_extract(video, "uniform", 4, tmp_path / "labeled-data", start=0.5))
    assert all(f >= 20 for f in uniform.frames)
    assert "existed already and were kept" in extraction_text(
        _drain(iter_select_and_extract(video, "uniform", 1, tmp_path / "labeled-data", frames=[39]))[1]
    )
