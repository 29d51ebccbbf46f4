"""A hot standby of a project-local cluster on loopback: ``pg_basebackup`` of the primary, then streaming
replication, with the same Debian PostgreSQL binaries as the primary (storage/timescale/cluster.py).

For tests and for trying the read replica on one machine (docs/scaling.md); a production replica is made the
same way on its own host (``pg_basebackup -R``), or is a managed service's read replica.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from storage.errors import DatabaseUnavailable
from storage.timescale.cluster import DATABASE, SUPERUSER, LocalCluster


@dataclass
class LocalStandby(LocalCluster):
    """A standby of ``primary`` under ``data_dir``, answering on 127.0.0.1:``port`` and its own socket."""

    primary: LocalCluster | None = None
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        return self.url_for(DATABASE)

    def url_for(self, dbname: str, user: str = SUPERUSER) -> str:
        return f"postgresql://{user}@{self.host}:{self.port}/{dbname}"

    def up(self, *, install: bool = True) -> None:
        """Copy the primary (once) and start streaming from it. Idempotent."""
        if self.primary is None:
            raise DatabaseUnavailable("a standby needs its primary: LocalStandby(primary=LocalCluster(...))")
        if not (self.pgdata / "PG_VERSION").exists():
            self._basebackup()
        if not self.is_running():
            self._start(self._bindir_of_cluster())

    def _basebackup(self) -> None:
        primary = self.primary
        assert primary is not None
        self._prepare_dirs()
        bindir = primary._bindir_of_cluster()
        # -R writes standby.signal and primary_conninfo (the primary's unix socket); -X stream copies the WAL
        # written during the copy, so the standby starts consistent.
        self._run([str(bindir / "pg_basebackup"), "-d", self._primary_conninfo(), "-D", str(self.pgdata),
                   "-R", "-X", "stream", "-c", "fast"])
        # The copy carries the primary's own address settings: this server listens elsewhere.
        settings = {"port": str(self.port), "unix_socket_directories": f"'{self.socket_dir}'",
                    "listen_addresses": f"'{self.host}'", "hot_standby": "on",
                    "hot_standby_feedback": "on", "max_standby_streaming_delay": "30s",
                    "primary_conninfo": f"'{self._primary_conninfo()}'"}
        with open(self.pgdata / "postgresql.auto.conf", "a") as fh:
            fh.write("\n# written by auditwatch (standby)\n" + "\n".join(f"{k} = {v}" for k, v in settings.items())
                     + "\n")
        # The primary's pg_hba.conf rejects TCP; the standby takes loopback connections (its only address).
        # First match wins, so the line goes on top.
        hba = self.pgdata / "pg_hba.conf"
        hba.write_text(f"# written by auditwatch (standby): loopback only\nhost all all {self.host}/32 trust\n"
                       + hba.read_text())

    def _primary_conninfo(self) -> str:
        primary = self.primary
        assert primary is not None
        return (f"host={primary.socket_dir} port={primary.port} user={SUPERUSER} "
                f"application_name=auditwatch-standby-{self.port}")

    def wait_for(self, dbname: str, timeout: float = 60.0) -> None:
        """Until ``dbname`` (created on the primary) has replayed here and accepts connections."""
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.url_for(dbname), connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise DatabaseUnavailable(f"{dbname} did not reach the standby within {timeout:.0f} s: {exc}; "
                                              f"see {self.log_file}") from exc
                time.sleep(0.1)
