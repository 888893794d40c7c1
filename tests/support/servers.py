"""Throwaway servers that refuse work: an unprivileged account on one, and one whose disk fills up."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from mqlite.testing import ThrowawayServer, admin_connection

APP_USER = "app"


def add_app_user(server: ThrowawayServer) -> str:
    """Create an account with every privilege on the server's database plus PROCESS (which
    recovery uses), but no SUPER and no READ_ONLY ADMIN, so `read_only` and `max_connections` hold
    for it as they do for an application; returns its DSN (TCP, no password)."""
    root = admin_connection(server.dsn)
    try:
        cur = root.cursor()
        cur.execute(f"CREATE USER IF NOT EXISTS '{APP_USER}'@'127.0.0.1'")
        cur.execute(f"GRANT ALL PRIVILEGES ON `{server.database}`.* TO '{APP_USER}'@'127.0.0.1'")
        cur.execute(f"GRANT PROCESS ON *.* TO '{APP_USER}'@'127.0.0.1'")
    finally:
        root.close()
    return f"mysql://{APP_USER}@127.0.0.1:{server.port}/{server.database}"


class SmallDiskServer(ThrowawayServer):
    """A throwaway server on a disk that fills up.

    Its datadir is a tmpfs of `size_mb` mounted here (needs root: mounting is a privileged
    operation); `fill()` then takes all but a few MB of it with a file of its own and `free()`
    gives that back. Where the mount is refused (not root, or no CAP_SYS_ADMIN in a container),
    the InnoDB system tablespace is capped instead (`innodb_data_file_path=…:autoextend:max:…`,
    the table inside it): the same error (1114, table full) from a logical limit instead of
    ENOSPC, for deletes too (their undo records live in that tablespace); `free()` then restarts
    the server with a larger cap.
    """

    def __init__(self, size_mb: int = 160, *, mount: bool = True, **kwargs: Any) -> None:
        super().__init__(extra_args=("--innodb-log-file-size=8M", "--innodb-buffer-pool-size=32M"), **kwargs)
        self.size_mb = size_mb
        self.mount = mount
        self.mounted = False
        self.why_not_mounted = ""
        self._filler: Path | None = None

    def _mkdir(self, path: Path) -> None:
        path.mkdir()
        if path != self.datadir:
            return
        if not self.mount:
            self.why_not_mounted = "asked not to mount"
        elif os.geteuid() != 0:
            self.why_not_mounted = "not root: mounting a tmpfs needs root"
        else:
            done = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={self.size_mb}m,mode=0700", "tmpfs", str(path)],
                capture_output=True, text=True, timeout=30,
            )
            self.mounted = done.returncode == 0
            self.why_not_mounted = "" if self.mounted else f"mount refused: {done.stderr.strip()[:200]}"
        if not self.mounted:
            self.extra_args = (*self.extra_args, "--innodb-file-per-table=OFF",
                               "--innodb-data-file-path=ibdata1:12M:autoextend:max:48M")

    def fill(self, leave_mb: int = 4) -> None:
        """Take all but `leave_mb` of the tmpfs (no-op on a capped tablespace, which fills by itself)."""
        if not self.mounted:
            return
        stat = os.statvfs(self.datadir)
        free = stat.f_bavail * stat.f_frsize
        self._filler = self.datadir / "filler"
        with open(self._filler, "wb") as f:
            chunk = b"\0" * (1 << 20)
            for _ in range(max(0, free - (leave_mb << 20)) >> 20):
                f.write(chunk)

    def free(self) -> None:
        """Give the space back: remove the filler from the tmpfs, or restart the server with its
        tablespace's cap raised (as an operator would; the cap is read at start only)."""
        if self._filler is not None:
            self._filler.unlink()
            self._filler = None
        if not self.mounted:
            self.extra_args = tuple(a.replace("max:48M", "max:256M") for a in self.extra_args)
            self.shut_down(timeout=60)
            self.start()

    def stop(self, timeout: float = 30.0) -> None:
        self.shut_down(timeout)
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.datadir)], capture_output=True, timeout=30)
            self.mounted = False
        super().stop(timeout)
