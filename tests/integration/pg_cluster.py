"""A PostgreSQL cluster of the test's own (initdb into a temporary folder, its own port), so a
test can crash and restart the server without touching the shared one on 5432."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest


def _bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgCluster:
    def __init__(self) -> None:
        initdb, self.pg_ctl = _bin("initdb"), _bin("pg_ctl")
        if initdb is None or self.pg_ctl is None:
            pytest.skip("initdb/pg_ctl not installed: cannot run a PostgreSQL cluster of our own")
        self.port = _free_port()
        # initdb refuses to run as root: the cluster then belongs to the postgres user, in a
        # folder that user can reach.
        self.user: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            try:
                self.user = pwd.getpwnam("postgres")
            except KeyError:
                pytest.skip("running as root without a postgres user for initdb")
        self.root = Path(tempfile.mkdtemp(prefix="tp-pgcrash-"))
        self.data = self.root / "data"
        if self.user is not None:
            os.chown(self.root, self.user.pw_uid, self.user.pw_gid)
        self._run([initdb, "-D", str(self.data), "-U", "postgres", "--auth=trust",
                   "--no-sync", "-E", "UTF8"])
        with open(self.data / "postgresql.conf", "a") as fh:
            fh.write(f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                     f"unix_socket_directories = '{self.root}'\nfsync = off\n"
                     "max_connections = 60\n")

    def _run(self, argv: list[str]) -> None:
        user = self.user

        def as_owner() -> None:
            if user is not None:
                os.setgid(user.pw_gid)
                os.setuid(user.pw_uid)

        res = subprocess.run(argv, capture_output=True, text=True, preexec_fn=as_owner,
                             cwd=self.root, timeout=120)
        if res.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} -> {res.returncode}\n{res.stdout}{res.stderr}")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/taskplan"

    def start(self) -> None:
        self._run([str(self.pg_ctl), "-D", str(self.data), "-l", str(self.root / "log"),
                   "-w", "-t", "60", "start"])

    def crash(self) -> None:
        """Stop like a power cut: no checkpoint, clients cut off, recovery at the next start."""
        self._run([str(self.pg_ctl), "-D", str(self.data), "-m", "immediate", "-w", "stop"])

    def create_database(self) -> None:
        import psycopg

        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres",
                             autocommit=True) as conn:
            conn.execute("CREATE DATABASE taskplan")

    def destroy(self) -> None:
        try:
            self._run([str(self.pg_ctl), "-D", str(self.data), "-m", "immediate", "-w", "stop"])
        except RuntimeError:
            pass  # not running
        shutil.rmtree(self.root, ignore_errors=True)
