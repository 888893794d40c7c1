"""Throwaway MariaDB/MySQL servers: private datadir, port and socket, gone when the block ends.

    with throwaway_server() as dsn:
        q = mqlite.Queue(dsn)

The server binary comes from PATH or /usr/sbin (`mariadbd`, else `mysqld`). A server is stopped and
its datadir removed on exit, and it dies with the process that started it even if that process is
SIGKILLed (Linux parent-death signal), so an interrupted test run leaves no server behind; what such
a run leaves on disk (and any state-transfer helper still running there) is swept by the next start.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ..errors import MqliteError

if TYPE_CHECKING:
    from .certs import TlsFiles

_SEARCH = [os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin", "/usr/local/mysql/bin"]
_PREFIX = "mqlite-server-"
INSTALL_HINT = (
    "no MariaDB/MySQL server binary (mariadbd or mysqld) found: install one "
    "(Debian/Ubuntu: sudo apt-get install mariadb-server) or set MQLITE_DSN to an existing server"
)


class ServerError(MqliteError):
    """The throwaway server could not be found, initialised or started."""


def find_binary() -> tuple[str, str]:
    """('mariadb' | 'mysql', path of the server binary). Raises ServerError when there is none."""
    path = os.pathsep.join(_SEARCH)
    for name, kind in (("mariadbd", "mariadb"), ("mysqld", "mysql")):
        found = shutil.which(name, path=path)
        if found:
            # Debian's mysqld is a link to mariadbd; ask the binary what it is.
            if kind == "mysql" and "mariadb" in _version(found).lower():
                kind = "mariadb"
            return kind, found
    raise ServerError(INSTALL_HINT)


def _version(binary: str) -> str:
    try:
        return subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def _free_ports(n: int) -> list[int]:
    """`n` distinct ports free on 127.0.0.1 now (all held open together so none repeats)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port() -> int:
    """A port free on 127.0.0.1 now."""
    return _free_ports(1)[0]


def _die_with_parent() -> None:
    # PR_SET_PDEATHSIG: the kernel kills the server when the thread that started it dies.
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except OSError:
        pass


def _sweep_stale() -> None:
    """Remove datadirs left by runs whose Python process no longer exists (and what still runs there)."""
    for d in Path(tempfile.gettempdir()).glob(_PREFIX + "*"):
        try:
            owner = int((d / "owner.pid").read_text())
            os.kill(owner, 0)
        except ProcessLookupError:
            _kill_processes_using(d)
            shutil.rmtree(d, ignore_errors=True)
        except (OSError, ValueError):
            continue


def _kill_processes_using(directory: Path) -> None:
    """SIGKILL processes whose command line names `directory`: a server whose parent-death signal
    did not fire, or a Galera state-transfer helper (rsync daemon, socat) orphaned mid-transfer."""
    needle = str(directory).encode()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if needle in (proc / "cmdline").read_bytes():
                os.kill(int(proc.name), signal.SIGKILL)
        except (OSError, ValueError):
            continue


class ThrowawayServer:
    """A private MariaDB/MySQL server. `start()`, `kill()` (SIGKILL, datadir kept), `stop()` (and remove).

    `tls=True`: certificates made in its directory (a CA of its own, `tls.ca`, and a server
    certificate for `tls_hosts`); the server offers TLS and `dsn` asks for it (VERIFY_IDENTITY).
    """

    def __init__(
        self, *, extra_args: tuple[str, ...] = (), database: str = "test", tls: bool = False,
        tls_hosts: tuple[str, ...] = ("localhost", "127.0.0.1", "::1"),
    ) -> None:
        self.kind, self.binary = find_binary()
        self.extra_args = extra_args
        self.database = database
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix=_PREFIX))
        (self.root / "owner.pid").write_text(str(os.getpid()))
        self.datadir = self.root / "data"
        # A tmpdir of its own: a server starting deletes every `#sql…` file in its tmpdir as left
        # over from a crash, including the temporary tables of other servers sharing it (a
        # datadir initialised at the same time then fails, "Unknown table 'mysql.tmp_user_sys'").
        self.tmpdir = self.root / "tmp"
        self.socket = str(self.root / "mysqld.sock")
        self.log = self.root / "error.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._initialised = False
        atexit.register(self.stop)
        self.tls: TlsFiles | None = None  # the server's certificate and key, and the CA that signed them
        if tls:
            from .certs import CertificateAuthority

            (self.root / "tls").mkdir()
            ca = CertificateAuthority.create(self.root / "tls", f"mqlite throwaway server {self.port}")
            self.tls = ca.issue(self.root / "tls", "server", hosts=tls_hosts)

    @property
    def dsn(self) -> str:
        """root over TCP, with `ssl_mode=VERIFY_IDENTITY&ssl_ca=…` when the server has TLS."""
        base = f"mysql://root@127.0.0.1:{self.port}/{self.database}"
        if self.tls is None:
            return base
        return f"{base}?ssl_mode=VERIFY_IDENTITY&ssl_ca={quote(str(self.tls.ca))}"

    @property
    def ca_path(self) -> Path | None:
        """The CA certificate to verify this server with (None without TLS)."""
        return self.tls.ca if self.tls else None

    def _user_args(self) -> list[str]:
        return ["--user=root"] if os.geteuid() == 0 else []

    def _popen_kwargs(self) -> dict[str, Any]:
        """How to run the installer and the server (a subclass may run them as another user)."""
        return {}

    def _mkdir(self, path: Path) -> None:
        path.mkdir()

    def _initialise(self) -> None:
        self._mkdir(self.datadir)
        if self.kind == "mariadb":
            installer = shutil.which("mariadb-install-db", path=os.pathsep.join(_SEARCH)) or shutil.which(
                "mysql_install_db", path=os.pathsep.join(_SEARCH)
            )
            if not installer:
                raise ServerError("mariadb-install-db not found next to mariadbd (install mariadb-server)")
            cmd = [
                installer, "--no-defaults", f"--datadir={self.datadir}", "--auth-root-authentication-method=normal",
                "--skip-test-db", "--skip-name-resolve", *self._user_args(),
            ]
        else:
            cmd = [
                self.binary, "--no-defaults", "--initialize-insecure", f"--datadir={self.datadir}", *self._user_args()
            ]
        # The installer's bootstrap server takes its tmpdir from TMPDIR.
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "TMPDIR": str(self.tmpdir)}, **self._popen_kwargs())
        if done.returncode != 0:
            raise ServerError(f"initialising the datadir failed: {(done.stderr or done.stdout).strip()[-500:]}")
        self._initialised = True

    def start(self, timeout: float = 60.0) -> ThrowawayServer:
        """Start (or restart, on the same datadir and port) and wait until it accepts connections."""
        self._spawn()
        self._wait_ready(timeout)
        return self

    def _spawn(self, *more_args: str) -> None:
        if not self.tmpdir.exists():  # here, not in _initialise: a Galera joiner skips that
            self._mkdir(self.tmpdir)
        if not self._initialised:
            _sweep_stale()
            self._initialise()
        self.process = subprocess.Popen(
            self._command(*more_args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent, **self._popen_kwargs(),
        )

    def _command(self, *more_args: str) -> list[str]:
        cmd = [
            self.binary, "--no-defaults", f"--datadir={self.datadir}", f"--port={self.port}",
            f"--socket={self.socket}", "--bind-address=127.0.0.1", f"--pid-file={self.root / 'mysqld.pid'}",
            f"--log-error={self.log}", f"--tmpdir={self.tmpdir}", "--skip-name-resolve", "--max-connections=1000",
            "--innodb-buffer-pool-size=256M", "--max-allowed-packet=64M", *self._user_args(),
        ]
        if self.kind == "mysql":
            cmd.append("--mysqlx=OFF")
        if self.tls is not None:
            cmd += [f"--ssl-ca={self.tls.ca}", f"--ssl-cert={self.tls.cert}", f"--ssl-key={self.tls.key}"]
        cmd.extend(self.extra_args)
        cmd.extend(more_args)
        return cmd

    def _wait_ready(self, timeout: float) -> None:
        import MySQLdb

        deadline = time.monotonic() + timeout
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise ServerError(f"{self.binary} exited with {self.process.returncode}: {self._log_tail()}")
            try:
                conn = MySQLdb.connect(unix_socket=self.socket, user="root", connect_timeout=2)
            except MySQLdb.Error:
                conn = None
            if conn is not None:
                try:
                    if self._ready(conn):
                        return
                except MySQLdb.Error:
                    pass
                finally:
                    conn.close()
            if time.monotonic() > deadline:
                self.kill()
                raise ServerError(f"server did not become ready within {timeout:g}s: {self._log_tail()}")
            time.sleep(0.05)

    def _ready(self, conn: Any) -> bool:
        """Called with a root connection once the server accepts one: True when it is ready for use."""
        conn.cursor().execute(f"CREATE DATABASE IF NOT EXISTS `{self.database}`")
        return True

    def _log_tail(self, lines: int = 5) -> str:
        try:
            return " | ".join(self.log.read_text(errors="replace").strip().splitlines()[-lines:])
        except OSError:
            return "(no error log)"

    def kill(self) -> None:
        """SIGKILL the server (a crash); the datadir stays, so `start()` restarts it."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
        self.process = None

    def shut_down(self, timeout: float = 30.0) -> None:
        """SIGTERM the server and wait for it (SIGKILL after `timeout`); the datadir stays."""
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)

    def stop(self, timeout: float = 30.0) -> None:
        """Shut the server down and remove its datadir. Safe to call twice."""
        self.shut_down(timeout)
        shutil.rmtree(self.root, ignore_errors=True)
        atexit.unregister(self.stop)

    def __enter__(self) -> ThrowawayServer:
        return self.start() if self.process is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def throwaway_server(**kwargs: object) -> Iterator[str]:
    """Start a throwaway server, yield its DSN, stop and remove it on exit."""
    server = ThrowawayServer(**kwargs)  # type: ignore[arg-type]
    try:
        server.start()
        yield server.dsn
    finally:
        server.stop()


@contextmanager
def dsn_or_throwaway(dsn: str | None = None) -> Iterator[str]:
    """`dsn`, else `MQLITE_DSN`, else a throwaway server for the duration of the block."""
    dsn = dsn or os.environ.get("MQLITE_DSN")
    if dsn:
        yield dsn
        return
    print("mqlite: MQLITE_DSN not set, starting a throwaway server", file=sys.stderr)
    with throwaway_server() as fresh:
        yield fresh
