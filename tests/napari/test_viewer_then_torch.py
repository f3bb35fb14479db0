"""torchvision imported after the viewer's OpenGL context does not crash the process.

With Mesa's LLVM-based OpenGL (the virtual display here, remote desktops, VMs),
importing triton (through timm or torchvision) after the viewer exists used
to end the process with a segmentation fault; training imports both when it
starts.  Runs in a fresh process, in the order a person's session has.
"""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import numpy as np, napari
viewer = napari.Viewer(show=True)
viewer.add_image(np.zeros((16, 16)))
napari.qt.get_qapp().processEvents()
viewer.screenshot(canvas_only=True)
import napari_posekit._napari._training_widget  # napari imports the widget's module when it is opened
from napari_posekit.core.codec import HeatmapCodec
from napari_posekit.core.data import Augmentation, LabeledImages
from napari_posekit.core.model import PoseModel
# what training does first: build the network (timm) and draw an augmented sample (torchvision)
PoseModel("resnet18", n_keypoints=2, pretrained=False)
images = np.zeros((1, 64, 64, 3), np.uint8)
sample = LabeledImages(images, np.full((1, 2, 2), 30.0), HeatmapCodec(input_size=(32, 32), stride=4),
                       augmentation=Augmentation())[0]
viewer.close()
print("survived")
"""


def test_training_after_the_viewer_exists_does_not_crash():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-3000:])
    assert "survived" in proc.stdout
