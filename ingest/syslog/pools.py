"""A process pool whose worker died must be able to shut down (standard library only: tests load it in other
interpreters).

CPython before 3.11.5 (Debian 12 ships 3.11.2) has gh-94777: when a worker of a ``ProcessPoolExecutor`` dies
while a task is being written to the pool's call queue (a syslog batch is large, so this is likely), the queue's
feeder thread stays blocked writing to a pipe nobody reads any more, because this process still holds the pipe's
reading end. The pool's manager thread waits for the feeder for ever, and so does the interpreter when it exits:
``auditwatch syslog --processes N`` stopped, stored everything, and then never exited. Later versions close that
reading end when the pool breaks, which ends the write with an error; ``release_broken`` does the same on the
versions that do not.
"""

from __future__ import annotations

import contextlib
import sys
from concurrent.futures import Executor

FIXED_IN = (3, 11, 5)  # the fix of gh-94777 (cpython PR 94784), backported to 3.11.5 and 3.12


def release_broken(executor: Executor) -> bool:
    """Close the reading end of a broken process pool's call queue where Python does not; True if it did.

    Only on affected versions: later ones close it in the pool's own thread, and closing it twice from two threads
    could close a descriptor number already reused for something else.
    """
    if sys.version_info >= FIXED_IN:
        return False
    reader = getattr(getattr(executor, "_call_queue", None), "_reader", None)
    if reader is None:
        return False
    with contextlib.suppress(OSError):
        reader.close()
    return True
