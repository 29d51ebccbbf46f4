"""`up`'s shutdown leaves nothing behind: a component killed for overrunning its stop budget before it stopped
its own children (a gunicorn master and its workers) does not leave them running (seen: a worker outlived `up`
by more than 30 s)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[2]

# Runs in its own process: becoming a subreaper must not change the test runner itself.
SCRIPT = textwrap.dedent("""
    import json, subprocess, sys, time
    from auditwatch.cli import shutdown

    subreaper = shutdown.become_subreaper()
    # A "master" that starts a "worker", and both ignore SIGTERM: the master must be killed, which orphans
    # the worker, and the worker must then be killed too.
    master = subprocess.Popen([sys.executable, "-c", '''
    import signal, subprocess, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    worker = subprocess.Popen([sys.executable, "-c",
                               "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
    print(worker.pid, flush=True)
    time.sleep(600)
    '''], stdout=subprocess.PIPE, text=True)
    worker = int(master.stdout.readline())
    started = time.monotonic()
    orphans = shutdown.stop([master], budget=1.0, orphan_budget=1.0)
    print(json.dumps({"subreaper": subreaper, "worker": worker, "orphans": orphans,
                      "seconds": time.monotonic() - started, "master": master.returncode}))
""")


def _alive(pid: int) -> bool:
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_an_orphaned_worker_of_a_killed_component_is_stopped_too():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    result = orjson.loads(done.stdout.strip().splitlines()[-1])
    assert result["subreaper"] is True
    assert result["master"] == -9  # it overran its budget and was killed
    assert result["orphans"] == [result["worker"]]  # its worker was adopted, not left to init ...
    time.sleep(0.2)
    assert not _alive(result["worker"])  # ... and stopped (it ignores SIGTERM: killed after its budget)
    assert result["seconds"] < 10  # bounded: 1 s for the master, 1 s for the orphan, and slack for a busy machine


STUBBORN = textwrap.dedent("""
    import json, logging, signal, subprocess, sys, time
    from auditwatch.cli import shutdown

    logging.basicConfig(level=logging.WARNING)

    class Unkillable(subprocess.Popen):
        # What `up` met on a loaded CI machine: a killed worker not yet gone 5 s later (its SIGKILL is
        # withheld here, the one way to make a process outlast it on purpose).
        def kill(self):
            pass

    hangs = Unkillable([sys.executable, "-c",
                        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
    after = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    time.sleep(0.5)
    started = time.monotonic()
    shutdown.stop([hangs, after], budget=1.0, kill_wait=1.0, orphan_budget=1.0)
    print(json.dumps({"seconds": time.monotonic() - started, "after": after.poll(), "hangs": hangs.pid}))
""")


def test_a_component_that_outlasts_its_kill_does_not_cut_the_shutdown_short():
    """Stopping goes on with the other components (and, under `up`, the database) instead of ending in a
    traceback; the orphan sweep then kills the process for real."""
    done = subprocess.run([sys.executable, "-c", STUBBORN], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    result = orjson.loads(done.stdout.strip().splitlines()[-1])
    assert "was killed but has not exited after 1 s more; going on" in done.stderr
    assert result["after"] == -15  # the next component was still stopped
    assert not _alive(result["hangs"])  # and the stubborn one was killed by the sweep of what is left
    assert result["seconds"] < 15


STUCK = textwrap.dedent("""
    import json, logging, subprocess, sys, time
    from auditwatch.cli import shutdown

    logging.basicConfig(level=logging.WARNING)
    # A component stuck where its SIGTERM handler never gets to run (here: SIGTERM ignored, asleep in a named
    # function), as the worker was when CI saw only "did not stop within 45 s".
    stuck = subprocess.Popen([sys.executable, "-c", '''
    import signal, time
    from auditwatch.cli import shutdown
    shutdown.dump_stacks_on_signal()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    def waiting_for_a_job_that_never_ends():
        time.sleep(600)
    print("ready", flush=True)
    waiting_for_a_job_that_never_ends()
    '''], stdout=subprocess.PIPE, text=True)
    assert stuck.stdout.readline().strip() == "ready"
    shutdown.stop([stuck], budget=1.0, kill_wait=5.0, orphan_budget=1.0)
    print(json.dumps({"code": stuck.returncode}))
""")


def test_a_component_that_overruns_its_stop_budget_has_its_stacks_logged_before_it_is_killed():
    done = subprocess.run([sys.executable, "-c", STUCK], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert orjson.loads(done.stdout.strip().splitlines()[-1]) == {"code": -9}
    assert "its threads' stacks follow" in done.stderr
    # faulthandler's dump, from the stuck process's own stderr: where it was.
    assert "most recent call first" in done.stderr and "waiting_for_a_job_that_never_ends" in done.stderr, \
        done.stderr
