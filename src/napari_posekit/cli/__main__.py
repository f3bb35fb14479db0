"""``python -m napari_posekit.cli``: the ``posekit`` command."""

import sys

from napari_posekit.cli import main

sys.exit(main())
