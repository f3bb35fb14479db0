"""The SLEAP reader: layer data from .slp files, and those layers in a real viewer."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import require_shared
from napari_posekit._napari._sleap_reader import napari_get_reader
from napari_posekit._napari.layers import BODYPART_SYMBOLS, individual_colors


def read_layers(path):
    reader = napari_get_reader(str(path))
    assert callable(reader)
    return reader(str(path))


@pytest.fixture(scope="module")
def fly_path():
    return require_shared("sleap_fly_clip", "clip.slp")


@pytest.fixture(scope="module")
def fly_layers(fly_path):
    return read_layers(fly_path)


def test_get_reader_returns_none_for_what_it_cannot_read(tmp_path):
    assert napari_get_reader(str(tmp_path / "labels.csv")) is None
    assert napari_get_reader(str(tmp_path / "video.mp4")) is None
    assert napari_get_reader([]) is None
    with pytest.warns(UserWarning, match=r"missing\.slp: file not found"):
        assert napari_get_reader(str(tmp_path / "missing.slp")) is None
    fake = tmp_path / "fake.slp"
    fake.write_text("this is not SLEAP\n")
    with pytest.warns(UserWarning, match=r"fake\.slp: not a SLEAP labels file"):
        assert napari_get_reader(str(fake)) is None


def test_fly_layer_data(fly_layers, fly_path):
    (video, vkw, vtype), (vectors, skw, stype), (points, pkw, ptype) = fly_layers
    assert (vtype, stype, ptype) == ("image", "vectors", "points")
    assert vkw["name"] == "clip" and vkw["rgb"] and video.shape == (1500, 1024, 1024, 3)
    assert pkw["name"] == "clip.slp" and skw["name"] == "clip.slp skeleton"

    # every placed point, and nothing else
    assert points.shape == (38363, 3)  # 39000 points less 637 missing
    assert not np.isnan(points).any()
    features = pkw["features"]
    nodes = pkw["metadata"]["bodyparts"]
    assert len(nodes) == 13 and list(features["bodypart"].cat.categories) == nodes
    assert set(features["individual"]) == {"female", "male"}
    assert (features["likelihood"] == 1.0).all() and (features["kind"] == "user").all()
    assert pkw["metadata"]["source"] == str(fly_path)
    assert ["thorax", "head"] in pkw["metadata"]["skeleton"] and len(pkw["metadata"]["skeleton"]) == 12
    # colour by individual, symbol by body part; edited through the Labeling widget, saved beside the file
    male = (features["individual"] == "male").to_numpy()
    assert np.allclose(pkw["face_color"][male], individual_colors(["female", "male"])[1])
    assert {str(s) for s in pkw["symbol"][male]} == set(BODYPART_SYMBOLS[:13])
    assert not pkw["metadata"].get("readonly") and pkw["metadata"]["individuals"] == ["female", "male"]
    assert pkw["metadata"]["labels_file"] == str(fly_path.with_name("clip.edited.slp"))

    # frame 0, female head, as in the flat CSV: (x, y) = (435.25, 415.75) -> (frame, y, x)
    head = (features["bodypart"] == "head") & (features["individual"] == "female")
    assert points[head.to_numpy()][0].tolist() == [0.0, 415.75, 435.25]

    # skeleton: one line per edge whose two nodes are placed, starting on a placed point
    assert vectors.shape[1:] == (2, 3) and 30000 < len(vectors) < 36000
    assert (vectors[:, 1, 0] == 0).all()
    starts = {tuple(p) for p in points.tolist()}
    assert all(tuple(v) in starts for v in vectors[::97, 0].tolist())
    ends = vectors[:, 0] + vectors[:, 1]
    assert all(tuple(e) in starts for e in ends[::97].tolist())
    assert len(skw["edge_color"]) == len(vectors)


def test_predictions_open_with_the_video_beside(tmp_path):
    path = require_shared("sleap_centered_pair_predictions", "centered_pair_predictions.slp")
    (video, vkw, _), _, (points, pkw, _) = read_layers(path)
    assert vkw["name"] == "centered_pair_low_quality" and video.shape == (1100, 384, 384, 3)
    features = pkw["features"]
    assert len(pkw["metadata"]["bodyparts"]) == 24
    assert (features["kind"] == "predicted").all()
    assert 0 < features["likelihood"].median() < 1
    assert len(points) == 48620


def test_labels_without_their_video(tmp_path):
    import sleap_io as sio

    sk = sio.Skeleton(["a", "b"], edges=[("a", "b")])
    inst = sio.Instance.from_numpy(np.array([[1.0, 2.0], [3.0, 4.0]]), skeleton=sk)
    video = sio.Video(filename="/nowhere/lost.mp4", open_backend=False)
    path = tmp_path / "lost.slp"
    sio.save_slp(sio.Labels([sio.LabeledFrame(video=video, frame_idx=5, instances=[inst])]), str(path))
    reader = napari_get_reader(str(path))
    with pytest.warns(UserWarning, match=r"without their video: /nowhere/lost.mp4 was not found"):
        layers = reader(str(path))
    assert [t for _, _, t in layers] == ["vectors", "points"]
    (vectors, _, _), (points, pkw, _) = layers
    assert points.tolist() == [[5.0, 2.0, 1.0], [5.0, 4.0, 3.0]]
    assert vectors.tolist() == [[[5.0, 2.0, 1.0], [0.0, 2.0, 2.0]]]
    assert list(pkw["features"]["individual"]) == ["instance_0", "instance_0"]


def test_fly_clip_in_the_viewer(make_napari_viewer, fly_layers, tmp_path):
    from qtpy.QtWidgets import QApplication

    viewer = make_napari_viewer(show=True)
    for data in fly_layers:
        viewer._add_layer_from_data(*data)
    assert [layer.name for layer in viewer.layers] == ["clip", "clip.slp skeleton", "clip.slp"]
    video, skeleton, points = viewer.layers
    assert len(points.data) == 38363
    assert len(skeleton.data) == len(fly_layers[1][0])
    assert list(points.features.columns)[:3] == ["bodypart", "individual", "likelihood"]

    frame = 100
    viewer.dims.current_step = (frame, 0, 0)
    here = points.data[points.data[:, 0] == frame]
    assert len(here) > 20  # both flies
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    camera.center = tuple(here[:, 1:].mean(axis=0))
    camera.zoom = 3.0
    for _ in range(5):
        QApplication.processEvents()
    shot = viewer.screenshot(path=str(tmp_path / "sleap_reader.png"), canvas_only=True, flash=False)
    rgb = shot[..., :3].astype(int)
    assert rgb.max() > 200  # the video and the labels are drawn, not a black canvas
    # the female's skeleton is orange, the male's sky blue: both are on screen
    orange = (rgb[..., 0] > 190) & (rgb[..., 1] > 110) & (rgb[..., 1] < 200) & (rgb[..., 2] < 80)
    blue = (rgb[..., 0] < 130) & (rgb[..., 1] > 140) & (rgb[..., 2] > 190)
    assert orange.sum() > 50 and blue.sum() > 50
    # the head and thorax points sit on the bright flies, not on the dark floor
    frame_img = np.asarray(video.data[frame]).mean(axis=-1)
    body = points.features["bodypart"].isin(["head", "thorax"]).to_numpy() & (points.data[:, 0] == frame)
    y, x = points.data[body, 1].round().astype(int), points.data[body, 2].round().astype(int)
    assert len(y) == 4 and (frame_img[y, x] > np.median(frame_img) + 60).all()
