"""A project as a whole (core.project): new projects, the project a path names, atomic writes, labeled images."""

from __future__ import annotations

import datetime as dt
import os
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import require_shared, writable_copy
from napari_posekit.core import collected_data as C
from napari_posekit.core import config as CF
from napari_posekit.core import labeled_images as L
from napari_posekit.core import project as P
from napari_posekit.core.project import ProjectError

OPENFIELD = "dlc_openfield-Pranav-2018-10-30"
H5 = "labeled-data/m4s1/CollectedData_Pranav.h5"


@pytest.fixture(scope="session")
def shared_project() -> Path:
    """The real project in ../shared/data (read only)."""
    return require_shared(OPENFIELD)


@pytest.fixture
def project(shared_project, tmp_path) -> Path:
    """A writable copy of the real project (without its video)."""
    return writable_copy(shared_project, tmp_path / OPENFIELD)


@pytest.fixture(scope="session")
def collected(shared_project) -> pd.DataFrame:
    return C.read_collected(shared_project / H5)


def no_temp_files(folder: Path) -> bool:
    return not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


# ---------------------------------------------------------------------------------------------
# create_project
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def small_video(tmp_path_factory) -> Path:
    from napari_posekit.core.video import write_video

    frames = np.zeros((5, 48, 64, 3), np.uint8)
    return write_video(frames, tmp_path_factory.mktemp("vid") / "session-a.mp4", fps=10)


def test_create_project_layout_and_deeplabcut_defaults(tmp_path, small_video):
    config_path = P.create_project(
        tmp_path,
        "reach",
        "Ann",
        [small_video],
        ["snout", "paw", "tail"],
        skeleton=[("snout", "paw")],
        date=dt.date(2024, 3, 7),
    )
    root = tmp_path / "reach-Ann-2024-03-07"
    assert config_path == root / "config.yaml"
    for sub in ("videos", "labeled-data/session-a", "training-datasets", "dlc-models"):
        assert (root / sub).is_dir(), sub
    link = root / "videos" / "session-a.mp4"
    assert link.is_symlink() and link.resolve() == small_video.resolve()

    config = CF.read_config(config_path)
    assert config["Task"] == "reach" and config["scorer"] == "Ann" and config["date"] == "Mar7"
    assert config["project_path"] == str(root) and config["engine"] == "pytorch"
    assert config["video_sets"] == {str(small_video.resolve()): {"crop": "0, 64, 0, 48"}}
    assert config["bodyparts"] == ["snout", "paw", "tail"] and config["skeleton"] == [["snout", "paw"]]
    assert config["multianimalproject"] is False and config["identity"] is None
    assert config["TrainingFraction"] == [0.95] and config["iteration"] == 0
    assert config["default_net_type"] == "resnet_50" and config["pcutoff"] == 0.6
    assert config["corner2move2"] == [50, 50] and config["move2corner"] is True
    assert [k for k in CF.DLC_CONFIG_KEYS if k in config] == list(config)  # DeepLabCut's key order
    text = config_path.read_text()
    assert text.startswith("# Project definitions (do not edit)\nTask: reach\n")
    assert "multianimalproject: false\nidentity:\n" in text and text.endswith("SuperAnimalConversionTables:\n")


def test_create_project_copies_videos_and_reads_their_size(tmp_path, shared_project, small_video):
    video = require_shared(OPENFIELD, "videos", "m3v1mp4.mp4")
    config_path = P.create_project(tmp_path, "of", "Me", [video, small_video], ["a"], copy_videos=True)
    root = config_path.parent
    assert root.name == f"of-Me-{dt.date.today():%Y-%m-%d}"
    copied = root / "videos" / "m3v1mp4.mp4"
    assert copied.is_file() and not copied.is_symlink()
    assert CF.read_config(config_path)["video_sets"] == {
        str(copied.resolve()): {"crop": "0, 640, 0, 480"},
        str((root / "videos" / "session-a.mp4").resolve()): {"crop": "0, 64, 0, 48"},
    }
    assert (root / "labeled-data" / "m3v1mp4").is_dir()


def test_create_project_errors_leave_nothing_behind(tmp_path, small_video):
    not_a_video = tmp_path / "notes.mp4"
    not_a_video.write_text("hello")
    date = dt.date(2024, 1, 2)
    with pytest.raises(ProjectError, match="notes.mp4: cannot add the video"):
        P.create_project(tmp_path, "t", "s", [small_video, not_a_video], ["a"], date=date)
    with pytest.raises(ProjectError, match="skeleton edge"):
        P.create_project(tmp_path, "t", "s", [small_video], ["a", "b"], skeleton=[("a", "c")], date=date)
    with pytest.raises(ProjectError, match="listed twice"):
        P.create_project(tmp_path, "t", "s", [small_video], ["a", "a"], date=date)
    with pytest.raises(ProjectError, match="path separators"):
        P.create_project(tmp_path, "t/x", "s", [small_video], ["a"], date=date)
    assert not (tmp_path / "t-s-2024-01-02").exists()
    P.create_project(tmp_path, "t", "s", [small_video], ["a"], date=date)
    with pytest.raises(ProjectError, match="exists already"):
        P.create_project(tmp_path, "t", "s", [small_video], ["a"], date=date)


def test_new_projects_take_the_package_defaults(tmp_path, small_video):
    from napari_posekit.core.options import PCUTOFF, TRAIN_BATCH_SIZE, TRAIN_FRACTION

    config = CF.read_config(P.create_project(tmp_path, "t", "s", [small_video], ["a"]))
    assert config["pcutoff"] == PCUTOFF and config["batch_size"] == TRAIN_BATCH_SIZE
    assert config["TrainingFraction"] == [TRAIN_FRACTION]


def test_project_root_of_the_folder_its_config_or_neither(tmp_path, small_video, monkeypatch):
    root = P.create_project(tmp_path, "t", "s", [small_video], ["a"]).parent
    assert P.project_root(root) == root
    assert P.project_root(root / "config.yaml") == root
    assert P.project_root(str(root / "config.yaml")) == root
    monkeypatch.setenv("HOME", str(tmp_path))
    assert P.project_root(f"~/{root.name}") == root
    (root / "link.yml").symlink_to(root / "config.yaml")
    assert P.project_root(root / "link.yml") == root  # any .yaml/.yml file stands for its folder
    for not_a_project in (tmp_path, root / "labeled-data", root / "nothing.yaml", tmp_path / "absent"):
        with pytest.raises(ProjectError, match="not a DeepLabCut project folder"):
            P.project_root(not_a_project)


# ---------------------------------------------------------------------------------------------
# Atomic writes
# ---------------------------------------------------------------------------------------------


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name.startswith("CollectedData")}


def test_unwritable_folder_parent_is_a_file(tmp_path, collected):
    blocker = tmp_path / "labeled-data"
    blocker.write_text("not a folder")
    with pytest.raises(ProjectError) as info:
        C.write_collected(collected, blocker / "m4s1")
    assert str(blocker) in str(info.value) and "CollectedData_Pranav.h5" in str(info.value)
    with pytest.raises(ProjectError, match="cannot write config.yaml"):
        CF.write_config(blocker / "config.yaml", {"Task": "x"})
    assert blocker.read_text() == "not a folder"
    with pytest.raises(ProjectError, match="does not exist"):
        C.write_collected(collected, tmp_path / "nowhere")


def test_failed_replace_keeps_old_files_and_leaves_no_temp(project, collected, monkeypatch):
    folder = project / "labeled-data" / "m4s1"
    before = _snapshot(folder)

    def refuse(src, dst):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(P.os, "replace", refuse)
    with pytest.raises(ProjectError, match=r"CollectedData_Pranav\.h5: cannot replace the file: Permission denied"):
        C.write_collected(collected.iloc[:3], folder)
    config = CF.read_config(project)
    config["pcutoff"] = 0.9
    with pytest.raises(ProjectError, match="config.yaml: cannot replace"):
        CF.write_config(project / "config.yaml", config)
    monkeypatch.undo()
    assert _snapshot(folder) == before and no_temp_files(folder) and no_temp_files(project)
    assert CF.read_config(project)["pcutoff"] == 0.4


def test_failure_in_the_second_file_replaces_neither(project, collected, monkeypatch):
    folder = project / "labeled-data" / "m4s1"
    before = _snapshot(folder)

    def disk_full(self, path, *args, **kwargs):
        Path(path).write_text("partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", disk_full)
    with pytest.raises(ProjectError, match="No space left on device"):
        C.write_collected(collected.iloc[:3], folder)
    monkeypatch.undo()
    assert _snapshot(folder) == before and no_temp_files(folder)


def test_new_files_get_normal_permissions(tmp_path, collected):
    _h5, csv_path = C.write_collected(collected, tmp_path)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(csv_path.stat().st_mode) == 0o666 & ~umask


# ---------------------------------------------------------------------------------------------
# Labeled images
# ---------------------------------------------------------------------------------------------


def test_labels_outside_the_image(shared_project, collected):
    sizes = L.image_sizes(shared_project / "labeled-data" / "m4s1")
    assert L.check_labels(collected, sizes) == []
    df = collected.copy()
    df.loc["labeled-data/m4s1/img0007.png", ("Pranav", "leftear", "x")] = 700.5
    df.loc["labeled-data/m4s1/img0010.png", ("Pranav", "tailbase", "y")] = -3.0
    warnings = L.check_labels(C.to_multi_index(df), sizes)
    assert warnings == [
        "labeled-data/m4s1/img0007.png: leftear at (700.5, 341.3) is outside the 640x480 image",
        "labeled-data/m4s1/img0010.png: tailbase at (177.3, -3.0) is outside the 640x480 image",
    ]
    assert len(L.check_labels(df, (640, 480))) == 2


def test_missing_images(project, collected):
    assert L.missing_images(collected, project) == []
    (project / "labeled-data" / "m4s1" / "img0005.png").unlink()
    assert L.missing_images(collected, project) == ["labeled-data/m4s1/img0005.png"]
    assert L.missing_images(C.to_multi_index(collected), project) == ["labeled-data/m4s1/img0005.png"]


def test_image_sizes_and_mixed_sizes(project):
    from PIL import Image

    folder = project / "labeled-data" / "m4s1"
    sizes = L.image_sizes(folder)
    assert len(sizes) == 116 and set(sizes.values()) == {(640, 480)}
    assert L.check_image_sizes(folder) == (640, 480)
    Image.new("RGB", (320, 240)).save(folder / "img9999.png")
    Image.new("RGB", (100, 50)).save(folder / "extra.jpg")
    assert L.image_sizes(folder)["extra.jpg"] == (100, 50)
    with pytest.raises(ProjectError) as info:
        L.check_image_sizes(folder)
    message = str(info.value)
    assert message.startswith(f"{folder}: images of different sizes in one folder: 640x480: 116 image(s)")
    assert "320x240: 1 image(s), e.g. img9999.png" in message and "100x50: 1 image(s), e.g. extra.jpg" in message
    (project / "empty").mkdir()
    assert L.check_image_sizes(project / "empty") is None
    with pytest.raises(ProjectError, match="not a folder"):
        L.image_sizes(project / "absent")
