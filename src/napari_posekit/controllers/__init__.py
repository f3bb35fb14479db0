"""State and decisions of the dock widgets, without napari, Qt or magicgui.

The widgets in :mod:`napari_posekit._napari` are views: they lay out
controls, connect signals and call in here.  What a widget remembers (an
analysis buffer, the progress of a training run) and what it decides (which
checkpoint a model box means, which keyword arguments the settings stand for,
the texts it shows) lives in these modules, where plain tests drive it.

- :mod:`.models`: a project folder, ``config.yaml`` or checkpoint to the
  checkpoint, its version key and its model folder's name.
- :mod:`.training`: the Training widget's settings, run progress, loss
  history and evaluation tables.
- :mod:`.analysis`: the Analysis widget's predictions per video (keyed by
  layer id), its runs, saving and labeled-video export.
- :mod:`.frames`: the Frames widget's target project and extraction work.
- :mod:`.refine`, :mod:`.refine_jobs`, :mod:`.refine_results`: the Refine
  widget's loop, its long work and what it reports.
"""
