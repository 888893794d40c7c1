"""MariaDB Galera on loopback: a multi-primary cluster of throwaway servers, one datadir per node.

    with GaleraCluster(nodes=3) as cluster:
        q = mqlite.Queue(cluster.dsns[0])       # or cluster.dsn: all nodes, for failover
        cluster.kill(1)                          # SIGKILL node 1 (0-based)
        cluster.start_node(1)                    # rejoin, wait until Synced

Used by mqlite's own cluster tests and `python -m mqlite.bench.cluster_bench`; `galera_missing()`
says why a cluster cannot run here (for a skip reason).
"""

from __future__ import annotations

import atexit
import os
import pwd
import re
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .server import _SEARCH, ServerError, ThrowawayServer, _die_with_parent, _free_ports, find_binary

# Where Debian/Ubuntu (galera-4), RHEL-likes and MariaDB's own packages put the Galera provider.
GALERA_PROVIDERS = (
    "/usr/lib/galera/libgalera_smm.so",
    "/usr/lib/galera-4/libgalera_smm.so",
    "/usr/lib64/galera-4/libgalera_smm.so",
    "/usr/lib64/galera/libgalera_smm.so",
)
GALERA_HINT = "Debian/Ubuntu: sudo apt-get install mariadb-server galera-4 rsync"
# Galera nodes must not run as root: the rsync state transfer's daemon drops to another user and
# then cannot read a root-owned datadir ("Permission denied"). As root we run them as this account.
GALERA_USER = "mysql"


def galera_provider() -> str | None:
    """Path of the Galera provider library (`MQLITE_GALERA_PROVIDER`, else the usual places), or None."""
    for path in (os.environ.get("MQLITE_GALERA_PROVIDER"), *GALERA_PROVIDERS):
        if path and os.path.isfile(path):
            return path
    return None


def galera_missing() -> str | None:
    """Why a GaleraCluster cannot run here (for a test's skip reason), or None when it can.

    Needs MariaDB's server, the Galera provider, rsync (state transfer), and either root with a
    `mysql` account to run the nodes as, or any other user (the nodes then run as that user)."""
    if not sys.platform.startswith("linux"):
        return "the Galera test cluster needs Linux"
    try:
        kind, binary = find_binary()
    except ServerError as e:
        return str(e)
    if kind != "mariadb":
        return f"{binary} is not MariaDB; a Galera cluster needs MariaDB's server ({GALERA_HINT})"
    if galera_provider() is None:
        return f"no Galera provider library (libgalera_smm.so in {', '.join(GALERA_PROVIDERS)}): {GALERA_HINT}"
    for tool in ("rsync", "wsrep_sst_rsync"):
        if not shutil.which(tool, path=os.pathsep.join(_SEARCH)):
            return f"no {tool} for Galera's state transfer: {GALERA_HINT}"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(GALERA_USER)
        except KeyError:
            return (
                f"running as root and there is no '{GALERA_USER}' account to run the Galera nodes as "
                "(the rsync state transfer fails for servers running as root)"
            )
        blocked = _not_traversable(Path(tempfile.gettempdir()))
        if blocked:
            return f"{blocked} is not traversable by the '{GALERA_USER}' account: set TMPDIR=/tmp"
    return None


def galera_available() -> bool:
    """True when a GaleraCluster can run here (see `galera_missing()` for why not)."""
    return galera_missing() is None


def _not_traversable(path: Path) -> Path | None:
    """The first directory from / to `path` that other users cannot enter, or None."""
    for d in [*reversed(path.resolve().parents), path.resolve()]:
        try:
            if not d.stat().st_mode & stat.S_IXOTH:
                return d
        except OSError:
            return d
    return None


class GaleraNode(ThrowawayServer):
    """One node of a `GaleraCluster`: a throwaway server with the wsrep settings, in its own session
    (process group) so that a kill also takes its state-transfer helpers, and run as the `mysql`
    account when we are root (its directory chowned to it)."""

    def __init__(self, cluster: GaleraCluster, index: int, ports: list[int]) -> None:
        super().__init__(database=cluster.database)
        self.index = index
        self.name = f"node{index + 1}"
        self.port, self.galera_port, self.ist_port, self.sst_port = ports
        self._account = cluster.account
        if self._account is not None:
            os.chown(self.root, *self._account)
        provider_options = ";".join(
            [
                "base_host=127.0.0.1",
                f"base_port={self.galera_port}",
                f"gmcast.listen_addr=tcp://127.0.0.1:{self.galera_port}",
                f"ist.recv_addr=127.0.0.1:{self.ist_port}",
                "gcache.size=64M",
                *cluster.provider_options,
            ]
        )
        self.extra_args = (
            "--wsrep-on=ON",
            f"--wsrep-provider={cluster.provider}",
            f"--wsrep-cluster-name={cluster.name}",
            f"--wsrep-cluster-address={cluster.address}",
            f"--wsrep-node-name={self.name}",
            f"--wsrep-node-address=127.0.0.1:{self.galera_port}",
            f"--wsrep-node-incoming-address=127.0.0.1:{self.port}",
            f"--wsrep-provider-options={provider_options}",
            "--wsrep-sst-method=rsync",
            f"--wsrep-sst-receive-address=127.0.0.1:{self.sst_port}",
            "--binlog-format=ROW",
            "--innodb-autoinc-lock-mode=2",
            "--default-storage-engine=InnoDB",
            "--innodb-buffer-pool-size=128M",
            *cluster.extra_args,
        )

    def _user_args(self) -> list[str]:
        return []  # run as the account directly (see _popen_kwargs), never with --user=root

    def _popen_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"start_new_session": True}
        if self._account is not None:
            kwargs.update(user=self._account[0], group=self._account[1], extra_groups=[])
        return kwargs

    def _mkdir(self, path: Path) -> None:
        path.mkdir()
        if self._account is not None:
            os.chown(path, *self._account)

    def status(self) -> dict[str, str]:
        """The node's `wsrep_%` status variables (raises MySQLdb.Error when it does not answer)."""
        import MySQLdb

        conn = MySQLdb.connect(unix_socket=self.socket, user="root", connect_timeout=2)
        try:
            return _wsrep_status(conn)
        finally:
            conn.close()

    def _ready_database(self) -> None:
        import MySQLdb

        conn = MySQLdb.connect(unix_socket=self.socket, user="root", connect_timeout=5)
        try:
            conn.cursor().execute(f"CREATE DATABASE IF NOT EXISTS `{self.database}`")
        finally:
            conn.close()

    def _ready(self, conn: Any) -> bool:
        status = _wsrep_status(conn)
        return status.get("wsrep_ready") == "ON" and status.get("wsrep_local_state_comment") == "Synced"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the node and its helpers (its process group); the datadir stays."""
        if self.process is not None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait(timeout=30)
        self.process = None

    def recovered_position(self, timeout: float = 120.0) -> str | None:
        """After a crash (`seqno: -1` in grastate.dat), the position the node's own data has reached,
        found as systemd's galera_recovery does (`--wsrep-recover`, which also runs the local crash
        recovery), or None when the node is not crashed or nothing was recovered.

        Rejoining from there is an IST from a donor's gcache instead of a full rsync SST, which
        blocks writes on the donor while it copies, and which here also keeps a stale
        ddl_recovery.log that the SST does not replace: a node killed in the middle of applying a
        CREATE TABLE would drop, once rejoined, the table the SST had just brought."""
        try:
            state = (self.datadir / "grastate.dat").read_text()
        except OSError:
            return None
        if not re.search(r"^seqno:\s*-1\s*$", state, re.M):
            return None
        log = self.root / "recover.log"
        log.unlink(missing_ok=True)
        done = subprocess.run(
            self._command("--wsrep-recover", f"--log-error={log}"), stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, timeout=timeout, preexec_fn=_die_with_parent, **self._popen_kwargs(),
        )
        try:
            found = re.findall(r"WSREP: Recovered position:\s*(\S+:-?\d+)", log.read_text(errors="replace"))
        except OSError:
            found = []
        if done.returncode != 0 or not found or found[-1].endswith(":-1"):
            return None
        return str(found[-1])

    def stop(self, timeout: float = 30.0) -> None:
        """Kill the node and remove its directory (a cluster's data is not worth a clean shutdown)."""
        self.kill()
        shutil.rmtree(self.root, ignore_errors=True)
        atexit.unregister(self.stop)


def _wsrep_status(conn: Any) -> dict[str, str]:
    cur = conn.cursor()
    cur.execute("SHOW GLOBAL STATUS LIKE 'wsrep%'")
    return {str(k): v.decode() if isinstance(v, bytes) else str(v) for k, v in cur.fetchall()}


class GaleraCluster:
    """A MariaDB Galera cluster of `nodes` throwaway servers on 127.0.0.1 (multi-primary, synchronous).

    Each node has its own datadir, client port, Galera port, IST port and SST port, all picked free;
    the nodes run as the `mysql` account when we are root. State transfer is rsync (mariabackup is
    not part of Debian's mariadb-server). Nodes are numbered from 0 in the API (`node1` in their
    `wsrep_node_name`). Every node has `root@127.0.0.1` without a password and the database `test`.

    What tells the nodes apart, for node-qualified ownership: `@@wsrep_node_name` (node1…),
    `@@port`; `@@server_id` (1) and `@@hostname` are the same on every node, as in many real
    deployments. `extra_args` go on every node's command line; Galera provider options go in
    `provider_options` (a second `--wsrep-provider-options` would replace the harness's own).
    A crashed node (`kill(i)`) rejoins by IST from its recovered position (`start_node(i)`); a
    node's first join is a full rsync SST, during which the donor blocks its writes (~1-4 s here).
    """

    def __init__(
        self,
        nodes: int = 3,
        *,
        database: str = "test",
        extra_args: tuple[str, ...] = (),
        provider_options: tuple[str, ...] = (),
    ) -> None:
        missing = galera_missing()
        if missing:
            raise ServerError(missing)
        if nodes < 1:
            raise ValueError("a cluster needs at least one node")
        self.database = database
        self.extra_args = extra_args
        self.provider_options = provider_options
        self.provider = galera_provider()
        # A name of its own, so a node can never join another run's cluster through a reused port.
        self.name = f"mqlite-{secrets.token_hex(4)}"
        self.account: tuple[int, int] | None = None
        if os.geteuid() == 0:
            pw = pwd.getpwnam(GALERA_USER)
            self.account = (pw.pw_uid, pw.pw_gid)
        ports = _free_ports(4 * nodes)
        self.address = "gcomm://" + ",".join(f"127.0.0.1:{ports[4 * i + 1]}" for i in range(nodes))
        self.nodes: list[GaleraNode] = []
        try:
            for i in range(nodes):
                self.nodes.append(GaleraNode(self, i, ports[4 * i : 4 * i + 4]))
        except BaseException:
            self.stop()
            raise
        atexit.register(self.stop)

    @property
    def dsns(self) -> list[str]:
        """One DSN per node: `mysql://root@127.0.0.1:PORT/test`."""
        return [node.dsn for node in self.nodes]

    @property
    def dsn(self) -> str:
        """All nodes in one DSN (`mysql://root@127.0.0.1:P1,127.0.0.1:P2,…/test`), for failover."""
        hosts = ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)
        return f"mysql://root@{hosts}/{self.database}"

    def start(self, timeout: float = 180.0) -> GaleraCluster:
        """Bootstrap node 0, join the others, wait until all are Synced in one cluster of n nodes."""
        deadline = time.monotonic() + timeout
        try:
            first = self.nodes[0]
            first._spawn("--wsrep-new-cluster")
            first._wait_ready(_left(deadline))
            first._ready_database()
            for node in self.nodes[1:]:
                # A joiner's datadir is filled by the state transfer: no need to initialise it.
                node._mkdir(node.datadir)
                node._initialised = True
                node._spawn()
            for node in self.nodes[1:]:
                node._wait_ready(_left(deadline))
            self.wait_synced(_left(deadline))
        except BaseException as e:
            logs = self.log_tails()
            self.stop()
            if isinstance(e, ServerError):
                raise ServerError(f"Galera cluster did not form (timeout {timeout:g}s): {e}\n{logs}") from e
            raise
        return self

    def wait_synced(self, timeout: float = 60.0) -> None:
        """Wait until every running node is Synced and sees a cluster of all the running nodes."""
        deadline = time.monotonic() + timeout
        while True:
            running = [n for n in self.nodes if n.running]
            try:
                statuses = [n.status() for n in running]
            except Exception:
                statuses = []
            if statuses and all(
                s.get("wsrep_ready") == "ON"
                and s.get("wsrep_local_state_comment") == "Synced"
                and s.get("wsrep_cluster_size") == str(len(running))
                and s.get("wsrep_cluster_status") == "Primary"
                for s in statuses
            ):
                return
            if time.monotonic() > deadline:
                raise ServerError(
                    f"the running nodes ({', '.join(n.name for n in running)}) were not all Synced "
                    f"in one cluster within {timeout:g}s: {self.describe()}\n{self.log_tails()}"
                )
            time.sleep(0.1)

    def kill(self, i: int) -> None:
        """SIGKILL node i (a crash); its datadir stays for `start_node(i)`."""
        self.nodes[i].kill()

    def start_node(self, i: int, timeout: float = 120.0) -> None:
        """(Re)start node i: it rejoins the running nodes (or bootstraps alone when none runs) and
        is Synced, with every running node seeing the new cluster size, when this returns."""
        node = self.nodes[i]
        if node.running:
            return
        deadline = time.monotonic() + timeout
        others = [n for n in self.nodes if n is not node and n.running]
        position = node.recovered_position(_left(deadline))
        start_from = (f"--wsrep-start-position={position}",) if position else ()
        if others:
            node._spawn(*start_from)
        else:
            _mark_safe_to_bootstrap(node.datadir)
            node._spawn("--wsrep-new-cluster", *start_from)
        try:
            node._wait_ready(_left(deadline))
            self.wait_synced(_left(deadline))
        except ServerError as e:
            raise ServerError(f"{node.name} did not rejoin within {timeout:g}s: {e}\n{self.log_tails()}") from e

    def describe(self) -> str:
        """One line per node: running or not, state, cluster size (for error messages)."""
        parts = []
        for n in self.nodes:
            if not n.running:
                parts.append(f"{n.name}: down")
                continue
            try:
                s = n.status()
                parts.append(f"{n.name}: {s.get('wsrep_local_state_comment')} size={s.get('wsrep_cluster_size')}")
            except Exception as e:
                parts.append(f"{n.name}: not answering ({e})")
        return "; ".join(parts)

    def log_tails(self, lines: int = 8) -> str:
        return "\n".join(f"  {n.name} ({n.log}): {n._log_tail(lines)}" for n in self.nodes)

    def stop(self) -> None:
        """Kill every node and remove their directories. Safe to call twice."""
        for node in self.nodes:
            node.stop()
        atexit.unregister(self.stop)

    def __enter__(self) -> GaleraCluster:
        return self.start() if not any(n.running for n in self.nodes) else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _left(deadline: float) -> float:
    return max(deadline - time.monotonic(), 0.1)


def _mark_safe_to_bootstrap(datadir: Path) -> None:
    """After a crash Galera refuses to bootstrap from a node (`safe_to_bootstrap: 0`): this node is
    the only one left, so it is the most advanced one by definition."""
    state = datadir / "grastate.dat"
    try:
        text = state.read_text()
    except OSError:
        return
    state.write_text(re.sub(r"safe_to_bootstrap:\s*0", "safe_to_bootstrap: 1", text))
