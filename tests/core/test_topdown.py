"""The top-down multi-animal model on tiny synthetic two-animal frames."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import drain, torch_thread_limit
from napari_posekit.core.checkpoint import CheckpointError
from napari_posekit.core.topdown import (
    MultiAnimalModel,
    anchor_points,
    assign_peaks,
    choose_anchor,
    crop_at,
    crop_size_for,
    find_model_folder,
    finder_scale_for,
    iter_train_topdown,
    pose_crops,
)

PARTS = ["head", "body", "tail"]
ANIMALS = ["big", "small"]
TINY = {"batch_size": 4, "device": "cpu", "eval_every": 0}  # the packaged ImageNet weights learn fastest


def two_animals(n: int = 12, size: int = 96, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Frames with a bright long animal and a dim short one, far apart, and their ``(n, 2, 3, 2)`` keypoints."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    frames = np.zeros((n, size, size, 3), np.uint8)
    xy = np.zeros((n, 2, 3, 2))
    for f in range(n):
        img = rng.normal(20, 4, (size, size))
        left = rng.uniform(18, 34, 2)
        right = rng.uniform(size - 34, size - 18, 2)
        centres = [left, right] if f % 2 else [right, left]
        for i, (half, value) in enumerate([(10.0, 230.0), (6.0, 110.0)]):
            angle = rng.uniform(0, 2 * np.pi)
            d = np.array([np.cos(angle), np.sin(angle)])
            c = centres[i]
            xy[f, i] = [c + half * d, c, c - half * d]
            u = (xx - c[0]) * d[0] + (yy - c[1]) * d[1]
            v = -(xx - c[0]) * d[1] + (yy - c[1]) * d[0]
            inside = (u / half) ** 2 + (v / (half * 0.45)) ** 2 <= 1
            img[inside] = value
            hx, hy = np.round(xy[f, i, 0]).astype(int)
            img[max(hy - 1, 0) : hy + 2, max(hx - 1, 0) : hx + 2] = 255  # a bright head
        frames[f] = np.clip(img, 0, 255).astype(np.uint8)[..., None]
    return frames, xy


# --------------------------------------------------------------------------- data
def test_anchor_is_the_central_well_labeled_part():
    _, xy = two_animals(6)
    assert choose_anchor(xy, PARTS) == 1
    xy[:4, :, 1] = np.nan  # the body is rarely labeled: an end wins
    assert choose_anchor(xy, PARTS) in (0, 2)
    with pytest.raises(ValueError, match="no labeled body part"):
        choose_anchor(np.full((2, 2, 3, 2), np.nan))


def test_anchor_points_fall_back_to_the_centre_and_absent_animals_stay_nan():
    _, xy = two_animals(3)
    xy[0, 0, 1] = np.nan
    xy[1, 1] = np.nan
    a = anchor_points(xy, 1)
    np.testing.assert_allclose(a[0, 0], xy[0, 0, [0, 2]].mean(axis=0))
    assert np.isnan(a[1, 1]).all() and np.isfinite(a[2]).all()


def test_sizes_from_the_labels():
    _, xy = two_animals(6)
    assert crop_size_for(xy) == 64  # animals 20 pixels long, 16 pixels spare, in steps of 32
    xy_big = xy * 8  # 160 pixels long in a 768-pixel frame
    assert crop_size_for(xy_big) == 224
    assert finder_scale_for(xy_big, (768, 768)) == pytest.approx(256 / 768, abs=1 / 64)
    assert finder_scale_for(xy, (96, 96)) == 1.0


def test_crop_at_places_and_pads():
    image = np.arange(100 * 80, dtype=np.int64).reshape(100, 80)
    crop, x0, y0 = crop_at(image, (40.2, 50.7), 20)
    assert (x0, y0) == (30, 41) and crop.shape == (20, 20)
    np.testing.assert_array_equal(crop, image[41:61, 30:50])
    crop, x0, y0 = crop_at(image, (2, 98), 20)  # at the corner: zeros outside
    assert (x0, y0) == (-8, 88)
    np.testing.assert_array_equal(crop[:12, 8:], image[88:100, :12])
    assert (crop[12:] == 0).all() and (crop[:, :8] == 0).all()


def test_pose_crops_are_centred_on_each_animal():
    frames, xy = two_animals(4)
    xy[2, 1] = np.nan  # absent: no crop
    crops, points, source = pose_crops(frames, xy, 1, 32, context=8)
    assert crops.shape == (7, 48, 48, 3) and points.shape == (7, 3, 2)
    assert [tuple(s) for s in source].count((2, 1)) == 0
    # the anchor sits at the centre of every crop, and the crop shows the frame there
    np.testing.assert_allclose(points[:, 1], 24.0, atol=0.51)
    n, i = source[0]
    _, x0, y0 = crop_at(frames[n], xy[n, i, 1], 48)
    inside = frames[n, max(y0, 0) : y0 + 48, max(x0, 0) : x0 + 48]
    np.testing.assert_array_equal(
        crops[0, -y0 if y0 < 0 else 0 :, -x0 if x0 < 0 else 0 :][: inside.shape[0], : inside.shape[1]], inside
    )


def test_assign_peaks_gives_each_individual_its_best_peak():
    hm = np.zeros((1, 2, 16, 16), np.float32)
    hm[0, 0, 3, 4], hm[0, 1, 3, 4] = 0.9, 0.2  # animal at (3, 4) looks like individual 0
    hm[0, 0, 12, 10], hm[0, 1, 12, 10] = 0.3, 0.6
    cells, score, evidence = assign_peaks(hm, radius=2)
    assert cells[0].tolist() == [[3, 4], [12, 10]]
    np.testing.assert_allclose(score[0], [0.9, 0.6])
    np.testing.assert_allclose(evidence[0, 0], [0.9 / 1.1, 0.2 / 1.1], rtol=1e-5)
    # one animal only: the other individual is not found
    hm[0, :, 12, 10] = 0
    cells, score, evidence = assign_peaks(hm, radius=2)
    assert cells[0, 1].tolist() == [-1, -1] and score[0, 1] == 0 and np.isnan(evidence[0, 1]).all()


def test_bad_training_input(tmp_path):
    frames, xy = two_animals(2)
    with pytest.raises(ValueError, match="unique"):
        drain(iter_train_topdown(frames, xy, ["a", "a"], PARTS, folder=tmp_path, epochs=1))
    with pytest.raises(ValueError, match="do not fit"):
        drain(iter_train_topdown(frames, xy, ANIMALS, PARTS[:2], folder=tmp_path, epochs=1))
    with pytest.raises(ValueError, match="minutes, epochs"):
        drain(iter_train_topdown(frames, xy, ANIMALS, PARTS, folder=tmp_path))


# --------------------------------------------------------------------------- a trained model
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    frames, xy = two_animals(16)
    xy[3, 1] = np.nan  # an individual missing from a frame is normal
    folder = tmp_path_factory.mktemp("topdown") / "model"
    with torch_thread_limit():
        events, returned = drain(
            iter_train_topdown(frames, xy, ANIMALS, PARTS, folder=folder, finder_epochs=25, pose_epochs=4, **TINY)
        )
    return folder, events, returned, frames, xy


def test_model_folder(trained):
    folder, events, returned, _, _ = trained
    assert returned == folder
    assert (folder / "finder" / "checkpoint.pt").is_file() and (folder / "pose" / "checkpoint.pt").is_file()
    description = json.loads((folder / "multianimal.json").read_text())
    assert description["individuals"] == ANIMALS and description["bodyparts"] == PARTS
    assert description["anchor"] == "body" and description["crop_size"] == 64
    assert description["finder_scale"] == 1.0 and description["version"] == 1
    assert {e["stage"] for e in events} == {"finder", "pose"}
    assert events[-1]["overall"] == pytest.approx(1.0)


def test_predict_shapes_identities_and_positions(trained):
    folder, _, _, frames, xy = trained
    model = MultiAnimalModel.load(folder, backend="torch-eager-float32")
    assert model.individuals == ANIMALS and model.bodyparts == PARTS
    poses, identity = model.predict(frames[:6], batch_size=4)
    assert poses.shape == (6, 2, 3, 3) and poses.dtype == np.float32
    assert identity.shape == (6, 2) and ((identity >= 0) & (identity <= 1)).all()
    # the bright animal is "big" and the dim one "small" (they trade sides from frame to frame)
    anchors, _, _ = model.find(frames[:6])
    error = np.linalg.norm(anchors - xy[:6, :, 1], axis=-1)
    assert np.nanmedian(error) < 4.0
    swapped = np.linalg.norm(anchors[:, ::-1] - xy[:6, :, 1], axis=-1)
    assert (np.nan_to_num(error, nan=99) < np.nan_to_num(swapped, nan=99)).mean() >= 0.8


def test_single_animal_checkpoint_is_refused(trained, tiny_trained_project):
    from napari_posekit.core.model_paths import latest_checkpoint

    folder = trained[0]
    assert find_model_folder(folder / "pose" / "checkpoint.pt") == folder
    assert find_model_folder(folder / "multianimal.json") == folder
    single = latest_checkpoint(tiny_trained_project)
    with pytest.raises(CheckpointError, match="single-animal checkpoint"):
        MultiAnimalModel.load(single)
    with pytest.raises(CheckpointError, match="single-animal ones"):
        MultiAnimalModel.load(tiny_trained_project)


def test_broken_description_names_the_file(trained, tmp_path):
    import shutil

    copy = shutil.copytree(trained[0], tmp_path / "m")
    description = json.loads((copy / "multianimal.json").read_text())
    description["version"] = 99
    (copy / "multianimal.json").write_text(json.dumps(description))
    with pytest.raises(CheckpointError, match=r"multianimal\.json.*newer"):
        MultiAnimalModel.load(copy)


def test_tracking_keeps_identities_the_finder_confuses_now_and_then():
    from napari_posekit.core.topdown import track_identities

    t = 40
    frames = np.arange(t, dtype=float)
    poses = np.zeros((t, 2, 3, 3), np.float32)
    for i, (x0, vx) in enumerate([(20.0, 1.0), (120.0, -0.5)]):
        poses[:, i, :, 0] = (x0 + vx * frames)[:, None] + np.array([-5.0, 0.0, 5.0])
        poses[:, i, :, 1] = 50.0 + 10 * i
    poses[..., 2] = 0.9
    evidence = np.tile(np.array([[0.9, 0.1], [0.1, 0.9]], np.float32), (t, 1, 1))
    confused = [7, 8, 21]
    detections = poses.copy()
    detections[confused] = detections[confused][:, ::-1]  # the finder swapped them on three frames
    evidence[confused] = np.array([[0.4, 0.6], [0.6, 0.4]])
    tracked, confidence = track_identities(detections, evidence)
    assert tracked.shape == poses.shape and confidence.shape == (t, 2)
    np.testing.assert_allclose(tracked[..., :2], poses[..., :2])
    assert (confidence[confused] <= 0.6).all() and np.median(confidence) > 0.6
    # animals that look alike to the finder: motion alone, the tracker's confidence
    tracked, confidence = track_identities(poses, np.full((t, 2, 2), 0.5, np.float32))
    np.testing.assert_allclose(tracked[..., :2], poses[..., :2])


def test_analyze_frames_with_one_that_cannot_be_decoded(trained, tmp_path):
    from napari_posekit.core.multianimal import read_tracks
    from napari_posekit.core.topdown import analyze_multianimal

    folder, _, _, frames, _ = trained

    class Broken:
        shape = frames[:7].shape

        def __getitem__(self, i):
            if i == 3:
                raise OSError("corrupt frame")
            return frames[i]

    model = MultiAnimalModel.load(folder, backend="torch-eager-float32")
    # the animals jump from frame to frame: the tracker joins nothing and the finder's identities stay
    tracks = analyze_multianimal(model, Broken(), batch_size=4, write=False)
    assert tracks.poses.shape == (7, 2, 3, 3) and tracks.identity.shape == (7, 2)
    assert np.isnan(tracks.poses[3, :, :, :2]).all() and np.isfinite(tracks.poses[[0, 1, 2, 4], :, :, :2]).any()
    with pytest.raises(ValueError, match="output="):
        analyze_multianimal(model, Broken(), batch_size=4)
    written = analyze_multianimal(model, frames[:5], output=tmp_path / "t.h5", track=False)
    back = read_tracks(tmp_path / "t.h5")
    assert back.individuals == ANIMALS and back.poses.shape == (5, 2, 3, 3)
    np.testing.assert_allclose(back.poses[..., :2], written.poses[..., :2], atol=1e-3)
