"""End-to-end demo on the built-in sample: what the README's first command runs."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np


def run_demo(output_dir: Path, screenshot: bool = False, show: bool = True) -> int:
    """Write the sample, open it in napari with the plugin's widgets.

    With ``screenshot`` the viewer is not kept open: it scrubs to a few
    frames, saves ``screenshot.png`` and exits, printing where everything is.
    """
    from napari.layers import Layer

    import napari
    from napari_posekit._napari._layers import keypoints_layer_data
    from napari_posekit.core.sample import write_sample

    output_dir = Path(output_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    files = write_sample(output_dir / "sample")
    print(f"sample video written: {files.video} ({time.perf_counter() - t0:.1f} s)")

    viewer = napari.Viewer(title="napari-posekit demo", show=show)
    viewer.window.resize(1500, 950)
    t0 = time.perf_counter()
    viewer.open(files.video, plugin="napari-posekit")
    print(f"video opened as a lazy layer in {1000 * (time.perf_counter() - t0):.0f} ms")
    b = files.behaviour
    skeleton = [list(e) for e in b.skeleton]
    truth = keypoints_layer_data(b.keypoints, b.bodyparts, name="ground truth",
                                 metadata={"skeleton": skeleton, "readonly": True})
    viewer.add_layer(Layer.create(*truth))
    # an empty keypoints layer to label the sample by hand; a few frames come pre-labeled
    labels = np.full_like(b.keypoints, np.nan)
    labels[:3] = b.keypoints[:3]
    viewer.add_layer(Layer.create(*keypoints_layer_data(labels, b.bodyparts, name="my labels",
                                                         metadata={"skeleton": skeleton})))
    viewer.window.add_plugin_dock_widget("napari-posekit", "Video")
    viewer.window.add_plugin_dock_widget("napari-posekit", "Labeling")
    viewer.window.add_plugin_dock_widget("napari-posekit", "Frames")
    viewer.dims.axis_labels = ("frame", "y", "x")
    viewer.dims.current_step = (2, 0, 0)
    viewer.reset_view()

    if screenshot:
        from qtpy.QtWidgets import QApplication

        for _ in range(10):
            QApplication.processEvents()
        path = output_dir / "screenshot.png"
        viewer.screenshot(str(path), canvas_only=False)
        viewer.close()
        print(f"screenshot saved: {path}")
        print(f"outputs in: {output_dir}")
        return 0
    napari.run()
    return 0
