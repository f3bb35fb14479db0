"""The napari layer in a real viewer: reader, sample data, Video widget, manifest."""

from __future__ import annotations

import numpy as np
import pytest

from napari_posekit._napari._reader import napari_get_reader
from napari_posekit.core.video import VideoReader


def test_manifest_is_valid():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution("napari-posekit")
    manifest.validate_imports()
    ids = {c.id for c in manifest.contributions.commands}
    assert {"napari-posekit.get_video_reader", "napari-posekit.make_synthetic_mouse"} <= ids


def test_get_reader_returns_none_for_what_it_cannot_read(tmp_path):
    assert napari_get_reader(str(tmp_path / "labels.csv")) is None
    assert napari_get_reader([]) is None
    with pytest.warns(UserWarning, match="missing.mp4: file not found"):
        assert napari_get_reader(str(tmp_path / "missing.mp4")) is None
    fake = tmp_path / "fake.avi"
    fake.write_bytes(b"\x00" * 1000)
    with pytest.warns(UserWarning, match="fake.avi: cannot be opened as a video"):
        assert napari_get_reader(str(fake)) is None


def test_reader_layer_data(video_files):
    path = video_files["h264_bframes_longgop.mp4"]
    reader = napari_get_reader(str(path))
    assert callable(reader)
    [(data, kwargs, layer_type)] = reader(str(path))
    assert layer_type == "image"
    assert kwargs["rgb"] is True and kwargs["name"] == "h264_bframes_longgop"
    assert kwargs["metadata"]["video"]["n_frames"] == 150
    assert data.shape == (150, 96, 128, 3)


def test_open_video_in_viewer_shows_exact_frames(make_napari_viewer, video_files):
    path = video_files["h264_bframes_longgop.mp4"]
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(path), plugin="napari-posekit")
    assert layer.rgb and layer.name == "h264_bframes_longgop"
    assert layer.data.shape == (150, 96, 128, 3)
    with VideoReader(path) as ref:
        for frame in (0, 97, 42):
            viewer.dims.current_step = (frame, 0, 0)
            shown = np.asarray(layer._slice.image.raw)
            assert np.array_equal(shown, ref.get(frame)), frame


def test_viewer_survives_a_damaged_file(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video at all" * 10)
    with pytest.warns(UserWarning, match="broken.mp4"), pytest.raises(ValueError):
        viewer.open(str(bad), plugin="napari-posekit")  # napari: no reader could read it
    assert len(viewer.layers) == 0


def test_sample_data_opens_video_and_ground_truth(make_napari_viewer):
    viewer = make_napari_viewer()
    layers = viewer.open_sample("napari-posekit", "synthetic_mouse")
    video, truth = layers
    assert video.rgb and video.data.shape == (300, 360, 480, 3)
    assert "video" in video.metadata
    assert truth.data.shape == (300 * 4, 3)
    assert list(truth.features["bodypart"].cat.categories) == ["snout", "leftear", "rightear", "tailbase"]
    # points of frame 0 sit on the animal: the snout is on the pink nose, not on the grey floor
    viewer.dims.current_step = (0, 0, 0)
    snout = truth.data[(truth.data[:, 0] == 0) & (truth.features["bodypart"] == "snout").to_numpy()][0]
    r, g, _b = video.data[0, round(snout[1]), round(snout[2])].compute().astype(int)
    assert r > g + 30


def test_video_widget_shows_metadata_and_jumps(make_napari_viewer, video_files):
    from napari_posekit._napari._video_widget import VideoWidget

    viewer = make_napari_viewer()
    widget = VideoWidget(viewer)
    assert "No video open" in widget.title.text()
    assert not widget.goto.isEnabled()
    viewer.open(str(video_files["h264_short_gop.mkv"]), plugin="napari-posekit")
    assert widget.fields["frames"].text() == "150"
    assert widget.fields["size"].text() == "128 × 96"
    assert widget.fields["codec"].text() == "h264 (yuv420p)"
    widget.goto.setText("0:02.5")
    widget._on_goto()
    assert viewer.dims.current_step[0] == 62
    assert widget.fields["position"].text() == "frame 62 / 149 · 00:02.480"
    widget.goto.setText("99")
    widget._on_goto()
    assert viewer.dims.current_step[0] == 99
    widget.goto.setText("nonsense")
    widget._on_goto()
    assert "neither a frame number nor a time" in widget.message.text()
    assert viewer.dims.current_step[0] == 99
    # a predictions layer names its video by path under the same metadata key: not a video layer
    viewer.add_points(np.zeros((1, 3)), name="predictions", metadata={"video": str(video_files["mpeg4.avi"])})
    assert widget.fields["frames"].text() == "150"
    viewer.layers.selection.active = viewer.layers["predictions"]
    assert widget.fields["frames"].text() == "150"
    viewer.layers.clear()
    assert "No video open" in widget.title.text()


def test_widget_opens_from_the_plugin_menu(make_napari_viewer):
    viewer = make_napari_viewer()
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-posekit", "Video")
    assert widget.__class__.__name__ == "VideoWidget"


@pytest.mark.parametrize("name", ["Video", "Labeling", "Frames", "Training", "Analysis", "Refine"])
def test_widgets_from_the_plugin_menu_hold_the_viewer_itself(make_napari_viewer, name):
    # napari gives plugin widgets a proxy that wraps every layer anew on each access; the widgets
    # keep layers as keys and compare them by identity, so they must hold the viewer itself
    viewer = make_napari_viewer()
    viewer.add_points(np.zeros((1, 3)), name="p")
    _, widget = viewer.window.add_plugin_dock_widget("napari-posekit", name)
    assert widget.viewer is viewer
    assert widget.viewer.layers["p"] is widget.viewer.layers["p"]
