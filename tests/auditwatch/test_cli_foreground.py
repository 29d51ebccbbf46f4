"""Ctrl-C on `make up`: make must end with status 0 after `up` has shut down cleanly.

A real GNU make runs under a real pseudo-terminal (its own session, the pty as controlling
terminal), and Ctrl-C is typed into the terminal: the line discipline sends SIGINT to whatever group
is in the foreground. The recipe is a stand-in for `auditwatch up` that uses the same
``foreground_group`` and exits 0 on KeyboardInterrupt, as `up` does after its clean shutdown; the
whole platform is not needed to show what make does with the signal.
"""

from __future__ import annotations

import fcntl
import os
import select
import shutil
import subprocess
import sys
import termios
import time
from pathlib import Path

from tests.conftest import ROOT

STAND_IN = """
import sys, time
from auditwatch.cli.foreground import foreground_group
take = sys.argv[1] == "take"
def wait():
    try:  # "ready" is printed inside: the test types Ctrl-C the moment it reads it, often before print returns
        print("ready", flush=True)
        time.sleep(60)
    except KeyboardInterrupt:
        print("clean shutdown", flush=True)
        sys.exit(0)
if take:
    with foreground_group() as moved:
        print("foreground", moved, flush=True)
        wait()
else:
    wait()
"""


def _make_under_a_terminal(tmp_path: Path, mode: str) -> tuple[int, str]:
    script = tmp_path / "standin.py"
    script.write_text(STAND_IN)
    makefile = tmp_path / "Makefile"
    makefile.write_text(f"up:\n\t{sys.executable} {script} {mode}\n")
    master, slave = os.openpty()

    def controlling_terminal() -> None:  # runs in the child after setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    # A person typing `make up` at a terminal, not a make nested in `make test` (its MAKEFLAGS carry the outer
    # make's jobserver and MAKELEVEL changes what make prints and does).
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}
    env["PYTHONPATH"] = str(ROOT)
    make = subprocess.Popen([shutil.which("make") or "make", "-f", str(makefile), "up"], stdin=slave, stdout=slave,
                            stderr=slave, cwd=tmp_path, env=env, start_new_session=True,
                            preexec_fn=controlling_terminal)
    os.close(slave)
    output = b""

    def read_until(marker: bytes, timeout: float) -> None:
        nonlocal output
        deadline = time.monotonic() + timeout
        while marker not in output and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    output += os.read(master, 4096)
                except OSError:
                    return

    try:
        read_until(b"ready", 60)
        assert b"ready" in output, output.decode(errors="replace")
        os.write(master, b"\x03")  # Ctrl-C, typed
        make.wait(30)
        read_until(b"\n\n", 1)
    finally:
        if make.poll() is None:
            make.kill()
            make.wait()
        os.close(master)
    return make.returncode, output.decode(errors="replace")


def test_ctrl_c_under_make_ends_with_status_0_when_up_takes_the_foreground(tmp_path):
    status, output = _make_under_a_terminal(tmp_path, "take")
    assert "foreground True" in output and "clean shutdown" in output, output
    assert status == 0, output
    assert "Interrupt" not in output and "Error" not in output, output


def test_without_the_foreground_make_dies_of_the_signal(tmp_path):
    # The control: the same stand-in, staying in make's group, exits 0 too; make still fails.
    status, output = _make_under_a_terminal(tmp_path, "stay")
    assert "clean shutdown" in output, output
    assert status != 0, output
