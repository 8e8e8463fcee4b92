"""Event-loop lag: how late a sleeping task wakes up, the figure that says whether the node
still answers promptly while it builds and commits blocks (exported on ``/metrics``)."""

from __future__ import annotations

import trio

__all__ = ["LoopMonitor"]


class LoopMonitor:
    """Samples the loop's lag every ``interval_s``; keeps the worst of the last window."""

    def __init__(self, interval_s: float = 0.01, window_s: float = 60.0) -> None:
        self.interval_s = interval_s
        self.window_s = window_s
        self.last_s = 0.0
        self.max_s = 0.0  # since start
        self.window_max_s = 0.0  # worst of the previous full window (what /metrics shows)
        self._current_max_s = 0.0
        self._window_start = 0.0
        self.samples = 0

    def record(self, lag_s: float, now_s: float) -> None:
        if now_s - self._window_start >= self.window_s:
            self.window_max_s, self._current_max_s = self._current_max_s, 0.0
            self._window_start = now_s
        self.last_s = lag_s
        self.samples += 1
        self._current_max_s = max(self._current_max_s, lag_s)
        self.max_s = max(self.max_s, lag_s)

    @property
    def recent_max_s(self) -> float:
        """The worst lag over the last one to two windows."""
        return max(self.window_max_s, self._current_max_s)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Sample until cancelled (a long-lived nursery task)."""
        self._window_start = trio.current_time()
        task_status.started()
        while True:
            before = trio.current_time()
            await trio.sleep(self.interval_s)
            now = trio.current_time()
            self.record(max(0.0, now - before - self.interval_s), now)
