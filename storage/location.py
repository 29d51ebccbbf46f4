"""Where a deployment's data lives: the database URL and the cold tier's archive root.

The composition root resolves these from its full settings (file, environment, overrides);
notebooks and scripts that must not import it resolve them from the same ``AUDITWATCH_*``
environment variables with ``from_environ``. One rule, so both find the same store.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from storage.timescale.cluster import LocalCluster

DEFAULT_DATA_DIR = Path(".data")
DEFAULT_DB_PORT = 54329


def database_url(url: str, data_dir: Path, port: int = DEFAULT_DB_PORT) -> str:
    """The configured server, or the embedded cluster under the data directory."""
    return url or LocalCluster(data_dir, port=port).url


def archive_root(archive_url: str, data_dir: Path) -> str:
    """Where the cold tier lives: the configured URL, or a directory beside the embedded database."""
    return archive_url or str(data_dir / "archive")


@dataclass(frozen=True)
class Location:
    database_url: str
    archive_root: str
    read_database_url: str = ""  # a streaming replica (AUDITWATCH_READ_DATABASE_URL), empty without one

    @property
    def reads(self) -> str:
        """Where read-only work (notebooks, the data API) connects: the replica when there is one."""
        return self.read_database_url or self.database_url


def from_environ(environ: Mapping[str, str] | None = None) -> Location:
    """The store the ``AUDITWATCH_*`` variables point at (defaults: the embedded database of ``make up``)."""
    env = os.environ if environ is None else environ
    data_dir = Path(env.get("AUDITWATCH_DATA_DIR") or DEFAULT_DATA_DIR).expanduser().resolve()
    port = int(env.get("AUDITWATCH_DB_PORT") or DEFAULT_DB_PORT)
    return Location(database_url(env.get("AUDITWATCH_DATABASE_URL", ""), data_dir, port),
                    archive_root(env.get("AUDITWATCH_ARCHIVE_URL", ""), data_dir),
                    env.get("AUDITWATCH_READ_DATABASE_URL", ""))
