"""Frame selection for labeling (uniform, k-means) and PNG extraction."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_posekit.core.frames import (
    ExtractedFrames,
    _kmeans,
    extract_frames,
    frame_image_name,
    frame_of_image,
    frame_range,
    iter_extract_frames,
    iter_select_kmeans,
    select_kmeans,
    select_uniform,
)
from napari_posekit.core.synthetic import make_behaviour
from napari_posekit.core.video import VideoOpenError, VideoReader, write_video

N_FRAMES = 120


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A 120-frame 96x128 synthetic behaviour video."""
    frames = make_behaviour(n_frames=N_FRAMES, height=96, width=128, seed=11).frames
    return write_video(frames, tmp_path_factory.mktemp("frames") / "mouse_session.mp4", fps=30)


@pytest.fixture(scope="module")
def dark_then_bright(tmp_path_factory):
    """The first half of the video is dark, the second half bright."""
    frames = make_behaviour(n_frames=N_FRAMES, height=96, width=128, seed=5).frames.astype(np.float32)
    frames[: N_FRAMES // 2] *= 0.25
    frames[N_FRAMES // 2 :] = 255 - 0.25 * (255 - frames[N_FRAMES // 2 :])
    path = tmp_path_factory.mktemp("frames") / "dark_bright.mp4"
    return write_video(frames.astype(np.uint8), path, fps=30)


def dlc_image_name(index: int, nframes: int) -> str:
    """DeepLabCut's own rule, as written in ``deeplabcut.extract_frames``."""
    indexlength = int(np.ceil(np.log10(nframes)))
    return "img" + str(index).zfill(indexlength) + ".png"


# -- ranges and uniform selection ----------------------------------------------------
def test_frame_range_follows_deeplabcut():
    assert frame_range(100) == range(100)
    assert frame_range(100, 0.1, 0.35) == range(10, 35)
    assert frame_range(10, 0.05, 0.51) == range(6)  # floor(0.5), ceil(5.1)
    assert frame_range(2330, 0.5, 0.5001) == range(1165, 1166)  # never empty
    assert frame_range(7, 0.0, 1.0) == range(7)


def test_uniform_is_evenly_spaced():
    assert select_uniform(100, 4) == [12, 37, 62, 87]
    assert select_uniform(100, 1) == [50]
    assert select_uniform(10, 10) == list(range(10))
    picks = select_uniform(2330, 20)
    gaps = np.diff(picks)
    assert len(picks) == 20 and gaps.min() >= 116 and gaps.max() <= 117


def test_uniform_stays_inside_the_range():
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(1, 5000))
        start, stop = sorted(rng.uniform(0, 1, 2))
        frames = frame_range(n, start, stop)
        k = int(rng.integers(1, len(frames) + 1))
        picks = select_uniform(n, k, start, stop)
        assert len(picks) == k
        assert picks == sorted(set(picks))
        assert frames.start <= picks[0] and picks[-1] < frames.stop
        if k > 2:  # evenly spaced: gaps differ by at most one frame
            assert np.ptp(np.diff(picks)) <= 1


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"k": 0}, ValueError, "k must be at least 1"),
        ({"k": -3}, ValueError, "k must be at least 1"),
        ({"k": 2.5}, TypeError, "k must be an integer"),
        ({"k": True}, TypeError, "k must be an integer"),
        ({"k": 5, "start": 0.5, "stop": 0.5}, ValueError, "0 <= start < stop <= 1"),
        ({"k": 5, "start": 0.6, "stop": 0.2}, ValueError, "start=0.6, stop=0.2"),
        ({"k": 5, "stop": 1.5}, ValueError, "0 <= start < stop <= 1"),
        ({"k": 5, "start": -0.1}, ValueError, "0 <= start < stop <= 1"),
        ({"k": 5, "stop": float("nan")}, ValueError, "0 <= start < stop <= 1"),
        ({"k": 101}, ValueError, "cannot pick 101 frames: the range holds only 100"),
        ({"k": 20, "start": 0.9}, ValueError, r"cannot pick 20 frames: .* only 10 .*frames 90\.\.99"),
    ],
)
def test_uniform_errors_are_clear(kwargs, error, match):
    with pytest.raises(error, match=match):
        select_uniform(100, **kwargs)


def test_uniform_rejects_an_empty_video():
    with pytest.raises(ValueError, match="n_frames must be at least 1"):
        select_uniform(0, 1)


# -- image names ---------------------------------------------------------------------------
def test_image_names_follow_deeplabcut():
    assert frame_image_name(0, 1) == "img0.png"
    assert frame_image_name(5, 10) == "img5.png"
    assert frame_image_name(5, 11) == "img05.png"
    assert frame_image_name(99, 100) == "img99.png"
    assert frame_image_name(7, 101) == "img007.png"
    assert frame_image_name(42, 2330) == "img0042.png"  # the openfield project's names
    counts = list(range(1, 20001)) + [10**e + d for e in range(5, 10) for d in (-1, 0, 1)]
    for n in counts:
        for i in {0, n // 3, n - 1}:
            assert frame_image_name(i, n) == dlc_image_name(i, n), (i, n)
    assert frame_image_name(np.int64(3), np.int64(1000)) == "img003.png"


def test_frame_numbers_read_back_from_image_names():
    for n, i in [(1, 0), (11, 5), (2330, 42), (100_000, 99_999)]:
        assert frame_of_image(frame_image_name(i, n)) == i
    assert frame_of_image("labeled-data/mouse/img042.png") == 42
    assert frame_of_image("labeled-data\\mouse\\img0042.jpg") == 42  # a key written on Windows
    assert frame_of_image(Path("labeled-data") / "mouse" / "img7.PNG") == 7
    for name in ("image042.png", "img.png", "img42", "img42.png.partial", "labeled-data/img42/notes.txt", ""):
        assert frame_of_image(name) is None, name


def test_image_name_errors():
    with pytest.raises(ValueError, match="outside a video of 10 frames"):
        frame_image_name(10, 10)
    with pytest.raises(ValueError, match="index must be at least 0"):
        frame_image_name(-1, 10)
    with pytest.raises(ValueError, match="n_frames must be at least 1"):
        frame_image_name(0, 0)


# -- k-means ---------------------------------------------------------------------------------
def test_kmeans_picks_k_distinct_sorted_frames_deterministically(clip):
    picks = select_kmeans(clip, 8)
    assert len(picks) == 8 and picks == sorted(set(picks))
    assert all(isinstance(i, int) and 0 <= i < N_FRAMES for i in picks)
    assert select_kmeans(clip, 8) == picks
    assert select_kmeans(clip, 8, seed=1) == select_kmeans(clip, 8, seed=1)
    centre = select_kmeans(clip, 8, pick="centre")
    assert len(centre) == 8 and centre == sorted(set(centre))


def test_kmeans_respects_range_and_step(clip):
    frames = frame_range(N_FRAMES, 0.25, 0.75)
    picks = select_kmeans(clip, 6, start=0.25, stop=0.75)
    assert len(picks) == 6 and all(i in frames for i in picks)
    stepped = select_kmeans(clip, 5, start=0.25, stop=0.75, step=7)
    assert len(stepped) == 5 and all(i in frames[::7] for i in stepped)


def test_kmeans_takes_one_frame_per_look(dark_then_bright):
    for pick in ("random", "centre"):
        for seed in range(3):
            a, b = select_kmeans(dark_then_bright, 2, seed=seed, pick=pick)
            assert a < N_FRAMES // 2 <= b, (pick, seed, a, b)


def test_kmeans_with_as_many_clusters_as_frames_returns_every_frame(clip):
    samples = list(range(0, N_FRAMES, 10))
    assert select_kmeans(clip, len(samples), step=10) == samples


def test_kmeans_fills_every_cluster_even_for_identical_frames(tmp_path):
    labels, _ = _kmeans(np.ones((10, 4)), 4, np.random.default_rng(0))
    assert sorted(set(labels.tolist())) == [0, 1, 2, 3]
    still = np.full((30, 64, 64, 3), 120, np.uint8)
    picks = select_kmeans(write_video(still, tmp_path / "still.mp4"), 5)
    assert len(picks) == 5 and picks == sorted(set(picks))


def test_kmeans_reports_progress(clip):
    seen = []
    picks = select_kmeans(clip, 4, progress=seen.append)
    assert seen[0] == 0.0 and seen[-1] == 1.0
    assert all(a < b for a, b in itertools.pairwise(seen))
    assert 10 <= len(seen) <= 101

    work = iter_select_kmeans(clip, 4)
    fractions = []
    with pytest.raises(StopIteration) as done:
        while True:
            fractions.append(next(work))
    assert done.value.value == picks and fractions == seen


def test_kmeans_errors_are_clear(clip, tmp_path):
    with pytest.raises(ValueError, match=f"cannot pick {N_FRAMES + 1} frames"):
        select_kmeans(clip, N_FRAMES + 1)
    with pytest.raises(ValueError, match="step=50 leaves 3 frames .* fewer than k=5; use a smaller step"):
        select_kmeans(clip, 5, step=50)
    with pytest.raises(ValueError, match="0 <= start < stop <= 1"):
        select_kmeans(clip, 5, start=0.8, stop=0.3)
    with pytest.raises(ValueError, match="k must be at least 1"):
        select_kmeans(clip, 0)
    with pytest.raises(ValueError, match="pick must be one of"):
        select_kmeans(clip, 3, pick="nearest")
    with pytest.raises(ValueError, match="resize_width must be at least 1"):
        select_kmeans(clip, 3, resize_width=0)
    with pytest.raises(VideoOpenError, match="file not found"):
        select_kmeans(tmp_path / "missing.mp4", 3)


# -- extraction ------------------------------------------------------------------------------
def test_extracted_pngs_are_bit_identical_and_named_like_deeplabcut(clip, tmp_path):
    labeled = tmp_path / "labeled-data"
    done = []
    result = extract_frames(clip, [90, 3, 47, 3, 119], labeled, progress=done.append)
    folder = labeled / "mouse_session"
    assert isinstance(result, ExtractedFrames) and result.folder == folder
    assert result.frames == [3, 47, 90, 119]
    assert [p.name for p in result.paths] == ["img003.png", "img047.png", "img090.png", "img119.png"]
    assert result.written == result.paths and result.skipped == [] and len(result) == 4
    assert done == [0.25, 0.5, 0.75, 1.0]
    assert sorted(p.name for p in folder.iterdir()) == [p.name for p in result.paths]  # no temporary files left
    with VideoReader(clip) as reader:
        for i, path in zip(result.frames, result.paths):
            with Image.open(path) as image:
                assert image.format == "PNG" and image.mode == "RGB"
                np.testing.assert_array_equal(np.asarray(image), reader.get(i))


def test_extraction_as_a_generator_reports_each_frame(clip, tmp_path):
    work = iter_extract_frames(clip, [30, 10, 20, 10], tmp_path / "labeled-data")
    folder = tmp_path / "labeled-data" / "mouse_session"
    assert not folder.exists()  # nothing happens before the first step
    fractions = []
    while True:
        try:
            fractions.append(next(work))
        except StopIteration as finished:
            result = finished.value
            break
    assert fractions == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert isinstance(result, ExtractedFrames) and result.frames == [10, 20, 30] and len(result.written) == 3

    stopped = iter_extract_frames(clip, [40, 50, 60], tmp_path / "labeled-data")
    assert next(stopped) == pytest.approx(1 / 3)
    stopped.close()  # stopping keeps what was written and writes nothing more
    assert sorted(p.name for p in folder.iterdir()) == ["img010.png", "img020.png", "img030.png", "img040.png"]


def test_existing_pngs_are_never_overwritten(clip, tmp_path):
    labeled = tmp_path / "labeled-data"
    first = extract_frames(clip, [10, 20], labeled)
    keep = first.paths[0].read_bytes()
    first.paths[1].write_bytes(b"labelled elsewhere")
    again = extract_frames(clip, [10, 20, 30], labeled)
    assert again.skipped == first.paths
    assert [p.name for p in again.written] == ["img030.png"]
    assert first.paths[0].read_bytes() == keep
    assert first.paths[1].read_bytes() == b"labelled elsewhere"


def test_extraction_errors_are_clear(clip, tmp_path):
    labeled = tmp_path / "labeled-data"
    with pytest.raises(ValueError, match=rf"frames \[120, 500\] are outside the video \({N_FRAMES} frames"):
        extract_frames(clip, [5, 120, 500], labeled)
    with pytest.raises(ValueError, match="frame index must be at least 0"):
        extract_frames(clip, [-1], labeled)
    with pytest.raises(TypeError, match="frame index must be an integer"):
        extract_frames(clip, [1.5], labeled)
    with pytest.raises(VideoOpenError, match="file not found"):
        extract_frames(tmp_path / "missing.mp4", [1], labeled)
    assert not labeled.exists()  # nothing written before the request is known to be valid
    empty = extract_frames(clip, [], labeled)
    assert empty.paths == [] and not labeled.exists()


def test_selection_and_extraction_together(clip, tmp_path):
    picks = select_uniform(N_FRAMES, 5)
    result = extract_frames(clip, picks, tmp_path / "labeled-data")
    assert [p.name for p in result.written] == [frame_image_name(i, N_FRAMES) for i in picks]


# -- real data ------------------------------------------------------------------------------
@pytest.mark.shared_data
def test_kmeans_on_the_openfield_video(openfield_video):
    t0 = time.perf_counter()
    picks = select_kmeans(openfield_video, 20)
    elapsed = time.perf_counter() - t0
    assert len(picks) == 20 and picks == sorted(set(picks))
    assert 0 <= picks[0] and picks[-1] < 2330
    # different-looking frames come from all over the session, not one stretch of it
    assert len({i * 4 // 2330 for i in picks}) == 4
    assert elapsed < 15, f"k-means selection took {elapsed:.1f} s"
