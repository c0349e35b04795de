"""Wall-clock time in the one unit the protocol uses for timestamps: milliseconds."""

from __future__ import annotations

import time


def now_ms() -> int:
    """Milliseconds since the Unix epoch, as stamped in `ts` and `since`."""
    return time.time_ns() // 1_000_000
