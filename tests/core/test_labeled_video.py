"""Labeled videos: colours at the keypoints, cut-off, skeleton, trails, progress and stopping."""

from __future__ import annotations

import numpy as np
import pytest

from napari_posekit.core.labeled_video import (
    bodypart_colors,
    iter_labeled_video,
    labeled_video_path,
    write_labeled_video,
)
from napari_posekit.core.video import VideoReader, iter_frames, read_metadata, write_video

T, H, W = 20, 64, 80
GRAY = 128
PARTS = ["a", "b", "c"]


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    return np.full((T, H, W, 3), GRAY, np.uint8)


@pytest.fixture(scope="module")
def video(tmp_path_factory, frames):
    return write_video(frames, tmp_path_factory.mktemp("labeled") / "session1.mp4", fps=25)


@pytest.fixture
def tracks() -> tuple[np.ndarray, np.ndarray]:
    """``a`` runs right along y=16, ``b`` sits at (60, 44), ``c`` at (24, 48) is never certain enough."""
    xy = np.zeros((T, 3, 2))
    xy[:, 0] = np.stack([8 + 3 * np.arange(T), np.full(T, 16)], axis=1)
    xy[:, 1] = [60, 44]
    xy[:, 2] = [24, 48]
    likelihood = np.tile([0.99, 0.9, 0.1], (T, 1))
    return xy, likelihood


def pixel(frame: np.ndarray, x: float, y: float) -> np.ndarray:
    return frame[int(np.rint(y)), int(np.rint(x))].astype(int)


def decoded(path) -> list[np.ndarray]:
    return list(iter_frames(path))


def test_bodypart_colors():
    colors = bodypart_colors(5)
    assert colors.shape == (5, 3) and colors.dtype == np.uint8
    assert len({tuple(c) for c in colors}) == 5
    # matplotlib's "rainbow" (DeepLabCut's default) from purple to red, as matplotlib's bytes
    np.testing.assert_array_equal(bodypart_colors(3), [[127, 0, 255], [127, 255, 180], [255, 0, 0]])
    hsv = bodypart_colors(3, "hsv")
    np.testing.assert_array_equal(hsv, [[255, 0, 0], [0, 255, 0], [0, 0, 255]])
    assert bodypart_colors(0).shape == (0, 3)
    with pytest.raises(ValueError, match="colormap must be one of"):
        bodypart_colors(3, "viridis")


def test_labeled_video_path():
    h5 = "/v/m3v1mp4DLC_resnet50_openfieldOct30shuffle1_200000.h5"
    assert str(labeled_video_path(h5)) == "/v/m3v1mp4DLC_resnet50_openfieldOct30shuffle1_200000_labeled.mp4"
    assert labeled_video_path("/v/xDLC_1_filtered.h5").name == "xDLC_1_filtered_labeled.mp4"


def test_points_are_drawn_in_their_colours_and_low_likelihood_ones_not(video, tracks, tmp_path):
    xy, likelihood = tracks
    out = tmp_path / "session1_labeled.mp4"
    calls = []
    result = write_labeled_video(
        video,
        xy,
        likelihood,
        PARTS,
        out,
        dot_radius=6,
        quality=1,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert result == out and calls == [(n, T) for n in range(1, T + 1)]
    meta = read_metadata(out)
    assert (meta.n_frames, meta.width, meta.height, meta.fps) == (T, W, H, 25)
    colors = bodypart_colors(3).astype(int)
    got = decoded(out)
    assert len(got) == T
    for i, frame in enumerate(got):
        assert np.abs(pixel(frame, *xy[i, 0]) - colors[0]).max() < 40
        assert np.abs(pixel(frame, *xy[i, 1]) - colors[1]).max() < 40
        assert np.abs(pixel(frame, *xy[i, 2]) - GRAY).max() < 12  # below pcutoff: not drawn
        assert np.abs(pixel(frame, 4, 60) - GRAY).max() < 12  # away from every point
    # everything drawn when the cut-off allows it
    out_all = write_labeled_video(
        video, xy, likelihood, PARTS, tmp_path / "all.mp4", dot_radius=6, quality=1, pcutoff=0.05, stop=2
    )
    assert np.abs(pixel(decoded(out_all)[0], *xy[0, 2]) - colors[2]).max() < 40


def test_skeleton_joins_drawn_parts_only(frames, tracks, tmp_path):
    xy, likelihood = tracks
    likelihood[7, 1] = 0.2  # b is unsure in frame 7
    xy[9, 0] = np.nan  # a is missing in frame 9
    out = write_labeled_video(
        frames,
        xy,
        likelihood,
        PARTS,
        tmp_path / "skeleton.mp4",
        skeleton=[("a", "b"), ["b", "c"]],
        skeleton_color=(255, 255, 255),
        line_width=3,
        dot_radius=4,
        quality=1,
    )
    got = decoded(out)
    for i in (5, 7, 9):
        middle = (xy[i, 0] + xy[i, 1]) / 2 if i != 9 else (xy[8, 0] + xy[i, 1]) / 2
        value = pixel(got[i], *middle)
        if i == 5:
            assert (value > 215).all()
        else:
            assert np.abs(value - GRAY).max() < 12
    assert np.abs(pixel(got[5], *(xy[5, 1] + xy[5, 2]) / 2) - GRAY).max() < 12  # c is never drawn


def test_trail_follows_the_last_positions(frames, tracks, tmp_path):
    xy, likelihood = tracks
    with_trail = write_labeled_video(
        frames, xy, likelihood, PARTS, tmp_path / "trail.mp4", trail_length=6, dot_radius=4, line_width=3, quality=1
    )
    without = write_labeled_video(frames, xy, likelihood, PARTS, tmp_path / "plain.mp4", dot_radius=4, quality=1)
    behind = (47, 16)  # a passed here in frame 13; in frame 15 it is at x=53
    assert np.abs(pixel(decoded(with_trail)[15], *behind) - GRAY).max() > 25
    assert np.abs(pixel(decoded(without)[15], *behind) - GRAY).max() < 12
    assert np.abs(pixel(decoded(with_trail)[15], 20, 16) - GRAY).max() < 12  # older than the trail


def test_stopping_leaves_no_file(frames, tracks, tmp_path):
    xy, likelihood = tracks
    out = tmp_path / "out.mp4"
    gen = iter_labeled_video(frames, xy, likelihood, PARTS, out, dot_radius=4)
    assert [next(gen), next(gen), next(gen)] == [1, 2, 3]
    gen.close()
    assert list(tmp_path.iterdir()) == []

    out.write_bytes(b"an older labeled video")
    gen = iter_labeled_video(frames, xy, likelihood, PARTS, out, dot_radius=4)
    next(gen)
    del gen  # dropped without close(): stopped the same way
    assert out.read_bytes() == b"an older labeled video" and list(tmp_path.iterdir()) == [out]

    never_started = iter_labeled_video(frames, xy, likelihood, PARTS, tmp_path / "never.mp4")
    never_started.close()
    assert not (tmp_path / "never.mp4").exists()


def test_generator_returns_the_path_and_respects_start_stop(video, tracks, tmp_path):
    xy, likelihood = tracks
    out = tmp_path / "part.mp4"
    with VideoReader(video) as reader:
        gen = iter_labeled_video(reader, xy, likelihood, PARTS, out, start=5, stop=12, fps=10, dot_radius=4)
        done = []
        with pytest.raises(StopIteration) as finished:
            while True:
                done.append(next(gen))
    assert done == list(range(1, 8)) and finished.value.value == out
    meta = read_metadata(out)
    assert (meta.n_frames, meta.fps) == (7, 10)
    first = decoded(out)[0]
    assert np.abs(pixel(first, *xy[5, 0]) - bodypart_colors(3)[0]).max() < 40


def test_errors_while_decoding_reach_the_caller_and_leave_no_file(frames, tracks, tmp_path):
    class Broken:
        shape, dtype = frames.shape, frames.dtype

        def __getitem__(self, i):
            if i == 5:
                raise RuntimeError("frame 5 is unreadable")
            return frames[i]

    xy, likelihood = tracks
    with pytest.raises(RuntimeError, match="frame 5 is unreadable"):
        write_labeled_video(Broken(), xy, likelihood, PARTS, tmp_path / "broken.mp4")
    assert list(tmp_path.iterdir()) == []


def test_odd_sizes_short_predictions_and_gray_frames(tmp_path):
    gray = np.full((4, 33, 45), 90, np.uint8)
    xy = np.array([[[10.0, 10.0]]])  # predictions for the first frame only
    out = write_labeled_video(gray, xy, None, ["nose"], tmp_path / "odd.mp4", dot_radius=3, quality=1)
    got = decoded(out)
    assert len(got) == 4 and got[0].shape == (34, 46, 3)  # padded to an even size for H.264
    assert np.abs(pixel(got[0], 10, 10) - bodypart_colors(1)[0]).max() < 40
    assert np.abs(pixel(got[1], 10, 10) - 90).max() < 12


@pytest.mark.parametrize(
    "change, error, message",
    [
        ({"bodyparts": ["a", "b"]}, ValueError, "3 body parts per frame but 2 names"),
        ({"skeleton": [("a", "nose")]}, ValueError, r"skeleton body part\(s\) \['nose'\]"),
        ({"skeleton": ["ab"]}, ValueError, "pair of body parts"),
        ({"start": 20}, ValueError, "no frames to write"),
        ({"likelihood": np.ones((T, 2))}, ValueError, "likelihood must have shape"),
        ({"dot_radius": 0}, ValueError, "dot_radius must be at least 1"),
        ({"colormap": "jet"}, ValueError, "colormap must be one of"),
        ({"skeleton_color": "white"}, ValueError, "skeleton_color must be an"),
        ({"out_path": "missing-folder/out.mp4"}, FileNotFoundError, "does not exist"),
    ],
)
def test_bad_arguments_raise_before_anything_is_written(frames, tracks, tmp_path, change, error, message):
    xy, likelihood = tracks
    args = {"video": frames, "xy": xy, "likelihood": likelihood, "bodyparts": PARTS, "out_path": tmp_path / "out.mp4"}
    args.update(change)
    if "out_path" in change:
        args["out_path"] = tmp_path / change["out_path"]
    with pytest.raises(error, match=message):
        iter_labeled_video(**args)
    assert list(tmp_path.iterdir()) == []
