"""An exported model analyses a video without torch or timm: the deployment that needs only numpy, PyAV and a runtime.

Each test runs a fresh Python in which importing torch or timm raises, and
checks afterwards that neither was imported.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")

BLOCK_TORCH = textwrap.dedent(
    """
    import importlib.abc, sys

    class _NoTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "timm", "torchvision"):
                raise ImportError(f"{name} is blocked: this run must not need it")
            return None

    sys.meta_path.insert(0, _NoTorch())
    """
)


@pytest.fixture(scope="module")
def exported(tiny_trained_project, tmp_path_factory) -> tuple[Path, Path]:
    """``(model.onnx, video)`` from the tiny project's trained model."""
    from napari_posekit.core.export import export_model

    folder = tmp_path_factory.mktemp("torch_free")
    model = export_model(tiny_trained_project, folder / "tiny.onnx")
    video = next((tiny_trained_project / "videos").iterdir())
    return model, video


def _run(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    script = (
        BLOCK_TORCH
        + textwrap.dedent(code)
        + textwrap.dedent(
            """
        leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "timm", "torchvision"))
        print("LEAKED", leaked)
        """
        )
    )
    return subprocess.run(
        [sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=300, cwd=tmp_path
    )


def test_analyze_video_with_an_exported_model_imports_no_torch(exported, tmp_path):
    model, video = exported
    done = _run(
        f"""
        from napari_posekit.core.inference import analyze_video
        from napari_posekit.core.predictions import read_predictions

        gen = analyze_video({str(model)!r}, {str(video)!r}, output_dir={str(tmp_path)!r})
        while True:
            try:
                next(gen)
            except StopIteration as end:
                h5 = end.value
                break
        print("H5", h5)
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "LEAKED []" in done.stdout, done.stdout
    h5 = Path(done.stdout.split("H5 ", 1)[1].split()[0])
    assert h5.is_file() and h5.with_suffix(".csv").is_file()
    meta = json.loads(h5.with_name(h5.stem + "_meta.json").read_text())
    assert meta["checkpoint"].endswith("tiny.onnx")


def test_posekit_analyze_cli_with_an_exported_model_imports_no_torch(exported, tmp_path):
    model, video = exported
    done = _run(
        f"""
        from napari_posekit.cli import main

        status = main(["analyze", {str(model)!r}, {str(video)!r}, "--output-dir", {str(tmp_path)!r}])
        print("STATUS", status)
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "STATUS 0" in done.stdout and "LEAKED []" in done.stdout, done.stdout + done.stderr
    assert "backend: onnxruntime-float32" in done.stderr or "backend: openvino-" in done.stderr
    assert list(tmp_path.glob("*.h5"))


def test_the_blocker_blocks(tmp_path):
    """The check itself can fail: a run that imports torch is caught."""
    done = _run("import napari_posekit.core.train\n", tmp_path)
    assert done.returncode != 0 and "blocked" in done.stderr
