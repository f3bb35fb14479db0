"""The core library must import without napari or any Qt binding."""

import subprocess
import sys

FORBIDDEN = ("napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "superqt", "vispy")


def test_core_imports_no_napari_or_qt():
    code = (
        "import sys, pkgutil, importlib\n"
        "import napari_posekit, napari_posekit.core, napari_posekit.cli\n"
        "for m in pkgutil.iter_modules(napari_posekit.core.__path__):\n"
        "    importlib.import_module('napari_posekit.core.' + m.name)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "", f"core imported: {result.stdout.strip()}"
