"""napari-posekit: markerless animal pose estimation inside napari.

The package is split in two: :mod:`napari_posekit.core` is a plain library
(numpy, pandas, dask, PyAV) usable headless and on clusters, and
``napari_posekit._napari`` is the thin napari layer (readers, writers,
sample data, widgets) on top of it. Importing this module is cheap and
imports neither napari nor Qt.
"""

__version__ = "0.1.0"
