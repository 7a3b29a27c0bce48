"""The live server's recent search latencies: a window of the last N durations, its p50 and p95."""

from __future__ import annotations

import math
import threading
from collections import deque

WINDOW = 1000  # searches kept


def percentile(ordered: list[float], p: float) -> float | None:
    """The nearest-rank `p`th percentile of `ordered` (sorted ascending): the smallest value
    that at least p% of the values are less than or equal to; None when empty."""
    if not ordered:
        return None
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


class LatencyWindow:
    """The last `size` durations (milliseconds), recorded from any thread."""

    def __init__(self, size: int = WINDOW):
        self._values: deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()
        self._total = 0  # searches recorded since the start, the window's and older ones
        self.size = size

    def record(self, ms: float) -> None:
        with self._lock:
            self._values.append(float(ms))
            self._total += 1

    def summary(self) -> dict:
        """{"count": searches in the window, "total": since the server started, "window": its
        size, "p50_ms", "p95_ms": None before the first search}."""
        with self._lock:
            ordered, total = sorted(self._values), self._total
        return {"count": len(ordered), "total": total, "window": self.size,
                "p50_ms": percentile(ordered, 50), "p95_ms": percentile(ordered, 95)}
