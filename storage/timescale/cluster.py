"""A project-local PostgreSQL + TimescaleDB cluster: initdb, start, stop, status.

PostgreSQL refuses to run as root, so when we are root the cluster runs as the
``postgres`` system user (created by Debian's postgresql package).
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from storage.errors import DatabaseUnavailable, ExtensionMissing

SUPERUSER = "auditwatch"
DATABASE = "auditwatch"  # literal in _create_database too
PG_VERSIONS = ("17", "16", "15")
INSTALLER = Path(__file__).resolve().parents[2] / "scripts" / "install-timescaledb.sh"

# Durable defaults for the embedded cluster; tests pass fast=True to trade durability for speed.
DURABLE_SETTINGS = {
    "shared_preload_libraries": "'timescaledb'",
    "listen_addresses": "''",
    "unix_socket_permissions": "0700",
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    "wal_level": "replica",
    "max_connections": "200",
    "shared_buffers": "512MB",
    "work_mem": "16MB",
    "maintenance_work_mem": "256MB",
    "max_wal_size": "4GB",
    "checkpoint_timeout": "15min",
    "timescaledb.telemetry_level": "off",
    "timescaledb.max_background_workers": "8",
    "max_worker_processes": "24",
    "log_min_messages": "warning",
    "logging_collector": "off",
}
FAST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off", "shared_buffers": "256MB"}


def find_bindir() -> Path | None:
    """The bin directory of the newest PostgreSQL that has the timescaledb extension installed."""
    for version in PG_VERSIONS:
        bindir = Path(f"/usr/lib/postgresql/{version}/bin")
        if (bindir / "postgres").exists() and Path(
            f"/usr/share/postgresql/{version}/extension/timescaledb.control"
        ).exists():
            return bindir
    return None


def ensure_installed(*, install: bool = True) -> Path:
    """Find PostgreSQL with TimescaleDB, running the project's installer when it is missing."""
    bindir = find_bindir()
    if bindir is None and install:
        subprocess.run(["bash", str(INSTALLER)], check=True)
        bindir = find_bindir()
    if bindir is None:
        raise ExtensionMissing(
            "No PostgreSQL with the timescaledb extension was found. Run "
            f"`bash {INSTALLER}` (as root), or set AUDITWATCH_DATABASE_URL to an existing TimescaleDB server."
        )
    return bindir


@dataclass
class LocalCluster:
    """A cluster under ``data_dir`` listening only on a unix socket in ``data_dir/run``."""

    data_dir: Path
    port: int = 54329
    fast: bool = False

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pg"

    @property
    def socket_dir(self) -> Path:
        return self.data_dir / "run"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "postgres.log"

    @property
    def url(self) -> str:
        return f"postgresql://{SUPERUSER}@/{DATABASE}?host={self.socket_dir}&port={self.port}"

    def url_for(self, dbname: str, user: str = SUPERUSER) -> str:
        """``user`` the owner (the superuser that migrates, archives and signs) or a role of roles.sql."""
        return f"postgresql://{user}@/{dbname}?host={self.socket_dir}&port={self.port}"

    # -- lifecycle ---------------------------------------------------------------------------

    def up(self, *, install: bool = True) -> None:
        """Install if needed, initialise if new, and start if stopped. Idempotent."""
        bindir = ensure_installed(install=install)
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb(bindir)
        if not self.is_running():
            self._start(bindir)
        self._create_database(bindir)

    def down(self) -> None:
        if not self.is_running():
            return
        bindir = self._bindir_of_cluster()
        self._run([str(bindir / "pg_ctl"), "-D", str(self.pgdata), "-m", "fast", "-w", "stop"])

    def is_running(self) -> bool:
        pidfile = self.pgdata / "postmaster.pid"
        if not pidfile.exists():
            return False
        try:
            pid = int(pidfile.read_text().splitlines()[0])
            os.kill(pid, 0)
        except (ValueError, IndexError, ProcessLookupError):
            return False
        except PermissionError:
            return True
        return True

    def destroy(self) -> None:
        self.down()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    # -- internals -----------------------------------------------------------------------------

    def _bindir_of_cluster(self) -> Path:
        version = (self.pgdata / "PG_VERSION").read_text().strip()
        return Path(f"/usr/lib/postgresql/{version}/bin")

    def _owner(self) -> pwd.struct_passwd | None:
        """The account the server runs as: ``postgres`` when we are root, else ourselves."""
        if os.geteuid() != 0:
            return None
        try:
            return pwd.getpwnam("postgres")
        except KeyError as exc:
            raise DatabaseUnavailable(
                "PostgreSQL cannot run as root and there is no `postgres` user: "
                "install Debian's postgresql package or run as an ordinary user."
            ) from exc

    def _run(self, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
        owner = self._owner()
        if owner is not None:
            argv = ["runuser", "-u", owner.pw_name, "--", *argv]
        proc = subprocess.run(argv, capture_output=True, text=True, **kwargs)
        if proc.returncode != 0:
            raise DatabaseUnavailable(
                f"`{' '.join(argv)}` failed ({proc.returncode}):\n{proc.stderr.strip() or proc.stdout.strip()}\n"
                f"See {self.log_file} for the server's log."
            )
        return proc

    def _prepare_dirs(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        owner = self._owner()
        if owner is None:
            return
        for path in (self.data_dir, self.socket_dir):
            os.chown(path, owner.pw_uid, owner.pw_gid)
        # The server user must be able to reach the data directory: grant search (not read)
        # on each ancestor that lacks it, as a mkdtemp'd checkout would.
        for parent in self.data_dir.resolve().parents:
            mode = parent.stat().st_mode
            if not mode & stat.S_IXOTH:
                os.chmod(parent, mode | stat.S_IXOTH)

    def _initdb(self, bindir: Path) -> None:
        self._prepare_dirs()
        self._run(
            [
                str(bindir / "initdb"),
                "-D",
                str(self.pgdata),
                "-U",
                SUPERUSER,
                "--auth-local=trust",
                "--auth-host=reject",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ]
        )
        settings = dict(DURABLE_SETTINGS)
        if self.fast:
            settings.update(FAST_SETTINGS)
        settings["port"] = str(self.port)
        settings["unix_socket_directories"] = f"'{self.socket_dir}'"
        conf = "\n".join(f"{k} = {v}" for k, v in settings.items())
        auto = self.pgdata / "postgresql.auto.conf"
        with open(auto, "a") as fh:
            fh.write(f"\n# written by auditwatch\n{conf}\n")

    def _start(self, bindir: Path) -> None:
        self._prepare_dirs()
        log = self.log_file
        if not log.exists():
            log.touch()
        owner = self._owner()
        if owner is not None:
            os.chown(log, owner.pw_uid, owner.pw_gid)
        self._run(
            [str(bindir / "pg_ctl"), "-D", str(self.pgdata), "-l", str(log), "-w", "-t", "60", "start"]
        )

    def _create_database(self, bindir: Path) -> None:
        psql = [str(bindir / "psql"), "-h", str(self.socket_dir), "-p", str(self.port), "-U", SUPERUSER]
        for _ in range(50):
            probe = subprocess.run(
                [*psql, "-d", "postgres", "-tAc", "SELECT 1 FROM pg_database WHERE datname = 'auditwatch'"],
                capture_output=True,
                text=True,
            )
            if probe.returncode == 0:
                break
            time.sleep(0.1)
        else:
            raise DatabaseUnavailable(f"the local server did not accept connections; see {self.log_file}")
        if probe.stdout.strip() != "1":
            subprocess.run([*psql, "-d", "postgres", "-c", "CREATE DATABASE auditwatch"], check=True,
                           capture_output=True)
