"""Exporting the tiny project's model from the Training controller, and analysing with the exported file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import TINY_PROJECT, drain
from napari_posekit.controllers.analysis import (
    CHOOSING_TEXT,
    AnalysisRun,
    backend_choices,
    iter_analysis,
    load_predictor,
    loading_text,
)
from napari_posekit.controllers.models import (
    MODEL_FILTER,
    ExportResult,
    export_fraction,
    export_path,
    format_size,
    is_exported,
    model_name,
    onnx_path,
    resolve_model,
    run_export,
)
from napari_posekit.core.backends import BACKENDS
from napari_posekit.core.export import ExportError
from napari_posekit.core.model_file import read_model_meta
from napari_posekit.core.workflow import latest_checkpoint

pytestmark = pytest.mark.usefixtures("torch_threads")


@pytest.fixture(scope="module")
def exported(tiny_trained_project, tmp_path_factory):
    """The tiny project's model exported (float32) outside the shared project, with the stages reported."""
    checkpoint = latest_checkpoint(tiny_trained_project)
    stages: list[tuple[float | None, str]] = []
    result = run_export(
        checkpoint, tmp_path_factory.mktemp("exported") / "tiny", progress=lambda f, line: stages.append((f, line))
    )
    return result, stages


def test_export_texts_and_paths():
    checkpoint = Path("/p/posekit-models/iteration-0/m/train/checkpoint.pt")
    assert export_path(checkpoint) == checkpoint.with_name("checkpoint.onnx")
    assert export_path(checkpoint, int8=True) == checkpoint.with_name("checkpoint-int8.onnx")
    assert onnx_path("/a/model") == Path("/a/model.onnx") and onnx_path("/a/m.ONNX") == Path("/a/m.ONNX")
    assert onnx_path("/a/m.pt") == Path("/a/m.pt.onnx")
    assert export_fraction("loading /x.pt") == 0.05 and export_fraction("writing /x.onnx (1.0 s)") == 0.95
    assert export_fraction("quantising to int8 on 12 calibration images") == 0.5 and export_fraction("?") is None
    assert format_size(812_000) == "812 kB" and format_size(3_400_000) == "3.4 MB" and format_size(2e9) == "2.00 GB"
    result = ExportResult(Path("/a/m-int8.onnx"), 3_400_000, True, 14.2)
    assert result.text() == "Exported the model (int8, 3.4 MB, 14 s): /a/m-int8.onnx"
    assert result.text("/a") == "Exported the model (int8, 3.4 MB, 14 s): m-int8.onnx"
    assert result.text("/b") == result.text()
    assert is_exported("m.onnx") and is_exported(Path("M.ONNX")) and not is_exported("m.pt") and not is_exported(None)
    assert "*.onnx" in MODEL_FILTER and "*.pt" in MODEL_FILTER
    assert backend_choices() == ["auto", *BACKENDS]
    assert loading_text("choosing the fastest backend for this model on this machine (once): a, b") == CHOOSING_TEXT
    assert loading_text("backend x failed to load (y); falling back") == "Backend x failed to load (y); falling back"


def test_export_writes_a_model_file_with_the_projects_description(exported, tiny_trained_project):
    result, stages = exported
    assert result.path.suffix == ".onnx" and result.path.name == "tiny.onnx" and not result.int8
    assert result.size == result.path.stat().st_size > 10_000
    fractions = [f for f, _ in stages if f is not None]
    assert fractions == sorted(fractions) and fractions[0] <= 0.15 and fractions[-1] == 0.95
    meta = read_model_meta(result.path)
    checkpoint = latest_checkpoint(tiny_trained_project)
    assert meta["precision"] == "float32" and meta["source_checkpoint"] == checkpoint.name
    assert meta["bodyparts"] and len(meta["skeleton"]) > 0  # the project's skeleton travels with the file
    ref = resolve_model(result.path)  # an exported model stands for itself
    assert ref.exported and ref.checkpoint == result.path and ref.name == model_name(result.path) == "tiny.onnx"


def test_export_errors_say_what_to_do(exported, tmp_path, tiny_trained_project):
    result, _ = exported
    checkpoint = latest_checkpoint(tiny_trained_project)
    before = result.path.read_bytes()
    with pytest.raises(ExportError, match="exists already"):
        run_export(checkpoint, result.path)
    assert result.path.read_bytes() == before  # not touched
    with pytest.raises(ExportError, match="does not exist"):
        run_export(checkpoint, tmp_path / "missing-folder" / "m.onnx")
    with pytest.raises(ExportError, match="exported model already"):
        run_export(result.path, tmp_path / "again.onnx")
    outside = tmp_path / "outside.pt"
    outside.write_bytes(checkpoint.read_bytes())
    with pytest.raises(ExportError, match="int8 needs calibration frames"):
        run_export(outside, tmp_path / "outside-int8.onnx", int8=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outside.pt"]  # nothing half-written


def test_int8_export_replaces_a_file_only_when_asked(tiny_project_copy):
    checkpoint = latest_checkpoint(tiny_project_copy)
    target = export_path(checkpoint, int8=True)
    target.write_bytes(b"old")
    with pytest.raises(ExportError, match="exists already"):
        run_export(checkpoint, target, int8=True)
    result = run_export(checkpoint, target, int8=True, overwrite=True)
    meta = read_model_meta(target)
    assert result.int8 and result.path == target and meta["precision"] == "int8"
    assert meta["quantization"]["method"] == "static QDQ"


def test_analysis_runs_an_exported_model(exported, tiny_trained_project):
    result, _ = exported
    video = next((tiny_trained_project / "videos").glob("*.mp4"))
    lines: list[str] = []
    n = TINY_PROJECT["n_frames"]
    gen = iter_analysis(str(result.path), None, str(video), 0, n, 16, False, lambda: False, report=lines.append)
    events, done = drain(gen)
    ready = events[0]
    assert ready["event"] == "ready" and ready["backend"] == "auto" and done == n
    predictor = ready["predictor"]
    assert predictor.backend.split("-")[0] in ("onnxruntime", "openvino") and predictor.checkpoint == result.path
    run = AnalysisRun("layer", 0, n, n, predictor=predictor)
    assert run.model_text().startswith(f"Model loaded on {predictor.backend}.")
    assert run.backend_text().startswith(f"The network runs on {predictor.backend}.")
    assert AnalysisRun("layer", 0, n, n).backend_text() == ""
    chunks = [e["chunk"] for e in events[1:]]
    xy = np.concatenate([c.xy for c in chunks])
    assert xy.shape == (n, len(predictor.bodyparts), 2) and np.isfinite(xy).mean() > 0.5

    # the same model and backend: the predictor is kept; another backend asked for: loaded again
    cached = (ready["key"], predictor, "auto")
    assert load_predictor(result.path, cached)[1] is predictor
    other = load_predictor(result.path, cached, backend="onnxruntime-float32")[1]
    assert other is not predictor and other.backend == "onnxruntime-float32"
    with pytest.raises(Exception, match="not available for this model"):
        load_predictor(result.path, backend="torch-eager-float32")


def test_the_analysis_controller_runs_an_exported_model_without_torch(exported, tiny_trained_project):
    result, _ = exported
    video = next((tiny_trained_project / "videos").glob("*.mp4"))
    script = f"""
import sys
sys.modules["torch"] = None  # importing torch (or timm, which needs it) fails from here on
sys.modules["timm"] = None
from napari_posekit.controllers.analysis import iter_analysis
events = []
gen = iter_analysis({str(result.path)!r}, None, {str(video)!r}, 0, 8, 8, False, lambda: False,
                    backend="onnxruntime-float32")
for event in gen:
    events.append(event)
print(events[0]["predictor"].backend, sum(len(e["chunk"].xy) for e in events[1:]))
"""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", script], check=False, capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["onnxruntime-float32", "8"]
