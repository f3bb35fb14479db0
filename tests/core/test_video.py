"""The lazy video reader: frame-exact, fast paths, thread safety, bad input."""

from __future__ import annotations

import hashlib
import pickle
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor

import av
import dask
import numpy as np
import pytest

from napari_posekit.core.video import (
    FrameDecodeError,
    VideoOpenError,
    VideoReader,
    as_dask,
    format_time,
    iter_frames,
    parse_position,
    read_metadata,
    write_video,
)
from napari_posekit.core.video_decoder import _to_rgb


def sequential_frames(path) -> list[np.ndarray]:
    """Reference: a plain full sequential decode, frame by frame, in display order."""
    with av.open(str(path)) as container:
        return [_to_rgb(f) for f in container.decode(video=0)]


def sequential_digests(path, wanted: set[int]) -> dict[int, str]:
    """Digests of the wanted frames of a full sequential decode (for long videos)."""
    out = {}
    with av.open(str(path)) as container:
        for i, f in enumerate(container.decode(video=0)):
            if i in wanted:
                out[i] = hashlib.sha1(_to_rgb(f).tobytes()).hexdigest()
    return out


def digest(a: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(a).tobytes()).hexdigest()


def test_every_container_and_codec_is_frame_exact_in_random_order(video_files, behaviour):
    for name, path in video_files.items():
        reference = sequential_frames(path)
        assert len(reference) == len(behaviour.frames), name
        with VideoReader(path, cache_bytes=0) as reader:
            assert len(reader) == len(reference), name
            order = np.random.default_rng(1).permutation(len(reference))
            for i in order:
                frame = reader.get(int(i))
                assert frame.shape == (96, 128, 3) and frame.dtype == np.uint8
                assert np.array_equal(frame, reference[i]), f"{name}: frame {i} differs from the sequential decode"


def test_backward_and_forward_jumps_inside_a_long_gop(video_files):
    path = video_files["h264_bframes_longgop.mp4"]
    reference = sequential_frames(path)
    with VideoReader(path, cache_bytes=0, max_decoders=1) as reader:
        assert reader.metadata.n_keyframes == 1  # one GOP: every access decodes from frame 0
        for i in [149, 0, 148, 75, 76, 77, 74, 120, 3, 149, 1]:
            assert np.array_equal(reader.get(i), reference[i]), i


def test_frames_match_an_independent_ffmpeg_decode(video_files):
    """Catch off-by-one shifts against ffmpeg's own command-line decoder."""
    import imageio_ffmpeg

    path = video_files["h264_bframes_longgop.mp4"]
    gen = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    meta = next(gen)
    w, h = meta["size"]
    ffmpeg_frames = np.stack([np.frombuffer(b, np.uint8).reshape(h, w, 3) for b in gen]).astype(np.int16)
    with VideoReader(path) as reader:
        assert len(reader) == len(ffmpeg_frames)
        for i in [5, 60, 61, 100, 148]:
            err = [np.abs(reader.get(i) - ffmpeg_frames[j]).mean() for j in (i - 1, i, i + 1)]
            assert err[1] < 2.0 and err[1] < min(err[0], err[2]), (i, err)


def test_metadata_without_decoding(video_files):
    path = video_files["h264_bframes_longgop.mp4"]
    meta = read_metadata(path)
    assert (meta.n_frames, meta.width, meta.height) == (150, 128, 96)
    assert meta.fps == pytest.approx(25.0)
    assert meta.duration == pytest.approx(6.0)
    assert meta.codec == "h264" and meta.pix_fmt == "yuv420p"
    assert meta.to_dict()["duration"] == pytest.approx(6.0)
    reader = VideoReader(path)
    assert reader._decoders == []  # opening decodes nothing
    assert reader.shape == (150, 96, 128, 3)
    reader.close()


def test_dask_array_is_lazy_and_exact(video_files):
    path = video_files["h264_short_gop.mkv"]
    reference = sequential_frames(path)
    reader = VideoReader(path)
    arr = as_dask(reader)
    assert arr.shape == (150, 96, 128, 3) and arr.dtype == np.uint8
    assert arr.chunks[0] == (1,) * 150
    assert reader._decoders == []  # building the array decoded nothing
    assert np.array_equal(arr[37].compute(), reference[37])
    assert np.array_equal(arr[10:20, 5:50, :, 1].compute(), np.stack(reference[10:20])[:, 5:50, :, 1])
    assert np.array_equal(arr[::7].compute(), np.stack(reference[::7]))
    reader.close()


def test_thread_safe_under_dask_threads_and_concurrent_callers(video_files):
    path = video_files["h264_bframes_longgop.mp4"]
    reference = np.stack(sequential_frames(path))
    reader = VideoReader(path, max_decoders=3, cache_bytes=40 * 96 * 128 * 3)
    arr = as_dask(reader, frames_per_chunk=5)
    with dask.config.set(scheduler="threads", num_workers=6):
        assert np.array_equal(arr.compute(), reference)

    rng = np.random.default_rng(7)
    jobs = [rng.integers(0, 150, 40) for _ in range(8)]

    def work(indices):
        return all(np.array_equal(reader.get(int(i)), reference[i]) for i in indices)

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(work, jobs))
    reader.close()


def test_cache_is_bounded_and_frames_are_read_only(video_files):
    path = video_files["h264_short_gop.mkv"]
    frame_bytes = 96 * 128 * 3
    with VideoReader(path, cache_bytes=10 * frame_bytes, readahead=0) as reader:
        for i in range(40):
            reader.get(i)
        assert len(reader._cache) == 10
        assert 39 in reader._cache and 29 not in reader._cache
        frame = reader.get(39)
        with pytest.raises(ValueError):
            frame[0, 0, 0] = 1


def test_read_ahead_fills_the_cache_when_playing_forward(video_files):
    path = video_files["h264_bframes_longgop.mp4"]
    reference = sequential_frames(path)
    with VideoReader(path, readahead=8) as reader:
        for i in range(20, 24):
            reader.get(i)
        deadline = threading.Event()
        for _ in range(100):  # the background thread decodes up to frame 23 + 8
            if all(j in reader._cache for j in range(24, 32)):
                break
            deadline.wait(0.02)
        assert all(j in reader._cache for j in range(24, 32))
        assert all(np.array_equal(reader._cache.get(j), reference[j]) for j in range(24, 32))


def test_negative_and_out_of_range_indices(video_files):
    path = video_files["mjpeg.mov"]
    reference = sequential_frames(path)
    with VideoReader(path) as reader:
        assert np.array_equal(reader[-1], reference[-1])
        with pytest.raises(IndexError, match="out of range"):
            reader.get(150)
        with pytest.raises(TypeError):
            reader.get(1.5)


def test_reader_pickles_by_path(video_files):
    path = video_files["h264_short_gop.mkv"]
    with VideoReader(path, readahead=4) as reader:
        clone = pickle.loads(pickle.dumps(reader))
        assert clone.path == reader.path and clone.readahead == 4
        assert np.array_equal(clone.get(33), reader.get(33))
        clone.close()


def test_iter_frames_matches_sequential_decode(video_files):
    path = video_files["vp9.webm"]
    reference = sequential_frames(path)
    frames = list(iter_frames(path, 10, 30))
    assert len(frames) == 20
    assert all(np.array_equal(a, b) for a, b in zip(frames, reference[10:30]))


def test_write_video_round_trip_and_atomic(tmp_path, behaviour):
    path = write_video(behaviour.frames[:30], tmp_path / "out.mp4", fps=15)
    assert path.exists() and not list(tmp_path.glob(".*partial*"))
    meta = read_metadata(path)
    assert (meta.n_frames, meta.width, meta.height, meta.fps) == (30, 128, 96, 15)
    with VideoReader(path) as reader:  # near-lossless at the default quality
        assert np.abs(reader.get(12).astype(int) - behaviour.frames[12]).mean() < 3
    with pytest.raises(ValueError, match="uint8"):
        write_video([np.zeros((8, 8, 3), np.float32)], tmp_path / "bad.mp4")
    assert not (tmp_path / "bad.mp4").exists()


# -- bad input ----------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(VideoOpenError, match="file not found") as info:
        VideoReader(tmp_path / "nope.mp4")
    assert str(tmp_path / "nope.mp4") in str(info.value)


def test_folder_and_non_video(tmp_path):
    with pytest.raises(VideoOpenError, match="folder"):
        VideoReader(tmp_path)
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    with pytest.raises(VideoOpenError, match="notes.mp4: cannot be opened as a video"):
        VideoReader(text)
    empty = tmp_path / "empty.avi"
    empty.write_bytes(b"")
    with pytest.raises(VideoOpenError, match="empty.avi"):
        read_metadata(empty)


def test_audio_only_file_has_no_video_stream(tmp_path):
    import imageio_ffmpeg

    path = tmp_path / "tone.mkv"
    subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(),
            "-y",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "sine=d=0.5",
            "-c:a",
            "pcm_s16le",
            str(path),
        ],
        check=True,
    )
    with pytest.raises(VideoOpenError, match="no video stream"):
        VideoReader(path)


def test_truncated_video_without_index_fails_to_open(tmp_path, video_files):
    data = video_files["h264_bframes_longgop.mp4"].read_bytes()  # index (moov) at the end
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoOpenError, match="cut.mp4: cannot be opened"):
        VideoReader(cut)


def test_truncated_video_reports_the_missing_frames(tmp_path, behaviour):
    src = write_video(behaviour.frames, tmp_path / "src.mp4", extra_args=["-g", "50", "-movflags", "+faststart"])
    data = src.read_bytes()
    cut = tmp_path / "cut_faststart.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    with VideoReader(cut) as reader:
        good, bad = [], []
        for i in range(len(reader)):
            try:
                reader.get(i)
                good.append(i)
            except FrameDecodeError as err:
                assert "cut_faststart.mp4" in str(err) and f"frame {i}" in str(err)
                bad.append(i)
        assert good and bad and max(good) < min(bad)  # frames up to the cut decode, the rest are reported
        assert set(reader.errors) == set(bad)


def test_damaged_frames_mid_file_are_reported_not_replaced(tmp_path, behaviour):
    src = write_video(behaviour.frames, tmp_path / "src.mp4", extra_args=["-g", "50", "-movflags", "+faststart"])
    reference = sequential_frames(src)
    data = bytearray(src.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 300] = b"\xaa" * 300
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    with VideoReader(damaged) as reader:
        results = {}
        for i in range(len(reader)):
            try:
                results[i] = reader.get(i)
            except FrameDecodeError as err:
                assert "damaged.mp4" in str(err)
                results[i] = None
        bad = [i for i, f in results.items() if f is None]
        assert bad, "the damaged packets must be reported"
        # every frame that was returned is exactly the undamaged frame
        assert all(np.array_equal(f, reference[i]) for i, f in results.items() if f is not None)

    with VideoReader(damaged, on_error="warn") as reader, pytest.warns(RuntimeWarning, match=f"frame {bad[0]}"):
        blank = reader.get(bad[0])
    assert not blank.any()


def test_bad_options():
    with pytest.raises(ValueError, match="on_error"):
        VideoReader("x.mp4", on_error="ignore")


# -- positions ------------------------------------------------------------------


def test_parse_position_and_format_time():
    assert parse_position("120", 30, 1000) == 120
    assert parse_position("1:02.5", 30, 3000) == 1875
    assert parse_position("0:01:02", 30, 3000) == 1860
    assert parse_position("2.5s", 30, 1000) == 75
    for bad in ["abc", "1:2:3:4", "-1:00", "5.5", ""]:
        with pytest.raises(ValueError, match="neither a frame number nor a time"):
            parse_position(bad, 30, 1000)
    with pytest.raises(ValueError, match="outside the video"):
        parse_position("1000", 30, 1000)
    assert format_time(62.5) == "01:02.500"
    assert format_time(3723.25) == "1:02:03.250"
    assert format_time(float("nan")) == "--:--"


# -- real videos ------------------------------------------------------------------


def _check_random_frames_against_sequential(path, n_random=40, seed=0):
    meta = read_metadata(path)
    with VideoReader(path, cache_bytes=0) as reader:
        keys = reader.index.keyframes
        wanted = set(np.random.default_rng(seed).choice(meta.n_frames, n_random, replace=False).tolist())
        # the frames around every keyframe and the last frames are where off-by-one errors hide
        wanted |= {int(k) + d for k in keys for d in (-1, 0, 1) if 0 <= k + d < meta.n_frames}
        wanted |= {meta.n_frames - 1, meta.n_frames - 2}
        order = sorted(wanted, key=lambda i: hash((i, seed)))
        got = {i: digest(reader.get(i)) for i in order}
    expected = sequential_digests(path, wanted)
    assert len(expected) == len(wanted)
    mismatched = [i for i in wanted if got[i] != expected[i]]
    assert not mismatched, f"frames differing from the sequential decode: {sorted(mismatched)}"
    return meta


def test_openfield_video_is_frame_exact(openfield_video):
    meta = _check_random_frames_against_sequential(openfield_video)
    assert (meta.n_frames, meta.width, meta.height, meta.pix_fmt) == (2330, 640, 480, "yuv444p")
    assert meta.fps == pytest.approx(30.0, abs=0.01)


def test_sleap_fly_video_is_frame_exact(fly_video):
    meta = _check_random_frames_against_sequential(fly_video, n_random=25)
    assert (meta.n_frames, meta.width, meta.height) == (1500, 1024, 1024)


def test_prefetch_decodes_in_the_background_and_requests_share_the_work(video_files):
    path = video_files["h264_bframes_longgop.mp4"]
    reference = sequential_frames(path)
    with VideoReader(path) as reader:
        thread = reader.prefetch([140, 141, 10_000])  # out-of-range frames are ignored
        assert np.array_equal(reader.get(140), reference[140])  # waits for the prefetch, no second decode
        thread.join(5)
        assert 141 in reader._cache and np.array_equal(reader._cache.get(141), reference[141])
        assert len(reader._decoders) == 1
