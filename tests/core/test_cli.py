"""The posekit command, headless."""

from __future__ import annotations

import json

from napari_posekit.cli import main
from napari_posekit.core.video import write_video


def test_info_sample_create_project_and_extract_frames(tmp_path, behaviour, capsys):
    video = write_video(behaviour.frames, tmp_path / "session1.mp4", fps=25)
    assert main(["info", str(video), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_frames"] == 150
    assert main(["info", str(tmp_path / "missing.mp4")]) == 1
    assert "file not found" in capsys.readouterr().err

    assert (
        main(
            [
                "create-project",
                str(tmp_path),
                "mouse",
                "me",
                "--videos",
                str(video),
                "--bodyparts",
                "snout",
                "leftear",
                "rightear",
                "tailbase",
                "--skeleton",
                "snout-leftear",
            ]
        )
        == 0
    )
    config = capsys.readouterr().out.split("project created: ")[1].strip()
    assert main(["extract-frames", config, str(video), "--n", "4", "--start", "0.5"]) == 0
    pngs = sorted((tmp_path / config.split("/")[-2] / "labeled-data" / "session1").glob("img*.png"))
    assert len(pngs) == 4 and all(int(p.stem[3:]) >= 75 for p in pngs)
    assert main(["extract-frames", config, str(video), "--n", "4", "--start", "0.5"]) == 0  # rerun: kept
    assert "4 existed and were kept" in capsys.readouterr().out
    assert main(["create-project", str(tmp_path), "mouse", "me", "--videos", str(video), "--bodyparts", "a"]) == 1
