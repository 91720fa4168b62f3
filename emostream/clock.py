"""Wall-clock milliseconds that never run backwards within a process.

Windows are assigned by the server's receive time. Anchoring the wall clock to the monotonic
clock once means an NTP step cannot reorder stamps inside one ingest process, which the batch
codec relies on (receive times are non-decreasing per event within a batch).
"""

from __future__ import annotations

import time

_ANCHOR_NS = time.time_ns() - time.monotonic_ns()


def now_ms() -> int:
    return (_ANCHOR_NS + time.monotonic_ns()) // 1_000_000
