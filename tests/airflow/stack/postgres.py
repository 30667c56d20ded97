"""A throwaway PostgreSQL cluster on 127.0.0.1 for the Airflow metadata database of the stack tests.

Airflow's scheduler, dag-processor, triggerer, api-server and task runners all write the metadata database at
once; on SQLite they take turns on one file lock (the CLI then fails with "database is locked" and the REST API
stalls). PostgreSQL is the database Airflow documents for that, and the one a deployment runs on.
Debian's ``postgresql`` package provides the binaries (``make postgresql`` installs it). PostgreSQL refuses to
run as root: as root, the cluster belongs to the ``postgres`` user the package creates.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import free_port


def server_binaries() -> Path:
    """The folder holding ``initdb`` and ``pg_ctl``: Debian keeps them out of PATH, under /usr/lib/postgresql/N/bin."""
    for candidate in [shutil.which("pg_ctl"), *sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)]:
        if candidate:
            return Path(candidate).resolve().parent
    raise FileNotFoundError(
        "PostgreSQL's pg_ctl is neither in PATH nor under /usr/lib/postgresql: run `make postgresql`"
    )


def _run_as_owner(*command) -> None:
    """Run a PostgreSQL command as the cluster's owner: ``postgres`` when we are root, else ourselves."""
    command = [str(part) for part in command]
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    subprocess.run(command, check=True, capture_output=True, text=True)


@contextlib.contextmanager
def postgres_server(database: str = "airflow") -> Iterator[str]:
    """Start a cluster with trust authentication on 127.0.0.1 only; yield its SQLAlchemy URL; stop and delete it."""
    binaries, port = server_binaries(), free_port()
    # Not under pytest's tmp_path: that is 0700 root's, and the postgres user must reach its data folder.
    folder = Path(tempfile.mkdtemp(prefix="airflow-postgres-"))
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(folder, owner.pw_uid, owner.pw_gid)
    data, log = folder / "data", folder / "server.log"
    try:
        _run_as_owner(binaries / "initdb", "--auth=trust", "--username=airflow", "--encoding=UTF8", "-D", data)
        settings = f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} -c fsync=off -c max_connections=200"
        _run_as_owner(binaries / "pg_ctl", "start", "--wait", "-D", data, "-l", log, "-o", settings)
        try:
            _run_as_owner(binaries / "createdb", "-h", "127.0.0.1", "-p", port, "-U", "airflow", database)
            yield f"postgresql+psycopg2://airflow@127.0.0.1:{port}/{database}"
        finally:
            _run_as_owner(binaries / "pg_ctl", "stop", "--wait", "-m", "fast", "-D", data)
    except subprocess.CalledProcessError as failure:
        server_log = log.read_text() if log.exists() else ""
        raise RuntimeError(f"{' '.join(failure.cmd)} failed:\n{failure.stderr}{server_log[-3000:]}") from failure
    finally:
        shutil.rmtree(folder, ignore_errors=True)
