"""napari layer of napari-posekit: the only code that imports napari or Qt."""
