"""Frames widget: k-means / uniform / this-frame extraction into a project, then labeling."""

from __future__ import annotations

from napari_posekit._napari._frames_widget import FramesWidget
from napari_posekit._napari._labeling import LabelingWidget
from napari_posekit.core.project import create_project
from napari_posekit.core.video import VideoReader, write_video


def test_extract_kmeans_then_this_frame_then_label(make_napari_viewer, qtbot, tmp_path, behaviour):
    video = write_video(behaviour.frames, tmp_path / "session1.mp4", fps=25)
    config = create_project(tmp_path, "mouse", "me", [video], ["snout", "leftear", "rightear", "tailbase"])
    project = config.parent
    viewer = make_napari_viewer()
    viewer.open(str(video), plugin="napari-posekit")
    widget = FramesWidget(viewer)
    assert widget.video_box.currentText() == "session1"

    widget.extract()  # no project yet: a clear message, nothing runs
    assert widget.worker is None

    widget.project.setText(str(project))
    widget.method.setCurrentText("kmeans")
    widget.count.setValue(5)
    widget.start.setValue(50.0)
    worker = widget.extract()
    with qtbot.waitSignal(worker.finished, timeout=60_000):
        pass
    folder = project / "labeled-data" / "session1"
    pngs = sorted(folder.glob("img*.png"))
    assert len(pngs) == 5 and all(int(p.stem[3:]) >= 75 for p in pngs)  # from the second half only
    assert "5 frames written" in widget.status.text()
    assert any(layer.name == "session1 keypoints" for layer in viewer.layers)

    viewer.dims.current_step = (149, 0, 0)
    worker = widget.add_this_frame()
    with qtbot.waitSignal(worker.finished, timeout=60_000):
        pass
    assert (folder / "img149.png").exists()

    # the extracted frames are exactly the video's frames, ready to label
    import numpy as np
    from PIL import Image

    with VideoReader(video) as reader:
        assert np.array_equal(np.asarray(Image.open(folder / "img149.png")), reader.get(149))
    labeling = LabelingWidget(viewer)
    assert labeling.layer is not None and labeling.store.progress()[2] in (5, 6)
