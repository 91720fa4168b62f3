"""py-spy over the delivery process while it fans windows out (``bench_fanout --profile``), and a
summary of what it saw: where the samples are, by function, self and inclusive.

py-spy runs ``--nonblocking`` (it reads the process's memory without stopping it), so the
process being measured runs at its own pace; a profiled run's CPU figures are still best read
from a run without the profiler.

    python -m loadtest.fanout_profile PROFILE.txt [--top N]    # summarise a saved profile
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

SAMPLES_PER_S = 250


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        raise RuntimeError("py-spy is missing: pip install py-spy")
    return found


class Profiler:
    """``py-spy record`` of ``pid`` in raw (collapsed stacks) form, from ``start`` to ``stop``."""

    def __init__(self, pid: int, output: Path) -> None:
        self.pid = pid
        self.output = output
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [py_spy(), "record", "--pid", str(self.pid), "--format", "raw", "--nonblocking"]
            + ["--rate", str(SAMPLES_PER_S), "--output", str(self.output)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)  # py-spy writes what it has, then exits
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def summary(raw: str, top: int = 25) -> str:
    """Self and inclusive sample shares by function (``name (file)``), largest first."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_function(frame) for frame in stack.split(";")]
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return "no samples"
    lines = [f"{total} samples", "", "self:"]
    lines += [f"  {n * 100 / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    lines += ["", "inclusive:"]
    lines += [f"  {n * 100 / total:5.1f}%  {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(lines)


def _function(frame: str) -> str:
    """``send (uvicorn/protocols/http/httptools_impl.py:464)`` -> without the line number."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit(':', 1)[0].rstrip(')')})" if where else name


def main() -> int:
    parser = argparse.ArgumentParser(description="Summarise a py-spy raw profile.")
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    print(summary(args.profile.read_text(), args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
