"""napari-free core library of napari-posekit."""
