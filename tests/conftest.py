"""Shared fixtures: small synthetic videos and the real datasets in ../shared/data."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("POSEKIT_SHARED_DATA", REPO.parent / "shared" / "data"))


def require_shared(*parts: str) -> Path:
    """Path inside ../shared/data; fails under CI (CI=true) and skips elsewhere when missing."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        message = f"shared dataset missing: {path}"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message + " (CI=true: the shared data must be present)")
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def openfield_video() -> Path:
    return require_shared("dlc_openfield-Pranav-2018-10-30", "videos", "m3v1mp4.mp4")


@pytest.fixture(scope="session")
def fly_video() -> Path:
    return require_shared("sleap_fly_clip", "clip.mp4")


@pytest.fixture(scope="session")
def behaviour():
    from napari_posekit.core.synthetic import make_behaviour

    return make_behaviour(n_frames=150, height=96, width=128, seed=3)


def ffmpeg_encode(frames: np.ndarray, path: Path, args: list[str], fps: float = 25.0) -> Path:
    """Encode raw RGB frames with the ffmpeg binary bundled by imageio-ffmpeg."""
    import imageio_ffmpeg

    t, h, w, _ = frames.shape
    cmd = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(fps), "-i", "-",
        *args, str(path),
    ]
    subprocess.run(cmd, input=np.ascontiguousarray(frames).tobytes(), check=True)
    return path


@pytest.fixture(scope="session")
def video_files(tmp_path_factory, behaviour) -> dict[str, Path]:
    """The same synthetic content in several codecs and containers."""
    folder = tmp_path_factory.mktemp("videos")
    f = behaviour.frames
    return {
        # long GOP, B-frames with pyramid, no scene-cut keyframes: the hard case for seeking
        "h264_bframes_longgop.mp4": ffmpeg_encode(
            f, folder / "h264_bframes_longgop.mp4",
            ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "250", "-bf", "3", "-x264-params", "b-pyramid=normal",
             "-sc_threshold", "0"],
        ),
        "h264_short_gop.mkv": ffmpeg_encode(
            f, folder / "h264_short_gop.mkv", ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "24"]
        ),
        "mpeg4.avi": ffmpeg_encode(f, folder / "mpeg4.avi", ["-c:v", "mpeg4", "-q:v", "4", "-g", "30", "-bf", "2"]),
        "mjpeg.mov": ffmpeg_encode(f, folder / "mjpeg.mov", ["-c:v", "mjpeg", "-q:v", "3"]),
        "vp9.webm": ffmpeg_encode(f, folder / "vp9.webm", ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-g", "40"]),
        "gray_h264.mp4": ffmpeg_encode(
            f, folder / "gray_h264.mp4", ["-c:v", "libx264", "-pix_fmt", "gray", "-g", "100"]
        ),
    }
