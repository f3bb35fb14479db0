#!/usr/bin/env bash
# The main job: napari opens with the plugin's widgets and the built-in sample.
# Without a display, the same runs on a virtual display and saves a screenshot.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
out=${POSEKIT_OUTPUT_DIR:-outputs/demo}
if [ -n "${DISPLAY:-}" ] && .venv/bin/python -c "from qtpy.QtWidgets import QApplication; QApplication([])" >/dev/null 2>&1; then
  exec .venv/bin/posekit demo --output-dir "$out" "$@"
fi
echo "demo: no display found, running on a virtual display (Xvfb) and saving a screenshot"
exec xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/posekit demo --screenshot --output-dir "$out" "$@"
