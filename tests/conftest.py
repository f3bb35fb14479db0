"""Shared fixtures: small synthetic videos, a tiny trained model, torch threads and the real datasets in ../shared/data."""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("POSEKIT_SHARED_DATA", REPO.parent / "shared" / "data"))


def _ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_shared(*parts: str) -> Path:
    """Path inside ../shared/data; fails under CI (CI=true) and skips elsewhere when missing."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        message = f"shared dataset missing: {path}"
        if _ci():
            pytest.fail(message + " (CI=true: the shared data must be present)")
        pytest.skip(message)
    return path


def drain(gen):
    """Run a progress generator to its end: ``(yielded items, returned value)``."""
    items = []
    try:
        while True:
            items.append(next(gen))
    except StopIteration as done:
        return items, done.value


# --------------------------------------------------------------------------- shared-data gate
# A test that needs ../shared/data must skip (or, under CI, fail) before any of its
# fixtures exist: napari's ``make_napari_viewer`` cannot tear down a viewer whose test
# was skipped half-way through set-up.  Every test that calls ``require_shared`` itself
# or through one of its fixtures gets the ``shared_data`` marker with the datasets it
# names, and the gate below checks them first thing in set-up.
_DATASET_CALL = re.compile(r"""require_shared\(\s*["']([^"']+)["']""")


@functools.cache
def _datasets_named_in(func) -> frozenset[str]:
    try:
        source = inspect.getsource(func)
    except (OSError, TypeError):
        return frozenset()
    return frozenset(_DATASET_CALL.findall(source))


def _datasets_needed(item: pytest.Item) -> set[str]:
    funcs = [getattr(item, "function", None)]
    fixtureinfo = getattr(item, "_fixtureinfo", None)
    if fixtureinfo is not None:
        funcs += [d.func for defs in fixtureinfo.name2fixturedefs.values() for d in defs]
    needed: set[str] = set()
    for func in funcs:
        if func is not None:
            needed |= _datasets_named_in(func)
    for marker in item.iter_markers("shared_data"):
        needed.update(str(arg) for arg in marker.args)
    return needed


def pytest_configure(config):
    # backend choices and exported graphs are cached for the session, never in the user's own cache
    if "POSEKIT_CACHE_DIR" not in os.environ:
        import tempfile

        os.environ["POSEKIT_CACHE_DIR"] = tempfile.mkdtemp(prefix="posekit-test-cache-")
    config.addinivalue_line(
        "markers",
        "torch_threads(n): the number of torch threads the torch_threads fixture sets (default TORCH_THREADS)",
    )


def pytest_collection_modifyitems(config, items):
    for item in items:
        needed = _datasets_needed(item)
        if needed and not any(m.args for m in item.iter_markers("shared_data")):
            item.add_marker(pytest.mark.shared_data(*sorted(needed)))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    if item.get_closest_marker("shared_data") is None:
        return
    missing = [name for name in sorted(_datasets_needed(item)) if not SHARED_DATA.joinpath(name).exists()]
    if not SHARED_DATA.exists():
        missing = missing or [str(SHARED_DATA)]
    if missing:
        message = f"shared dataset missing in {SHARED_DATA}: {', '.join(missing)}"
        if _ci():
            pytest.fail(message + " (CI=true: the shared data must be present)", pytrace=False)
        pytest.skip(message)


# --------------------------------------------------------------------------- torch threads
#: Torch threads for tests that limit them: the CI machine has two cores, shared with Qt's
#: event loop, worker threads and the video decoders.  ``@pytest.mark.torch_threads(n)``
#: on a module or test asks for another count.
TORCH_THREADS = 1


@contextlib.contextmanager
def torch_thread_limit(n: int = TORCH_THREADS):
    """Run a block with ``n`` torch threads and put the earlier count back afterwards."""
    import torch  # here, not at the top: Qt-only tests never import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def torch_threads(request):
    """The test runs with ``TORCH_THREADS`` torch threads (or its ``torch_threads`` marker's count)."""
    marker = request.node.get_closest_marker("torch_threads")
    n = int(marker.args[0]) if marker is not None and marker.args else TORCH_THREADS
    with torch_thread_limit(n):
        yield n


# --------------------------------------------------------------------------- a tiny trained model
#: The synthetic sample project behind ``tiny_trained_project``: 40 frames of 64x96 pixels,
#: 8 of them labeled (frames 0, 6, 11, 17, 22, 28, 33 and 39), rendered with seed 0.
TINY_PROJECT = {"n_frames": 40, "height": 64, "width": 96, "n_labeled": 8, "seed": 0}
#: How its model is trained: a small random ResNet-18 for two epochs on the CPU.
TINY_TRAINING = {
    "epochs": 2,
    "backbone": "resnet18",
    "pretrained": False,
    "batch_size": 4,
    "input_size": (64, 64),
    "device": "cpu",
}


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="session")
def tiny_trained_project(tmp_path_factory):
    """A sample project (``TINY_PROJECT``) with a model trained once per session (``TINY_TRAINING``).

    Shared by every test that asks for it: read it, never write into it (a test that
    writes asks for ``tiny_project_copy``).  At the end of the session the files must
    be as they were after training.
    """
    from napari_posekit.core.sample import write_sample_project
    from napari_posekit.core.workflow import train_project

    folder = tmp_path_factory.mktemp("tiny_trained")
    project = write_sample_project(folder, **TINY_PROJECT).parent
    with torch_thread_limit():
        drain(train_project(project, **TINY_TRAINING))
    before = _snapshot(project)
    yield project
    after = _snapshot(project)
    changed = sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))
    assert not changed, f"tests wrote into the shared tiny_trained_project: {changed}"


@pytest.fixture
def tiny_project_copy(tiny_trained_project, tmp_path) -> Path:
    """The test's own copy of ``tiny_trained_project`` in ``tmp_path`` (same folder name), free to write into.

    The copy is a project of its own: its model is found under its own ``posekit-models``
    (:func:`~napari_posekit.core.workflow.latest_checkpoint`), whatever paths the config
    and the checkpoint recorded when the original was made.
    """
    return Path(shutil.copytree(tiny_trained_project, tmp_path / tiny_trained_project.name))


def writable_copy(source: Path, dest: Path) -> Path:
    """A copy of a project without its videos, every file writable by its owner (shared data may be read-only)."""
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns("videos"))
    for folder, dirs, files in os.walk(dest):
        for name in [*dirs, *files]:
            p = Path(folder, name)
            p.chmod(p.stat().st_mode | stat.S_IWUSR)
    dest.chmod(dest.stat().st_mode | stat.S_IWUSR)
    return dest


#: The demo in a few seconds: small video, few frames, a small random network for two epochs (DemoOptions keywords).
TINY_DEMO = {
    "n_frames": 24,
    "height": 64,
    "width": 96,
    "n_labeled": 6,
    "minutes": 0.2,
    "epochs": 2,
    "backbone": "resnet18",
    "pretrained": False,
    "input_size": (64, 64),
    "batch_size": 4,
    "device": "cpu",
}


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

    _t, h, w, _ = frames.shape
    cmd = [
        imageio_ffmpeg.get_ffmpeg_exe(),
        "-y",
        "-loglevel",
        "error",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-s",
        f"{w}x{h}",
        "-r",
        str(fps),
        "-i",
        "-",
        *args,
        str(path),
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
            f,
            folder / "h264_bframes_longgop.mp4",
            [
                "-c:v",
                "libx264",
                "-pix_fmt",
                "yuv420p",
                "-g",
                "250",
                "-bf",
                "3",
                "-x264-params",
                "b-pyramid=normal",
                "-sc_threshold",
                "0",
            ],
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
