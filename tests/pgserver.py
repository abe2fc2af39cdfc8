"""A throw-away PostgreSQL server for the tests and the ledger benchmark (no fixtures here).

`PgServer` runs `initdb` and `pg_ctl` from the PostgreSQL binaries on the machine into a
temporary directory and listens on 127.0.0.1 at a free port (no unix socket), with trust
authentication: it is a test server that only this machine can reach and that is deleted
afterwards. PostgreSQL refuses to run as root, so as root the server runs as an unprivileged
user (`postgres` when the package created it, else a `costguard-pg` system user made with
`useradd`); its folder is owned by that user.

The binaries are found on PATH, else in the newest `/usr/lib/postgresql/<version>/bin`
(Debian), else in `COSTGUARD_TEST_PG_BIN`. `.ci/run` installs Debian's `postgresql` package
when none is found.
"""

from __future__ import annotations

import atexit
import contextlib
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

SERVICE_USER = "costguard-pg"
"""The user made (as root) when the machine has no `postgres` user."""


class PgUnavailableError(RuntimeError):
    """PostgreSQL cannot be started here; the message says why."""


def find_bindir() -> Path:
    """The folder holding `initdb`, `pg_ctl` and `postgres`.

    Raises:
        PgUnavailableError: none is installed.
    """
    candidates: list[Path] = []
    if os.environ.get("COSTGUARD_TEST_PG_BIN"):
        candidates.append(Path(os.environ["COSTGUARD_TEST_PG_BIN"]))
    found = shutil.which("pg_ctl")
    if found:
        candidates.append(Path(found).resolve().parent)
    debian = Path("/usr/lib/postgresql")
    versions = debian.glob("*/bin") if debian.is_dir() else []
    newest = sorted(versions, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    candidates.extend(reversed(newest))
    for folder in candidates:
        if all((folder / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return folder
    msg = (
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found on PATH or in "
        "/usr/lib/postgresql/*/bin; install them (Debian: apt-get install postgresql) or set "
        "COSTGUARD_TEST_PG_BIN"
    )
    raise PgUnavailableError(msg)


def _service_user() -> pwd.struct_passwd | None:
    """The user the server runs as: None when not root (it runs as us)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", SERVICE_USER):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    done = subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        msg = f"cannot create the user {SERVICE_USER} to run PostgreSQL as: {done.stderr.strip()}"
        raise PgUnavailableError(msg)
    return pwd.getpwnam(SERVICE_USER)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PgServer:
    """One PostgreSQL cluster in a temporary folder: `start()`, `url()`, `restart()`, `stop()`."""

    def __init__(self, *, fast: bool = True) -> None:
        """Prepare (nothing runs yet); `fast` turns fsync off, as a test server may."""
        self.bindir = find_bindir()
        self.user = _service_user()
        self.fast = fast
        self.root = Path(tempfile.mkdtemp(prefix="costguard-pg-"))
        self.root.chmod(0o755)
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = 0
        if self.user is not None:
            os.chown(self.root, self.user.pw_uid, self.user.pw_gid)
        atexit.register(self.destroy)  # no server outlives a test run that did not clean up

    # -- running the tools as the service user ---------------------------------------------

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, object] = {}
        if self.user is not None:
            kwargs = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LC_ALL": "C",
            "LANG": "C",
            "HOME": str(self.root),
        }
        return subprocess.run(
            [str(self.bindir / args[0]), *args[1:]],
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
            cwd=self.root,
            env=env,
            **kwargs,  # type: ignore[call-overload]
        )

    def _check(self, done: subprocess.CompletedProcess[str], what: str) -> None:
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            msg = f"{what} failed ({done.returncode}): {done.stderr.strip()[-2000:]}\n{log}"
            raise PgUnavailableError(msg)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> PgServer:
        """initdb (first time) and start the server; wait until it accepts connections."""
        if not self.data.exists():
            self._check(
                self._run(
                    "initdb",
                    "-D",
                    str(self.data),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                ),
                "initdb",
            )
        for attempt in range(5):
            self.port = self.port or free_port()
            options = (
                f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories='' "
                "-c max_connections=200 -c shared_buffers=32MB"
            )
            if self.fast:
                # Commits still reach the WAL before they return (synchronous_commit stays on),
                # so a server killed with `-m immediate` keeps them, as tests that crash it expect.
                options += " -c fsync=off -c full_page_writes=off"
            done = self._run(
                "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start"
            )
            if done.returncode == 0:
                return self
            if attempt == 4 or "already in use" not in self.log.read_text(errors="replace"):
                self._check(done, "pg_ctl start")
            self.port = 0
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (`fast`: roll back and disconnect; `immediate`: as if it crashed)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self, mode: str = "fast", pause: float = 0.0) -> None:
        """Stop and start again on the same port, `pause` seconds apart."""
        self.stop(mode)
        time.sleep(pause)
        self.start()

    def destroy(self) -> None:
        """Stop the server and delete its folder (once; later calls do nothing)."""
        if not self.root.exists():
            return
        if (self.data / "postmaster.pid").exists():
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    # -- databases -------------------------------------------------------------------------

    def url(self, database: str = "postgres") -> str:
        """`postgresql://postgres@127.0.0.1:PORT/DATABASE`."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def admin(self, sql: str) -> None:
        """Run one statement outside a transaction as the superuser."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    def create_database(self, prefix: str = "cg") -> str:
        """A new empty database; return its URL."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        self.admin(f'CREATE DATABASE "{name}" TEMPLATE template0 STRATEGY file_copy')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drop the database of `url`, disconnecting whoever still uses it."""
        name = url.rsplit("/", 1)[1]
        self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def running(*, fast: bool = True) -> Iterator[PgServer]:
    """A started server, destroyed afterwards."""
    server = PgServer(fast=fast)
    try:
        yield server.start()
    finally:
        server.destroy()
