"""The locust scenario runs headless against `emostream up` with zero failures (as in CI)."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ProcessFactory

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
LOCUSTFILE = ROOT / "loadtest" / "locustfile.py"


def test_locust_scenario_runs_clean(processes: ProcessFactory, tmp_path: Path) -> None:
    # 1 s windows so a few-second run sees several live windows reach the SSE listeners.
    up = processes.role("up", EMOSTREAM_WINDOW_S="1")
    prefix = tmp_path / "run"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(LOCUSTFILE),
            "--headless",
            "--users",
            "8",
            "--spawn-rate",
            "8",
            "--run-time",
            "5s",
            "--stop-timeout",
            "2",
            "--host",
            up.url,
            "--csv",
            str(prefix),
            "--only-summary",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = completed.stdout[-3000:] + completed.stderr[-3000:]
    assert completed.returncode == 0, output
    with open(f"{prefix}_stats.csv", newline="", encoding="utf-8") as stats_file:
        rows = {(row["Type"], row["Name"]): row for row in csv.DictReader(stats_file)}
    failures = {
        name: row["Failure Count"] for name, row in rows.items() if row["Failure Count"] != "0"
    }
    assert not failures, output
    posts = sum(int(row["Request Count"]) for (kind, _), row in rows.items() if kind == "POST")
    assert posts > 20, output
    assert int(rows[("SSE", "window end -> client")]["Request Count"]) >= 1, output
