"""A throwaway PostgreSQL server for the storage contract suite (tests/test_storage.py).

:class:`PostgresServer` runs ``initdb`` and ``pg_ctl`` from the PostgreSQL server binaries
(on PATH, else Debian's ``/usr/lib/postgresql/<version>/bin``) in a temporary directory, on a
free TCP port of 127.0.0.1, with a superuser :data:`USER` whose password is :data:`PASSWORD`
(TCP logins need it: scram-sha-256). Running as root, the binaries run as the ``postgres``
OS user, since ``initdb`` refuses root. The server is stopped and its directory removed by
:meth:`PostgresServer.stop`, which is also registered with :mod:`atexit`.

The fixtures that use it live in ``tests/conftest.py``.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import importlib
import os
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

USER = "aiqc"
#: distinctive, so that a test can check it is never shown
PASSWORD = "s3cret-pw-4-aiqc"
HOST = "127.0.0.1"
#: the OS user that runs the server when the tests run as root
OS_USER = "postgres"

MISSING_BINARIES = ("PostgreSQL server binaries (initdb, pg_ctl) not found: install Debian's postgresql package "
                    "(apt-get install postgresql) to run the PostgreSQL half of the storage suite")
MISSING_PSYCOPG = "psycopg is not installed: pip install 'aiqc[postgres]' to run the PostgreSQL half of the storage suite"

_START_TIMEOUT_S = 60


def find_bin_dir() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``: PATH first, else the highest version under
    ``/usr/lib/postgresql/*/bin``; None when there is none."""
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl and Path(initdb).resolve().parent == Path(pg_ctl).resolve().parent:
        return Path(initdb).resolve().parent
    candidates = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")
                  if (Path(p).parent / "pg_ctl").is_file()]

    def version(folder: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", folder.parent.name)) or (0,)

    if candidates:
        return max(candidates, key=version)
    if initdb and pg_ctl:  # both on PATH, in different folders
        return Path(initdb).parent
    return None


def psycopg_available() -> bool:
    """Whether the ``psycopg`` (3) driver can be imported."""
    try:
        importlib.import_module("psycopg")
    except ImportError:
        return False
    return True


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _as_server_user(command: list[str]) -> list[str]:
    """``command`` run as :data:`OS_USER` when this process is root (``initdb`` refuses root)."""
    if os.geteuid() != 0:
        return command
    if shutil.which("runuser"):
        return ["runuser", "-u", OS_USER, "--", *command]
    return ["su", OS_USER, "-s", "/bin/sh", "-c", shlex.join(command)]


class PostgresServer:
    """One PostgreSQL server in a temporary directory: :meth:`start`, then :meth:`stop`.

    ``host``, ``port``, ``user`` and ``password`` say how to reach it; :meth:`url` gives the
    URL of one of its databases and :attr:`admin_url` that of the ``postgres`` database."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = Path(bin_dir)
        self.host, self.user, self.password = HOST, USER, PASSWORD
        self.port: int | None = None
        self.root: Path | None = None
        self._running = False

    # --- addresses -----------------------------------------------------------------------
    def url(self, dbname: str) -> str:
        """``postgresql://user:password@127.0.0.1:port/dbname``."""
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{dbname}"

    @property
    def admin_url(self) -> str:
        """The URL of the ``postgres`` maintenance database (to create and drop others)."""
        return self.url("postgres")

    @property
    def data_dir(self) -> Path:
        """The cluster's data directory."""
        assert self.root is not None, "start() first"
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        """The server's log."""
        assert self.root is not None, "start() first"
        return self.root / "server.log"

    # --- lifecycle -----------------------------------------------------------------------
    def _run(self, *command: str, timeout: float = 120) -> subprocess.CompletedProcess:
        full = _as_server_user([str(self.bin_dir / command[0]), *command[1:]])
        result = subprocess.run(full, capture_output=True, text=True, timeout=timeout, cwd=self.root)
        if result.returncode != 0:
            raise RuntimeError(f"{shlex.join(full)} exited with {result.returncode}:\n{result.stdout}\n"
                               f"{result.stderr}\n{self._log_tail()}")
        return result

    def _log_tail(self) -> str:
        try:
            return "server log:\n" + "\n".join(self.log_file.read_text(errors="replace").splitlines()[-30:])
        except (OSError, AssertionError):
            return ""

    def start(self) -> "PostgresServer":
        """Create the cluster and start the server on a free port; on failure, clean up and raise."""
        atexit.register(self.stop)
        try:
            self.root = Path(tempfile.mkdtemp(prefix="aiqc-pg-"))
            (self.root / "sock").mkdir()
            password_file = self.root / "pwfile"
            password_file.write_text(self.password + "\n")
            password_file.chmod(0o600)
            if os.geteuid() == 0:
                import pwd

                entry = pwd.getpwnam(OS_USER)
                for path in (self.root, self.root / "sock", password_file):
                    os.chown(path, entry.pw_uid, entry.pw_gid)
            self._run("initdb", "-D", str(self.data_dir), "-U", self.user, "--auth-host=scram-sha-256",
                      "--auth-local=trust", f"--pwfile={password_file}", "-E", "UTF8", "--no-locale", "--no-sync")
            password_file.unlink()
            error: Exception | None = None
            for _ in range(3):  # the free port may be taken between choosing it and binding it
                self.port = free_port()
                options = (f"-p {self.port} -k {self.root / 'sock'} -c listen_addresses={self.host} -c fsync=off "
                           "-c synchronous_commit=off -c full_page_writes=off -c max_connections=100")
                try:
                    self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_file), "-o", options,
                              "-w", "-t", str(_START_TIMEOUT_S), "start", timeout=_START_TIMEOUT_S + 30)
                except RuntimeError as caught:
                    error = caught
                    continue
                self._running = True
                return self
            raise RuntimeError(f"PostgreSQL server did not start: {error}")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the server (immediate mode) and remove its directory; safe to call twice."""
        try:
            if self._running:
                self._running = False
                full = _as_server_user([str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "immediate",
                                        "-w", "stop"])
                subprocess.run(full, capture_output=True, timeout=60, cwd=self.root)
        finally:
            if self.root is not None:
                shutil.rmtree(self.root, ignore_errors=True)
                self.root = None

    # --- databases -----------------------------------------------------------------------
    def create_database(self, name: str) -> str:
        """``CREATE DATABASE name``; its URL."""
        self._admin(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """``DROP DATABASE IF EXISTS name WITH (FORCE)`` (ends its open connections)."""
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=10) as connection:
            connection.execute(sql)


@contextlib.contextmanager
def running_server() -> Iterator[PostgresServer]:
    """A throwaway server for the block (bench/scale.py); raises RuntimeError with what to
    install when the binaries or psycopg are missing."""
    if not psycopg_available():
        raise RuntimeError(MISSING_PSYCOPG)
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise RuntimeError(MISSING_BINARIES)
    server = PostgresServer(bin_dir).start()
    try:
        yield server
    finally:
        server.stop()
