"""The Analysis widget's predictions buffer, runs and files, without napari."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from napari_posekit.controllers.analysis import (
    Analyses,
    Analysis,
    AnalysisRun,
    PredictionsWrite,
    VideoSource,
    default_path,
    export_plan,
    frame_span,
    h5_path,
    iter_export,
    runs,
    suggested_path,
)
from napari_posekit.core.inference import AnalysisChunk, output_paths
from napari_posekit.core.labeled_video import labeled_video_path
from napari_posekit.core.predictions import read_predictions

BODYPARTS = ["snout", "tail"]
PREDICTOR = SimpleNamespace(
    bodyparts=BODYPARTS, skeleton=[("snout", "tail")], scorer="DLC_test", checkpoint=Path("model.pt")
)
SOURCE = VideoSource(name="clip", n_frames=10, height=32, width=48, fps=25.0)


def _chunk(start, n, failed=None):
    xy = np.stack([np.arange(start, start + n)] * 4, axis=1).reshape(n, 2, 2).astype(float)
    return AnalysisChunk(start=start, xy=xy, likelihood=np.full((n, 2), 0.9), failed=failed or {})


def _events(run, key, starts):
    yield {"event": "ready", "key": key, "predictor": PREDICTOR}
    done = 0
    for start in starts:
        done += 2
        yield {"event": "chunk", "chunk": _chunk(start, 2), "done": done, "fps": 50.0}


def test_analyses_fill_one_buffer_per_layer_and_replace_it_for_another_model():
    analyses = Analyses()
    run = AnalysisRun("layer-1", 2, 6, n_frames=10)
    replaced = [analyses.receive(run, event) for event in _events(run, ("m.pt", 1), [2, 4])]
    assert replaced == [None, None, None] and analyses.predictor == (("m.pt", 1), PREDICTOR, "auto")
    analysis = analyses.get("layer-1")
    assert analysis is run.analysis and len(analyses) == 1 and analysis.layer_id == "layer-1"
    assert analysis.analysed.tolist() == [False] * 2 + [True] * 4 + [False] * 4
    assert np.isnan(analysis.xy[:2]).all() and analysis.xy[5, 1].tolist() == [5.0, 5.0]
    assert analysis.present().sum() == 8 and runs(analysis.analysed) == [[2, 6]]
    assert run.done == 4 and run.status_text() == "4/4 frames · 50.0 frames/s"

    again = AnalysisRun("layer-1", 8, 10, n_frames=10)  # the same model adds to what was there
    for event in _events(again, ("m.pt", 1), [8]):
        assert analyses.receive(again, event) is None
    assert analyses.get("layer-1") is analysis and runs(analysis.analysed) == [[2, 6], [8, 10]]

    other = AnalysisRun("layer-1", 0, 2, n_frames=10)  # another model: a new buffer, the old one is handed back
    results = [analyses.receive(other, event) for event in _events(other, ("m.pt", 2), [0])]
    assert results[-1] is analysis and analyses.get("layer-1") is not analysis
    assert runs(analyses.get("layer-1").analysed) == [[0, 2]]
    assert analyses.forget("layer-1") is not None and analyses.get("layer-1") is None


def test_a_chunk_replaces_failed_frames_it_redoes():
    analysis = Analysis.new("l", 6, PREDICTOR, ("m", 1), None)
    analysis.add(_chunk(0, 3, failed={1: "corrupt"}))
    assert analysis.failed == {1: "corrupt"}
    analysis.add(_chunk(0, 3))
    assert analysis.failed == {}


def test_runs_texts_and_frame_spans():
    run = AnalysisRun("l", 5, 6, n_frames=40)
    assert run.start_text() == "Loading the model to analyse frame 5…" and run.eta_s() is None
    run.done, run.fps = 1, 10.0
    assert run.finished_text("clip") == "Analysed frame 5 of clip (10.0 frames/s)."
    run = AnalysisRun("l", 0, 40, n_frames=40, done=16, fps=8.0, failed=2)
    assert run.start_text() == "Loading the model to analyse frames 0–39…" and run.eta_s() == 3.0
    assert run.status_text() == "16/40 frames · 8.0 frames/s · 2 frames could not be decoded"
    assert run.finished_text("clip") == (
        "Stopped: 16 of 40 frames of clip analysed (8.0 frames/s). "
        "2 frames could not be decoded (no predictions there)."
    )
    assert frame_span("Current frame", 40, 17, 0, 0) == (17, 18)
    assert frame_span("Frame range", 40, 0, 39, 30) == (30, 40)
    assert frame_span("Frame range", 40, 0, 30, 99) == (30, 40)
    assert frame_span("Whole video", 40, 3, 1, 2) == (0, 40)


def test_paths_metadata_and_writing(tmp_path):
    analysis = Analysis.new("l", 10, PREDICTOR, ("m", 1), None)
    analysis.add(_chunk(0, 4, failed={2: "corrupt"}))
    assert default_path(analysis) is None  # an image stack: the widget asks
    assert (
        suggested_path(analysis, VideoSource("clip", 10, 32, 48, folder=str(tmp_path))) == tmp_path / "clipDLC_test.h5"
    )
    assert h5_path(tmp_path / "a") == tmp_path / "a.h5" and h5_path(tmp_path / "a.H5") == tmp_path / "a.H5"
    video = tmp_path / "clip.mp4"
    analysis.video_path = video
    assert default_path(analysis) == output_paths(video, "DLC_test")["h5"]
    meta = analysis.metadata(SOURCE)
    assert meta["layer"] == "clip" and meta["fps"] == 25.0 and (meta["width"], meta["height"]) == (48, 32)
    assert meta["analysed_frames"] == [[0, 4]] and meta["failed_frames"] == [2] and meta["video"] == str(video)

    write = PredictionsWrite.of(analysis, SOURCE, tmp_path / "out.h5")
    analysis.xy[:] = 0.0  # the write holds its own copy: the buffer may change while a worker writes
    path = write.write()
    assert path == tmp_path / "out.h5" and path.with_suffix(".csv").is_file()
    saved = read_predictions(path)
    assert saved.bodyparts == BODYPARTS and saved.xy[3, 1].tolist() == [3.0, 3.0] and np.isnan(saved.xy[5]).all()
    assert saved.metadata["analysed_frames"] == [[0, 4]]

    analysis.filter_options = {"method": "median", "window": 4}
    analysis.filtered = (analysis.xy, analysis.likelihood)
    with pytest.raises(ValueError, match="odd"):
        analysis.refilter(0.6)  # an even window: the core says why
    analysis.filter_options = {"method": "median", "window": 3}
    analysis.refilter(0.6)
    filtered = PredictionsWrite.of(
        analysis, SOURCE, tmp_path / "out_filtered.h5", filter_options={"method": "median", "window": 3, "pcutoff": 0.6}
    )
    assert filtered.filtered and filtered.metadata["filter"]["window"] == 3


def test_export_writes_the_predictions_first_then_the_video_and_stops_cleanly(tmp_path):
    frames = np.random.default_rng(0).integers(0, 255, (10, 32, 48, 3), dtype=np.uint8)
    analysis = Analysis.new("l", 10, PREDICTOR, ("m", 1), None)
    analysis.add(_chunk(2, 5))
    h5 = tmp_path / "clipDLC_test.h5"
    writes = (PredictionsWrite.of(analysis, SOURCE, h5),)
    plan = export_plan(
        analysis, frames, labeled_video_path(h5), filtered=False, pcutoff=0.6, tail_length=3, fps=25.0, writes=writes
    )
    assert plan.options["start"] == 2 and plan.options["stop"] == 7 and plan.n_frames == 5
    events = []
    gen = iter_export(plan, lambda: False)
    while True:
        try:
            events.append(next(gen))
        except StopIteration as done:
            result = done.value
            break
    assert events[0] == {"event": "saved", "path": h5, "filtered": False} and h5.is_file()
    assert [e["done"] for e in events[1:]][-1] == 5
    assert result == labeled_video_path(h5) and result.is_file()

    stopped = export_plan(
        analysis, frames, tmp_path / "stopped.mp4", filtered=False, pcutoff=0.6, tail_length=3, fps=25.0
    )
    gen = iter_export(stopped, lambda: True)
    with pytest.raises(StopIteration) as end:
        next(gen)
    assert end.value.value is None and not (tmp_path / "stopped.mp4").exists()
