"""Take the terminal's foreground for ``auditwatch up``, so Ctrl-C reaches it and not ``make``.

Ctrl-C sends SIGINT to the terminal's foreground process group. Under ``make up`` that group holds
make too, and GNU make answers SIGINT by dying of it ("make: *** [up] Interrupt", status 130) even
after ``up`` has shut everything down cleanly and exited 0. Like a shell's job control, ``up`` moves
itself (and so every component it starts) into a process group of its own and makes that group the
terminal's foreground; make then sees only its child exit 0. The previous group gets the terminal back
on the way out.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator


@contextlib.contextmanager
def foreground_group() -> Iterator[bool]:
    """Yields True when this process now leads the terminal's foreground group; False (and changes
    nothing) without a controlling terminal, in a background job, or where the move is refused."""
    try:
        tty = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        yield False
        return
    previous = os.getpgrp()
    moved = False
    try:
        if os.tcgetpgrp(tty) == previous:  # only a foreground job may take the terminal
            try:
                os.setpgid(0, 0)
                _set_foreground(tty, os.getpgrp())
                moved = True
            except OSError:
                pass
        yield moved
    finally:
        if moved:
            with contextlib.suppress(OSError):
                _set_foreground(tty, previous)
        os.close(tty)


def _set_foreground(tty: int, group: int) -> None:
    # A process outside the foreground group that calls tcsetpgrp gets SIGTTOU unless it ignores it.
    old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    try:
        os.tcsetpgrp(tty, group)
    finally:
        signal.signal(signal.SIGTTOU, old)
