"""Fixtures of berth's Python tests: a throwaway PostgreSQL cluster (initdb in a temporary folder,
a free port, torn down after), dlt pipelines in temporary folders, and a package maker."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator, List

import pytest

# dlt's anonymous telemetry posts to the internet from a thread that Python joins at exit: with no
# network (CI) that join waited on DNS for as long as its retries took. Tests never phone home.
os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"

REPO = Path(__file__).resolve().parents[2]


def _pg_bin() -> Path:
    try:
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True)
        if (Path(out.stdout.strip()) / "initdb").exists():
            return Path(out.stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        pass
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("PostgreSQL server binaries not found: apt-get install postgresql (scripts/test does)")
    return Path(found[-1]).parent


class PgCluster:
    """A PostgreSQL server of this test session only (user ``berth``, trust authentication)."""

    def __init__(self) -> None:
        self.bin = _pg_bin()
        self.dir = Path(tempfile.mkdtemp(prefix="berth-py-pg-"))
        self.as_postgres = os.geteuid() == 0
        if self.as_postgres:
            # initdb refuses to run as root: the cluster belongs to the postgres user.
            subprocess.run(["chown", "-R", "postgres:postgres", str(self.dir)], check=True)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        data = self.dir / "data"
        self._run("initdb", "-A", "trust", "-U", "berth", "-E", "UTF8", "--no-sync", "-D", str(data))
        with open(data / "postgresql.conf", "a") as conf:
            conf.write("\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\n")
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"
        self._run("pg_ctl", "-w", "-t", "60", "-D", str(data), "-l", str(self.dir / "server.log"), "-o", options, "start")
        self._databases = 0

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bin / program), *args]
        if self.as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True)

    def new_database(self) -> str:
        """A fresh database; returns its URL (the password is never checked: trust)."""
        self._databases += 1
        name = f"db{self._databases}"
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "berth", name)
        return f"postgresql://berth:unused-secret@127.0.0.1:{self.port}/{name}"

    def drop_database(self, url: str) -> None:
        """Drops a database `new_database` made (long random hunts make thousands)."""
        self._run("dropdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "berth", "--force", "--if-exists", url.rsplit("/", 1)[1])

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-w", "-D", str(self.dir / "data"), "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def pg() -> Iterator[PgCluster]:
    cluster = PgCluster()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(pg: PgCluster) -> str:
    return pg.new_database()


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with its own dlt data folder (pipelines, ~/.dlt) and no DESTINATION__
    settings leaking in from the environment."""
    for key in list(os.environ):
        if key.startswith(("DESTINATION__", "PG", "BERTH_")) or "__DESTINATION__" in key:
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "dlt-data"))
    monkeypatch.setenv("RUNTIME__LOG_LEVEL", "WARNING")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def copy_quickstart(into: Path) -> Path:
    """A copy of the README's quickstart package (loading moves its jobs)."""
    target = into / "packages"
    shutil.copytree(REPO / "testdata" / "quickstart" / "packages", target)
    return target


def job_files(package: Path, folder: str) -> List[str]:
    return sorted(os.listdir(package / folder)) if (package / folder).is_dir() else []
