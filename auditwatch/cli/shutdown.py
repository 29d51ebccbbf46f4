"""Stopping ``auditwatch up``'s components so that none outlives it, in bounded time.

Each component may have children of its own: gunicorn's master has its workers. If a master is killed (it
overran its stop budget) before it stops its workers, they are orphaned and, by default, adopted by init,
where ``up`` can no longer see them: a worker once outlived ``up`` by more than 30 s. So ``up`` makes itself
the "child subreaper" of everything it starts (Linux ``PR_SET_CHILD_SUBREAPER``): orphans are re-parented to
it instead, and ``stop`` ends and reaps them after the components, within a fixed budget.
"""

from __future__ import annotations

import contextlib
import ctypes
import faulthandler
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>
PROC = Path("/proc")
# Asks a component for the stack of every thread (``kill -s RTMIN+1 PID``; not SIGUSR1/2, which gunicorn uses).
DUMP_SIGNAL = signal.SIGRTMIN + 1


def dump_stacks_on_signal() -> None:
    """Write every thread's stack to stderr on ``DUMP_SIGNAL``, even while the main thread is stuck in C code
    (faulthandler). Long-running components call it first; ``stop`` uses it on one that overruns its budget, so
    the log says where it was stuck (a CI run once printed only that the worker "did not stop within 45 s")."""
    try:  # the process's own stderr (fd 2): under click's test runner sys.stderr has no file descriptor
        faulthandler.register(DUMP_SIGNAL, file=sys.__stderr__, all_threads=True, chain=False)
    except (AttributeError, ValueError, OSError):  # no usable stderr (closed, or none at all): no dumps
        pass


def _catches(pid: int, sig: int, proc: Path = PROC) -> bool:
    """Whether ``pid`` handles ``sig`` (``SigCgt`` in /proc): a real-time signal nobody handles terminates."""
    try:
        for line in (proc / str(pid) / "status").read_text().splitlines():
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    except (OSError, ValueError):
        pass
    return False


def _descendants(pid: int, proc: Path = PROC) -> list[int]:
    found, todo = [], [pid]
    while todo:
        for child in children_of(todo.pop(), proc):
            found.append(child)
            todo.append(child)
    return found


def become_subreaper() -> bool:
    """Adopt the orphans of every process started from now on (True where the kernel supports it).

    Call it after starting the embedded database: its postmaster is orphaned by ``pg_ctl`` on purpose, and
    must not become ours to stop.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def children_of(pid: int, proc: Path = PROC) -> list[int]:
    """The live (not zombie) processes whose parent is ``pid``, from /proc."""
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # it exited while we looked
        state, ppid = stat[stat.rindex(")") + 2:].split()[:2]
        if int(ppid) == pid and state != "Z":
            found.append(int(entry.name))
    return found


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _reap() -> None:
    """Collect every exited child (adopted orphans included), so none lingers as a zombie."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def stop(children: Sequence[subprocess.Popen], *, budget: float = 45.0, orphan_budget: float = 5.0,
         kill_wait: float = 15.0, dump_wait: float = 1.0,
         clock: Callable[[], float] = time.monotonic) -> list[int]:
    """SIGTERM the components, wait for them within ``budget`` seconds (gunicorn's own graceful stop takes up
    to 30 s) and kill what is left; then SIGTERM the orphans they left behind, and SIGKILL those still there
    after ``orphan_budget``. A killed component gets ``kill_wait`` seconds to go. Returns the orphans that had
    to be stopped."""
    for child in reversed(children):
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = clock() + budget
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - clock()))
        except subprocess.TimeoutExpired:
            asked = [pid for pid in (child.pid, *_descendants(child.pid))  # a gunicorn master's workers too
                     if _catches(pid, DUMP_SIGNAL)]
            log.warning("component %s did not stop within %.0f s: killed%s", child.args, budget,
                        f"; its threads' stacks follow (pids {asked})" if asked else "")
            for pid in asked:
                _signal(pid, DUMP_SIGNAL)
            if asked:
                time.sleep(dump_wait)
            child.kill()
            try:
                # Normally at once; a loaded machine once took longer than 5 s to tear a killed worker down.
                child.wait(timeout=kill_wait)
            except subprocess.TimeoutExpired:
                # Stopping goes on (the other components, the database): a traceback here ended `up` with the
                # database still running. The kernel ends the process; it is reaped below or by init.
                log.error("component %s (pid %d) was killed but has not exited after %.0f s more; going on",
                          child.args, child.pid, kill_wait)
    orphans = children_of(os.getpid())
    if orphans:
        log.warning("stopping %d process(es) left behind by the components: %s", len(orphans), orphans)
        for pid in orphans:
            _signal(pid, signal.SIGTERM)
        deadline = clock() + orphan_budget
        while clock() < deadline:
            _reap()
            if not children_of(os.getpid()):
                break
            time.sleep(0.05)
        for pid in children_of(os.getpid()):
            _signal(pid, signal.SIGKILL)
        deadline = clock() + orphan_budget
        while clock() < deadline and children_of(os.getpid()):
            _reap()
            time.sleep(0.05)
    _reap()
    return orphans
