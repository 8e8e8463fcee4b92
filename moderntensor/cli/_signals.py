"""SIGINT/SIGTERM for the long-running commands (faucet, monitor): cancel the run's scope, so
the command returns normally (exit code 0) after its tasks' cleanup."""

from __future__ import annotations

import signal

import trio

__all__ = ["stop_on_signal"]


async def stop_on_signal(scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            scope.cancel()
            return
