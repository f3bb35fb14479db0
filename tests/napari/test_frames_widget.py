"""Frames widget: k-means / uniform / this-frame extraction into a project, then labeling."""

from __future__ import annotations

from napari_posekit._napari import jobs
from napari_posekit._napari._frames_widget import FramesWidget
from napari_posekit._napari._labeling import LabelingWidget
from napari_posekit.core.project import create_project
from napari_posekit.core.video import VideoReader, write_video


def test_extract_kmeans_then_this_frame_then_label(make_napari_viewer, qtbot, tmp_path, behaviour, monkeypatch):
    errors: list[str] = []
    monkeypatch.setattr(jobs, "show_error", errors.append)
    video = write_video(behaviour.frames, tmp_path / "session1.mp4", fps=25)
    config = create_project(tmp_path, "mouse", "me", [video], ["snout", "leftear", "rightear", "tailbase"])
    project = config.parent
    viewer = make_napari_viewer()
    viewer.open(str(video), plugin="napari-posekit")
    widget = FramesWidget(viewer)
    assert widget.video_box.currentText() == "session1"

    assert widget.extract() is None  # no project yet: a clear message, nothing runs
    assert not widget.busy

    widget.project.setText(str(project))
    widget.method.setCurrentText("kmeans")
    widget.count.setValue(5)
    widget.start.setValue(50.0)
    job = widget.extract()
    assert job is not None and widget.busy and not widget.extract_button.isEnabled()
    assert widget.extract() is None  # one extraction at a time
    qtbot.waitUntil(lambda: not widget.busy, timeout=60_000)
    assert widget.extract_button.isEnabled() and job.progress_bar is None
    folder = project / "labeled-data" / "session1"
    pngs = sorted(folder.glob("img*.png"))
    assert len(pngs) == 5 and all(int(p.stem[3:]) >= 75 for p in pngs)  # from the second half only
    assert "5 frames written" in widget.status.text()
    assert any(layer.name == "session1 keypoints" for layer in viewer.layers)

    viewer.dims.current_step = (149, 0, 0)
    assert widget.add_this_frame() is not None
    qtbot.waitUntil(lambda: not widget.busy, timeout=60_000)
    assert (folder / "img149.png").exists()

    # more frames than the video has: the job's failure is a message, and the widget is ready again
    widget.method.setCurrentText("uniform")
    widget.count.setValue(1000)
    assert widget.extract() is not None
    qtbot.waitUntil(lambda: not widget.busy, timeout=60_000)
    assert widget.status.text().startswith("Frame extraction failed: ") and errors == [widget.status.text()]
    assert widget.extract_button.isEnabled()

    # the extracted frames are exactly the video's frames, ready to label
    import numpy as np
    from PIL import Image

    with VideoReader(video) as reader:
        assert np.array_equal(np.asarray(Image.open(folder / "img149.png")), reader.get(149))
    labeling = LabelingWidget(viewer)
    assert labeling.layer is not None and labeling.store.progress()[2] in (5, 6)
