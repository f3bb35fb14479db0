"""config.yaml (core.config): byte-exact round trips, one changed key changes its lines only, DeepLabCut's layout."""

from __future__ import annotations

import difflib
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import require_shared
from napari_posekit.core import config as CF
from napari_posekit.core.project import ProjectError

OPENFIELD = "dlc_openfield-Pranav-2018-10-30"
BODYPARTS = ["snout", "leftear", "rightear", "tailbase"]


@pytest.fixture(scope="session")
def shared_project() -> Path:
    """The real project in ../shared/data (read only)."""
    return require_shared(OPENFIELD)


def no_temp_files(folder: Path) -> bool:
    return not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


# ---------------------------------------------------------------------------------------------
# config.yaml
# ---------------------------------------------------------------------------------------------


def test_config_round_trip_is_byte_exact_and_same_mapping(shared_project, tmp_path):
    source = shared_project / "config.yaml"
    config = CF.read_config(shared_project)  # a project folder works too
    assert isinstance(config, dict) and config.path == source
    assert list(config)[:5] == ["Task", "scorer", "date", "multianimalproject", "identity"]
    assert config["bodyparts"] == BODYPARTS and config["TrainingFraction"] == [0.95]
    assert config["video_sets"] == {"WILL BE AUTOMATICALLY UPDATED BY DEMO CODE": {"crop": "0, 640, 0, 480"}}
    assert config["SuperAnimalConversionTables"]["superanimal_topviewmouse"]["snout"] == "nose"
    assert config["multianimalproject"] is None and config["cropping"] is False
    assert config == yaml.safe_load(source.read_text())

    out = CF.write_config(tmp_path / "config.yaml", config)
    assert out.read_bytes() == source.read_bytes()
    assert CF.read_config(out) == config
    assert list(CF.read_config(out)) == list(config)


def _changed_lines(a: str, b: str) -> list[str]:
    return [
        line
        for line in difflib.unified_diff(a.splitlines(), b.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]


def test_changing_one_key_changes_only_its_lines(shared_project, tmp_path):
    original = (shared_project / "config.yaml").read_text()
    config = CF.read_config(shared_project / "config.yaml")
    config["pcutoff"] = 0.55
    path = CF.write_config(tmp_path / "config.yaml", config)
    assert _changed_lines(original, path.read_text()) == ["-pcutoff: 0.4", "+pcutoff: 0.55"]

    config = CF.read_config(path)
    config["bodyparts"].append("tailtip")  # a change inside a list
    CF.write_config(path, config)
    assert _changed_lines(original, path.read_text()) == ["+- tailtip", "-pcutoff: 0.4", "+pcutoff: 0.55"]
    assert CF.read_config(path)["bodyparts"] == [*BODYPARTS, "tailtip"]


def test_unknown_keys_comments_and_key_order_are_kept(shared_project, tmp_path):
    text = (shared_project / "config.yaml").read_text()
    custom = "# lab notes\nmy_lab_key:  {a: 1, b: [x, y]}  # flow\n"
    text = text.replace("move2corner: true\n", "move2corner: true\n" + custom)
    text += "\nzz_last: 3\n"
    path = tmp_path / "config.yaml"
    path.write_text(text)
    config = CF.read_config(path)
    assert config["my_lab_key"] == {"a": 1, "b": ["x", "y"]} and config["zz_last"] == 3
    CF.write_config(path, config)
    assert path.read_text() == text  # untouched keys keep their exact text, flow style and comments

    config["snapshotindex"] = 5
    config["new_tool_key"] = "value"
    del config["zz_last"]
    CF.write_config(path, config)
    again = CF.read_config(path)
    assert again["my_lab_key"] == {"a": 1, "b": ["x", "y"]} and "zz_last" not in again
    assert list(again)[-1] == "new_tool_key" and again["snapshotindex"] == 5
    assert custom in path.read_text()


def test_new_deeplabcut_key_goes_where_deeplabcut_puts_it(shared_project, tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text((shared_project / "config.yaml").read_text().replace("detector_batch_size: 1\n", ""))
    config = CF.read_config(path)
    assert "detector_batch_size" not in config
    config["detector_batch_size"] = 1
    CF.write_config(path, config)
    keys = list(CF.read_config(path))
    assert keys.index("detector_batch_size") == keys.index("batch_size") + 1
    assert path.read_text() == (shared_project / "config.yaml").read_text()


def test_windows_line_endings_are_kept(shared_project, tmp_path):
    text = (shared_project / "config.yaml").read_text().replace("\n", "\r\n")
    path = tmp_path / "config.yaml"
    path.write_bytes(text.encode())
    config = CF.read_config(path)
    config["numframes2pick"] = 40
    CF.write_config(path, config)
    assert path.read_bytes() == text.replace("numframes2pick: 20", "numframes2pick: 40").encode()


def test_yaml_1_2_scalars_like_deeplabcut(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("Task: on\nbodyparts:\n- yes\n- no\n- nose\nx1: 010\ncropping: false\nratio: 1e-3\n")
    config = CF.read_config(path)
    assert config["Task"] == "on" and config["bodyparts"] == ["yes", "no", "nose"]
    assert config["x1"] == 10 and config["cropping"] is False and config["ratio"] == 0.001
    config["Task"] = "yes"
    config["scorer"] = "0o17"
    CF.write_config(path, config)
    again = CF.read_config(path)
    assert again["Task"] == "yes" and again["scorer"] == "0o17"
    assert yaml.safe_load(path.read_text())["Task"] == "yes"  # quoted, so YAML 1.1 readers agree


def test_plain_mapping_is_written_in_deeplabcut_layout(tmp_path):
    config = {
        "Task": "reach",
        "scorer": "Ann",
        "date": "Jan5",
        "multianimalproject": False,
        "identity": None,
        "project_path": "/data/reach",
        "video_sets": {"/data/v1.mp4": {"crop": "0, 320, 0, 240"}},
        "bodyparts": ["a", "b"],
        "skeleton": [["a", "b"]],
        "corner2move2": (50, 50),
        "my_key": np.int64(3),
    }
    path = CF.write_config(tmp_path, config)
    text = path.read_text()
    assert text.startswith("# Project definitions (do not edit)\nTask: reach\nscorer: Ann\ndate: Jan5\n")
    assert "identity:\n\n\n# Project path (change when moving around)\nproject_path: /data/reach\n" in text
    assert "video_sets:\n  /data/v1.mp4:\n    crop: 0, 320, 0, 240\nbodyparts:\n- a\n- b\n" in text
    assert "skeleton:\n- - a\n  - b\n" in text and "corner2move2:\n- 50\n- 50\n" in text
    assert text.endswith("my_key: 3\n")
    again = CF.read_config(path)
    assert again == {**config, "corner2move2": [50, 50], "my_key": 3}


def test_read_config_errors(tmp_path):
    with pytest.raises(ProjectError, match="config file not found"):
        CF.read_config(tmp_path / "config.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("Task: [unclosed\n")
    with pytest.raises(ProjectError, match=r"bad\.yaml: not valid YAML"):
        CF.read_config(bad)
    bad.write_text("- a\n- b\n")
    with pytest.raises(ProjectError, match="expected a mapping"):
        CF.read_config(bad)
    bad.write_text("")
    with pytest.raises(ProjectError, match="empty"):
        CF.read_config(bad)


def test_write_config_rejects_values_yaml_cannot_hold(tmp_path):
    with pytest.raises(ProjectError, match="cannot write the config"):
        CF.write_config(tmp_path / "config.yaml", {"Task": object()})
    assert not (tmp_path / "config.yaml").exists() and no_temp_files(tmp_path)


def test_what_ruamel_alone_would_rewrite_stays_as_written(shared_project, tmp_path):
    """Indented lists, odd spacing and a deleted last key of a section: only the changed lines change."""
    original = (shared_project / "config.yaml").read_text()
    text = original.replace("\n- ", "\n  - ").replace(
        "\n\n# Training", "\nodd_key:   'x'   # spaced\n\n\n# Training", 1
    )
    path = tmp_path / "config.yaml"
    path.write_text(text)
    config = CF.read_config(path)
    assert config["bodyparts"] == BODYPARTS and config["odd_key"] == "x"
    config["pcutoff"] = 0.5
    del config["odd_key"]  # the last key of its section: the next section's comment stays
    CF.write_config(path, config)
    assert _changed_lines(text, path.read_text()) == ["-pcutoff: 0.4", "+pcutoff: 0.5", "-odd_key:   'x'   # spaced"]
    config["bodyparts"] = [*BODYPARTS, "tailtip"]  # a replaced list keeps the section comment after it
    CF.write_config(path, config)
    assert "- tailtip\n\n\n# Fraction of video" in path.read_text()


def test_round_trip_of_values_only_ruamel_reads(tmp_path):
    path = tmp_path / "config.yaml"
    text = "corner2move2: !!python/tuple [50, 50]\nflag: &on true\nsame: *on\nratio: 2.50\nx1: 0x10\n"
    path.write_text(text)
    config = CF.read_config(path)
    assert config == {"corner2move2": [50, 50], "flag": True, "same": True, "ratio": 2.5, "x1": 16}
    assert type(config["flag"]) is bool and type(config["ratio"]) is float and type(config["x1"]) is int
    CF.write_config(path, config)
    assert path.read_text() == text
    path.write_text("a: 1\na: 2\n")
    with pytest.raises(ProjectError, match="not valid YAML"):  # DeepLabCut (ruamel) refuses it too
        CF.read_config(path)
