#!/usr/bin/env bash
# The main job, end to end on the built-in synthetic sample (`posekit demo`): a DeepLabCut project
# with frames picked by k-means and labeled from the sample's ground truth, training (2 minutes by
# default, --minutes M for longer), analysis of the video (predictions .h5/.csv and a labeled video),
# the error against the ground truth, then napari with the video, predictions, trajectories and the
# plugin's widgets. Without a display the same runs on a virtual display and saves a screenshot.
# Everything goes to outputs/demo/ ($POSEKIT_OUTPUT_DIR or --output-dir DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
out=${POSEKIT_OUTPUT_DIR:-outputs/demo}
if [ -n "${DISPLAY:-}" ] && .venv/bin/python -c "from qtpy.QtWidgets import QApplication; QApplication([])" >/dev/null 2>&1; then
  exec .venv/bin/posekit demo --output-dir "$out" "$@"
fi
echo "demo: no display found, running on a virtual display (Xvfb) and saving a screenshot"
exec xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/posekit demo --screenshot --output-dir "$out" "$@"
