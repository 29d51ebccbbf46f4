"""SIGINT and SIGTERM stopping a process once, with nothing printed by the signals that follow.

Under ``auditwatch up`` every component gets Ctrl-C's SIGINT and then up's SIGTERM, often before Python has run
the handler of the first. Three ways this printed noise on a newcomer's terminal, or worse:

- ``loop.add_signal_handler`` routes signals through the loop's wakeup pipe, and the loop takes its handlers off
  only as it closes, *after* closing that pipe: a signal in between printed ``Exception ignored when trying to
  write to the signal wakeup fd ... Bad file descriptor``, and SIGINT was a KeyboardInterrupt again during the
  cleanup after the loop (the syslog listener then died of SIGINT, status -2).
- A first handler that set both signals to ``SIG_IGN`` made CPython report the second, already caught but not
  yet handled, as ``OSError: Signal 15 ignored due to race condition``.
- A Python handler is reset to the default as the interpreter finalizes, so a late SIGTERM killed a process
  mid-exit (status -15).

So the first signal runs the stop, later ones reach a Python handler that does nothing, and
``ignore_stop_signals`` (called last, as the process is about to exit) ignores both at the C level.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _ignore(signum, frame) -> None:
    """A signal after the first: stopping is already under way (a stuck process is for SIGKILL)."""


def on_stop_signal(stop: Callable[[], None]) -> None:
    """Call ``stop`` on the first SIGINT or SIGTERM, and nothing on the ones after it. Main thread only."""

    def first(signum, frame) -> None:
        for sig in STOP_SIGNALS:
            signal.signal(sig, _ignore)
        stop()

    for sig in STOP_SIGNALS:
        signal.signal(sig, first)


def stop_on_signals(event: asyncio.Event) -> None:
    """Set ``event`` (thread-safely, through the running loop) on the first SIGINT or SIGTERM. Call it from
    the running loop, in the main thread."""
    loop = asyncio.get_running_loop()

    def stop() -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nothing left to stop
            loop.call_soon_threadsafe(event.set)

    on_stop_signal(stop)


def ignore_stop_signals() -> None:
    """SIGINT and SIGTERM ignored at the C level from now on: call it last, as the process exits (the
    interpreter's finalization would put the default, fatal, handlers back)."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
