"""A clone without ../shared/data passes its tests: real-data tests skip before any fixture.

Runs the real-data tests in a fresh pytest process pointed at a data folder that does
not exist, once as a person's clone (they must all skip, with no errors from fixture
teardown) and once as CI (they must all fail).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run_real_data_tests(tmp_path: Path, ci: bool) -> tuple[int, str, dict[str, int]]:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    env["POSEKIT_SHARED_DATA"] = str(tmp_path / "no-shared-data")
    if ci:
        env["CI"] = "true"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-m",
            "shared_data",
            "-p",
            "no:cacheprovider",
            "-q",
            "-rN",
            "--basetemp",
            str(tmp_path / ("ci" if ci else "clone")),
            "tests",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    out = proc.stdout + proc.stderr
    summary = out.strip().splitlines()[-1] if out.strip() else ""
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", summary)}
    return proc.returncode, out, counts


def test_real_data_tests_skip_cleanly_without_shared_data(tmp_path):
    code, out, counts = _run_real_data_tests(tmp_path, ci=False)
    assert code == 0, out[-4000:]
    assert counts.get("skipped", 0) >= 10, out[-4000:]  # the viewer tests on real data are among them
    assert "error" not in counts and "errors" not in counts, out[-4000:]
    assert "rep_call" not in out


def test_real_data_tests_fail_under_ci_without_shared_data(tmp_path):
    code, out, counts = _run_real_data_tests(tmp_path, ci=True)
    assert code == 1, out[-4000:]
    failed = counts.get("failed", 0) + counts.get("error", 0) + counts.get("errors", 0)
    assert failed >= 10 and counts.get("skipped", 0) == 0 and counts.get("passed", 0) == 0, out[-4000:]
    assert "CI=true: the shared data must be present" in out
