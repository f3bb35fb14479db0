#!/usr/bin/env python
"""Time to open a video in a real napari viewer until its first frame is drawn.

Run by hand under a display or a virtual one (it is not a test)::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python benchmarks/napari_open.py [VIDEO ...] [--reps 7]

For each repetition, in one warm viewer (a first, untimed open warms napari and GL up):
``viewer.open(path, plugin="napari-posekit")`` is timed until the layer exists
("layer appears"), then Qt events are processed until the canvas has drawn
("first frame drawn"); the layer is removed before the next repetition. Medians of
the repetitions are printed with min and max, and the machine description.
Defaults to the openfield video of ../shared/data.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_VIDEO = REPO.parent / "shared" / "data" / "dlc_openfield-Pranav-2018-10-30" / "videos" / "m3v1mp4.mp4"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("videos", nargs="*", type=Path, default=[DEFAULT_VIDEO])
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args(argv)

    from qtpy.QtWidgets import QApplication

    import napari
    from napari_posekit.core.synthetic import make_behaviour
    from napari_posekit.core.video import write_video

    print(
        f"CPU: {cpu_model()}, {len(os.sched_getaffinity(0))} cores; Python {platform.python_version()}, "
        f"napari {napari.__version__}, display {os.environ.get('DISPLAY')}"
    )
    viewer = napari.Viewer(show=True)
    app = QApplication.instance()
    warm = Path(os.environ.get("TMPDIR", "/tmp")) / "posekit_napari_open_warmup.mp4"
    if not warm.exists():
        write_video(make_behaviour(10, 96, 128).frames, warm)
    viewer.open(str(warm), plugin="napari-posekit")
    app.processEvents()
    viewer.layers.clear()

    for video in args.videos:
        appear, drawn = [], []
        for _ in range(args.reps):
            t0 = time.perf_counter()
            [layer] = viewer.open(str(video), plugin="napari-posekit")
            t1 = time.perf_counter()
            viewer.window._qt_viewer.canvas.native.update()
            app.processEvents()
            viewer.window._qt_viewer.canvas.native.repaint()
            t2 = time.perf_counter()
            appear.append(1000 * (t1 - t0))
            drawn.append(1000 * (t2 - t0))
            viewer.layers.remove(layer)
            app.processEvents()
        for name, values in (("layer appears", appear), ("first frame drawn", drawn)):
            print(
                f"{video.name}: {name:18s} median {statistics.median(values):6.1f} ms "
                f"(min {min(values):.1f}, max {max(values):.1f}, {len(values)} reps)"
            )
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
