"""The 3D widget in a real viewer: tiled views, reprojections, flags, the 3D canvas on the time slider, the labeling aid."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import require_shared
from napari_posekit._napari._threed_widget import ThreeDWidget
from napari_posekit._napari.label_session import session_for
from napari_posekit._napari.layers import Key, keypoints_layer_data
from napari_posekit._napari.threed_layers import BAD
from napari_posekit.core.cameras import Camera, Rig, rotation_vector, write_calibration
from napari_posekit.core.predictions import write_predictions
from napari_posekit.core.video_write import write_video
from napari_posekit.core.views import Points3D, read_points3d, write_points3d

BODYPARTS = ["nose", "ear", "tail"]
N_FRAMES = 6
BAD_CELL = (1, 2, 1)  # camera mid, frame 2, ear: its prediction is 40 px off


def look_at(name, center, *, size=(160, 120), f=150.0, k1=-0.15) -> Camera:
    center = np.asarray(center, float)
    z = -center / np.linalg.norm(center)
    x = np.cross([0.0, 0.0, 1.0], z)
    x /= np.linalg.norm(x)
    r = np.stack([x, np.cross(z, x), z])
    matrix = [[f, 0, (size[0] - 1) / 2], [0, f, (size[1] - 1) / 2], [0, 0, 1]]
    return Camera(name, size, matrix, [k1, 0, 0, 0, 0], rotation_vector(r), -r @ center)


def rig() -> Rig:
    return Rig([look_at("back", (0, -400, 60)), look_at("mid", (400, 0, 80)), look_at("top", (-250, 250, 350))])


def truth(n: int = N_FRAMES) -> np.ndarray:
    base = np.array([[0.0, 0.0, 0.0], [30.0, 10.0, 20.0], [-40.0, 20.0, -10.0]])
    return base[None] + np.arange(n)[:, None, None] * np.array([3.0, 0.0, 0.0])


@pytest.fixture
def session(tmp_path):
    """Calibration, tiny videos, DeepLabCut predictions (one planted error) and the true 3D points."""
    cams = rig()
    write_calibration(tmp_path / "calibration.toml", cams)
    px = cams.project(truth())
    px[BAD_CELL] += (40.0, 0.0)
    for c, cam in enumerate(cams.names):
        w, h = cams.cameras[c].size
        frames = [np.full((h, w, 3), 30 + 40 * c + 5 * i, np.uint8) for i in range(N_FRAMES)]
        write_video(frames, tmp_path / f"s_{cam}.mp4", fps=10)
        write_predictions(tmp_path / f"s_{cam}DLC_net.h5", px[c], np.ones((N_FRAMES, 3)), BODYPARTS, "DLC", csv=False)
    write_points3d(tmp_path / "points3d.h5", Points3D(BODYPARTS, np.arange(N_FRAMES), truth()))
    return tmp_path


def open_widget(viewer, calibration, qtbot=None) -> ThreeDWidget:
    """The widget with a session opened: in a worker thread with ``qtbot``, else inline.

    A widget that is not docked is not closed with the viewer: the tests close its canvas.
    """
    widget = ThreeDWidget(viewer)
    widget.jobs.synchronous = qtbot is None
    widget.set_calibration(calibration)
    widget.open_scene()
    if qtbot is not None:
        qtbot.waitUntil(lambda: not widget.jobs.busy, timeout=60_000)
    return widget


def test_views_tiled_with_reprojections_and_flagged_points(make_napari_viewer, session, qtbot):
    viewer = make_napari_viewer()
    widget = open_widget(viewer, session / "calibration.toml", qtbot)  # read in a worker thread
    assert widget.scene is not None, widget.status.text()
    for cam in ("back", "mid", "top"):
        assert {f"{cam} video", f"{cam} predictions", f"{cam} reprojections", f"{cam} residuals"} <= {
            layer.name for layer in viewer.layers
        }
    offsets = {tuple(viewer.layers[f"{cam} video"].translate) for cam in ("back", "mid", "top")}
    assert len(offsets) == 3
    assert tuple(viewer.layers["mid predictions"].translate) == tuple(viewer.layers["mid video"].translate)
    # the true 3D points land on every prediction but the planted one
    for c, cam in enumerate(("back", "mid", "top")):
        pred, reproj = viewer.layers[f"{cam} predictions"], viewer.layers[f"{cam} reprojections"]
        assert pred.data.shape == reproj.data.shape == (N_FRAMES * 3, 3)
        far = np.linalg.norm(pred.data - reproj.data, axis=1) > 1e-3
        bad = reproj.features["high_error"].to_numpy()
        assert np.array_equal(far, bad)
        assert bad.sum() == (1 if cam == "mid" else 0)
        if cam == "mid":
            row = np.flatnonzero(bad)[0]
            assert reproj.data[row, 0] == 2 and reproj.features["bodypart"][row] == "ear"
            np.testing.assert_allclose(reproj.face_color[row], BAD)
            assert reproj.size[row] > np.median(reproj.size)
    assert widget.summary.text().startswith("1 of 18 3D points above 10 px")
    assert "mid 1" in widget.summary.text()
    widget.threshold.setValue(20.0)  # 40 px in one camera of three: 13.3 px on average
    assert widget.summary.text().startswith("0 of 18 3D points above 20 px")
    assert viewer.layers["mid reprojections"].features["high_error"].sum() == 1  # 40 px > 20 px
    widget.residuals.setChecked(True)
    assert viewer.layers["mid residuals"].visible and len(viewer.layers["mid residuals"].data) == N_FRAMES * 3
    widget.close_canvas()


def test_3d_canvas_follows_the_time_slider_and_triangulates(make_napari_viewer, session):
    viewer = make_napari_viewer()
    widget = open_widget(viewer, session / "calibration.toml")
    model = widget.model3d
    assert model.dims.ndisplay == 3 and model.dims.ndim == 4
    points = model.layers["3D points"]
    assert points.data.shape == (N_FRAMES * 3, 4)
    np.testing.assert_allclose(points.data[:3, 1:], truth()[0, :, ::-1])  # (z, y, x) of frame 0
    assert points.features["high_error"].sum() == 1
    assert "3D skeleton" not in model.layers  # DeepLabCut prediction files carry no skeleton
    assert len(model.layers["cameras"].data) == 3
    viewer.dims.set_current_step(0, 4)
    assert model.dims.current_step[0] == 4
    viewer.dims.set_current_step(0, 1)
    assert model.dims.current_step[0] == 1
    # triangulating leaves the planted prediction out: the 3D point is right, mid's prediction stays flagged
    widget.triangulate()
    assert widget.triangulation is not None, widget.status.text()
    np.testing.assert_allclose(widget.scene.points3d, truth(), atol=1e-4)
    assert widget.model3d.layers["3D points"] is points  # updated in place: the view stays as the user turned it
    assert not points.features["high_error"].any()
    assert viewer.layers["mid reprojections"].features["high_error"].sum() == 1
    viewer.dims.set_current_step(0, 3)
    assert widget.model3d.dims.current_step[0] == 3  # still following after the scene was rebuilt
    out = widget.save_points3d(session / "tri.h5")
    assert out is not None
    saved = read_points3d(session / "tri.h5")
    np.testing.assert_allclose(saved.points, truth(), atol=1e-4)
    assert saved.error is not None and np.nanmax(saved.error) < 1e-2
    widget.close_canvas()


# --------------------------------------------------------------------------- the labeling aid
def view_layer(viewer, project, cam, xy):
    folder = project / "labeled-data" / f"s_{cam}"
    folder.mkdir(parents=True, exist_ok=True)
    data, kwargs, _ = keypoints_layer_data(xy, BODYPARTS, name=f"CollectedData s_{cam}")
    kwargs["metadata"].update({Key.CONFIG: str(project / "config.yaml"), Key.FOLDER: str(folder)})
    return viewer.add_points(data, **kwargs)


def test_labeling_aid_draws_curves_and_proposes_through_the_label_session(make_napari_viewer, tmp_path):
    cams = rig()
    write_calibration(tmp_path / "calibration.toml", cams)
    px = cams.project(truth(2))  # (C, 2 frames, J, 2)
    px[2, 1, 1] = np.nan  # top misses the ear on frame 1: back and mid have it
    px[1, 1, 2] = px[2, 1, 2] = np.nan  # the tail only in back on frame 1: curves, no proposal
    viewer = make_napari_viewer()
    layers = {cam: view_layer(viewer, tmp_path, cam, px[c]) for c, cam in enumerate(cams.names)}
    widget = ThreeDWidget(viewer)
    viewer.dims.set_current_step(0, 1)
    assert "views back, mid, top" in widget.aid_status.text() and "1 to propose" in widget.aid_status.text()
    projections, curves = viewer.layers["top projections"], viewer.layers["top epipolar"]
    assert np.all(projections.data[:, 0] == 1)
    truth_top = cams.cameras[2].project(truth(2)[1, 1])
    assert np.min(np.linalg.norm(projections.data[:, 1:] - truth_top[::-1], axis=1)) < 1e-3
    drawn = set(map(tuple, curves.features[["source", "bodypart"]].to_numpy()))
    assert drawn == {("back", "ear"), ("mid", "ear"), ("back", "tail")}  # what top misses, from where it is
    assert len(curves.data) > 50 and np.all(curves.data[:, 0, 0] == 1) and np.all(curves.data[:, 1, 0] == 0)
    # proposals: one edit in top's session, undoable
    top = session_for(layers["top"], viewer)
    before = top.store.unsaved_edits
    assert widget.propose_labels() == 1
    assert top.store.unsaved_edits == before + 1
    np.testing.assert_allclose(top.store.xy[1, 1], truth_top, atol=1e-3)
    assert (1, 1) in top.machine
    ear = (layers["top"].features["bodypart"] == "ear").to_numpy() & (layers["top"].data[:, 0] == 1)
    np.testing.assert_allclose(layers["top"].data[ear][0, 1:], truth_top[::-1], atol=1e-3)
    assert "0 to propose" in widget.aid_status.text()
    top.undo()
    assert np.isnan(top.store.xy[1, 1]).all()
    assert "1 to propose" in widget.aid_status.text()
    viewer.dims.set_current_step(0, 0)
    assert np.all(viewer.layers["top projections"].data[:, 0] == 0)
    image = viewer.add_image(np.zeros((2, 120, 160)), metadata={Key.FOLDER: layers["mid"].metadata[Key.FOLDER]})
    widget.tile_aid_views()  # side by side: the drawings follow their view
    corners = {cam: tuple(layer.translate) for cam, layer in layers.items()}
    assert len(set(corners.values())) == 3 and tuple(image.translate) == corners["mid"]
    assert tuple(viewer.layers["mid projections"].translate) == corners["mid"]
    widget.aid_shown.setChecked(False)
    assert "top epipolar" not in viewer.layers


def test_labeling_aid_says_what_it_needs(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    widget = ThreeDWidget(viewer)
    assert "calibration.toml" in widget.aid_status.text() and not widget.propose_button.isEnabled()
    write_calibration(tmp_path / "calibration.toml", rig())
    view_layer(viewer, tmp_path, "back", np.zeros((1, 3, 2)))
    assert "1 view of back, mid, top open" in widget.aid_status.text()
    _dock, docked = viewer.window.add_plugin_dock_widget("napari-posekit", "3D")  # the manifest's entry
    assert isinstance(docked, ThreeDWidget) and "1 view of back" in docked.aid_status.text()


# --------------------------------------------------------------------------- the real session
def test_minimal_session_three_good_cameras_and_the_broken_one(make_napari_viewer):
    folder = require_shared("sleap_anipose_minimal_session")
    viewer = make_napari_viewer()
    widget = open_widget(viewer, folder / "calibration.toml")
    assert widget.scene.cameras == ["back", "mid", "side", "top"] and len(widget.scene.videos) == 4
    widget.triangulate()
    errors = widget.scene.camera_errors()
    medians = dict(zip(widget.scene.cameras, np.nanmedian(errors, axis=(1, 2))))
    assert medians["side"] > 50 and max(medians[c] for c in ("back", "mid", "top")) < 10, medians
    flagged = {cam: viewer.layers[f"{cam} reprojections"].features["high_error"].mean() for cam in medians}
    # side is calibrated as a copy of top: most of it stands out; mid and top agree; back disagrees on a few
    # body parts (Nose, Trunk, Tail_0-2: its labels of those lie elsewhere than the other views say)
    assert flagged["side"] > 0.8 and flagged["mid"] < 0.05 and flagged["top"] < 0.05 and flagged["back"] < 0.5
    # without the side camera
    widget.use_cameras(["back", "mid", "top"])
    widget.open_scene()
    assert "side video" not in viewer.layers and widget.scene.cameras == ["back", "mid", "top"]
    widget.triangulate()
    errors = widget.scene.camera_errors()
    assert np.nanmedian(errors) < 5 and np.isfinite(widget.scene.points3d).all(-1).mean() > 0.9
    assert len(widget.model3d.layers["3D skeleton"].data) > 0  # the SLEAP files' edges
    viewer.dims.set_current_step(0, 60)
    assert widget.model3d.dims.current_step[0] == 60
    widget.close_canvas()
