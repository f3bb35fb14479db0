"""The fast label checks in the Training and Refine widgets, and showing a suspect label's image.

- :class:`LabelCheckJobs`: a widget's project checked in a job of its own
  (it never makes the widget busy), again whenever the label files change
  (polled every :data:`~napari_posekit.controllers.training.LABEL_POLL_MS`);
  :class:`~napari_posekit.controllers.training.LabelChecks` keeps the result.
- :func:`show_labeled`: a labeled image in its keypoints layer, found among
  the open image stacks of the project by its CollectedData key (see
  :func:`~napari_posekit.controllers.training.find_image`), else its folder
  opened with the project reader; the layers drawn over other frames (a
  video, another folder) are hidden, since their frames differ.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

from napari.layers import Image, Points
from qtpy.QtCore import QTimer

from napari_posekit._napari import refine_layers
from napari_posekit._napari.jobs import JobRunner
from napari_posekit._napari.layers import Key, is_image_stack_layer
from napari_posekit.controllers.training import (
    LABEL_POLL_MS,
    ImageStack,
    LabelAdvice,
    LabelChecks,
    check_project_labels,
    find_image,
    labels_fingerprint,
    load_project_labels,
)

_CHECK_MODULES = (
    "cv2",
    "scipy.spatial",
    "concurrent.futures",
    "napari_posekit.core.images",
    "napari_posekit.core.model",
    "napari_posekit.core.label_checks",
    "napari_posekit.core.label_appearance",
    "napari_posekit.core.label_qa",
)


def preload_check_modules() -> None:
    """Import in the main thread what the checks import lazily (an import in the worker stalls the event loop)."""
    for name in _CHECK_MODULES:
        with suppress(ImportError):
            importlib.import_module(name)


class LabelCheckJobs:
    """The fast label checks of the project a widget names, run when asked and again when its label files change.

    ``project()`` is the widget's project (None: none chosen); ``on_change``
    runs when a check starts or ends (to show the advice). The labels are
    read here, in the GUI thread (HDF5 is not read from two threads at once:
    doing so made napari's image loading fail now and then); the checks
    themselves (2–3 s on openfield's 116 images with the appearance check,
    on two busy cores) run in a job.
    """

    def __init__(self, parent, project: Callable[[], Path | None], on_change: Callable[[], None]):
        self.checks = LabelChecks()
        self.project = project
        self.on_change = on_change
        self.jobs = JobRunner(None, on_change)
        self.timer = QTimer(parent)
        self.timer.setInterval(LABEL_POLL_MS)
        self.timer.timeout.connect(lambda: self.run(force=False))

    @property
    def busy(self) -> bool:
        return self.jobs.busy

    def watch(self, on: bool) -> None:
        """Check now when the advice is out of date, and whenever the label files change (or stop watching)."""
        if on:
            self.timer.start()
            self.run(force=False)
        else:
            self.timer.stop()

    def run(self, force: bool = True) -> None:
        """Check the project's labels in a job, unless one runs or (``force`` False) the advice is current."""
        project = self.project()
        if project is None or self.jobs.busy or (not force and not self.checks.stale(project)):
            self.on_change()
            return
        preload_check_modules()  # here, in the GUI thread, and only once a check runs (torch and timm are slow)
        fingerprint = labels_fingerprint(project)
        labels = load_project_labels(project)
        if isinstance(labels, LabelAdvice):  # unreadable: nothing to check
            self.checks.checked(labels)
            self.on_change()
            return
        self.jobs.start(
            "labels",
            lambda job: check_project_labels(project, labels=labels, fingerprint=fingerprint),
            description="Checking labels",
            total=None,
            failure="Label checks failed",
            on_done=lambda job, advice: self.checks.checked(advice),
            on_failed=lambda job, failed: self.checks.checked(
                LabelAdvice(project, labels_fingerprint(project), error=failed.message)
            ),
            on_finished=lambda job: self.run(force=False),  # the project may have changed meanwhile
        )


def find_labeled(viewer, image: str, project: Path | None) -> tuple[Points, int] | None:
    """The keypoints layer of ``project`` that shows the labeled ``image``, and its index there."""
    layers = [layer for layer in viewer.layers if is_image_stack_layer(layer)]
    stacks = [
        ImageStack(i, layer.metadata[Key.IMAGES], layer.metadata.get(Key.FOLDER), layer.metadata.get(Key.CONFIG))
        for i, layer in enumerate(layers)
    ]
    found = find_image(image, stacks, project)
    return (layers[found[0]], found[1]) if found is not None else None


def show_labeled(viewer, image: str, project: Path | None, hide: list) -> list | None:
    """Show ``image`` (a CollectedData key of ``project``) in its keypoints layer, selected; None when it cannot be.

    The layers in ``hide`` are hidden, unless they belong to the folder shown.
    Returns the folder's layers (keypoints, images, skeleton), now visible.
    """
    found = find_labeled(viewer, image, project)
    if found is None and project is not None and (project / image).parent.is_dir():
        viewer.open(str((project / image).parent), plugin="napari-posekit")
        found = find_labeled(viewer, image, project)
    if found is None:
        return None
    layer, index = found
    folder = layer.metadata.get(Key.FOLDER)
    claims = refine_layers.folder_claims(viewer, Path(folder)) if folder else []
    images = [other for other in claims if isinstance(other, Image)]
    group = refine_layers.folder_group(viewer, layer, images[0] if images else None)
    refine_layers.set_visible([other for other in hide if other not in group], False)
    refine_layers.set_visible(group, True)
    viewer.dims.set_current_step(0, index)
    viewer.layers.selection.active = layer
    return group
