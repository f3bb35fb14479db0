#!/usr/bin/env bash
# Runs the whole test suite after setting up what it needs (see scripts/setup.sh).
# Viewer tests run in a real napari.Viewer on an X virtual framebuffer (pytest-xvfb).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
