"""The controllers import without napari, Qt or magicgui (a fresh process, every module)."""

import subprocess
import sys

FORBIDDEN = ("napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "superqt", "vispy")


def test_controllers_import_no_napari_or_qt():
    code = (
        "import sys, pkgutil, importlib\n"
        "import napari_posekit.controllers as c\n"
        "for m in pkgutil.iter_modules(c.__path__):\n"
        "    importlib.import_module('napari_posekit.controllers.' + m.name)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r} or m.startswith('napari_posekit._napari'))\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "", f"the controllers imported: {result.stdout.strip()}"
