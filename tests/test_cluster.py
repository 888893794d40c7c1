"""A 3-node MariaDB Galera cluster on loopback (mqlite.testing.galera.GaleraCluster), and why mqlite's
ownership must name the node: in raw SQL, sessions on two nodes with the same CONNECTION_ID()
read each other's claims, and PROCESSLIST only shows the sessions of the node it is asked on.

One cluster serves the whole session (the `galera` fixture); `cluster_dsns` gives each test its own
database on it. Run alone with `make test-cluster` (pytest -m cluster).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from pathlib import Path

import MySQLdb
import pytest

from mqlite.testing.galera import galera_missing
from mqlite.testing.server import _sweep_stale

from .conftest import admin_connection, rows
from .helpers import python, read_line, wait_for

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.slow,
    pytest.mark.skipif(galera_missing() is not None, reason=f"no Galera cluster here: {galera_missing()}"),
]

# The shape of mqlite's table, reduced to what the reproduction needs.
MESSAGES = """
CREATE TABLE messages (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    queue VARCHAR(191) NOT NULL,
    owner BIGINT UNSIGNED NOT NULL DEFAULT 0,
    body VARBINARY(255) NOT NULL,
    KEY ready (queue, id),
    KEY owner (owner)
) ENGINE=InnoDB
"""
# The claim of the optimistic pop, as mqlite ran it on a single server.
CLAIM = "UPDATE messages SET owner = CONNECTION_ID() WHERE queue = %s AND owner = 0 ORDER BY id LIMIT 1"
MINE = "SELECT id, body FROM messages WHERE owner = CONNECTION_ID()"
DEADLOCK = 1213  # ER_LOCK_DEADLOCK: how Galera reports a certification conflict


def connection_id(conn: MySQLdb.Connection) -> int:
    return int(rows(conn, "SELECT CONNECTION_ID()")[0][0])


def test_cluster_forms_and_a_write_on_node_1_is_read_on_nodes_2_and_3(galera, cluster_dsns) -> None:
    statuses = [node.status() for node in galera.nodes]
    assert [s["wsrep_cluster_size"] for s in statuses] == ["3", "3", "3"]
    assert {s["wsrep_local_state_comment"] for s in statuses} == {"Synced"}
    assert len({s["wsrep_cluster_state_uuid"] for s in statuses}) == 1
    assert [s["wsrep_provider_name"] for s in statuses] == ["Galera"] * 3
    conns = [admin_connection(dsn) for dsn in cluster_dsns]
    try:
        names = [rows(c, "SELECT @@wsrep_node_name")[0][0] for c in conns]
        assert names == ["node1", "node2", "node3"]
        conns[0].cursor().execute(MESSAGES)
        conns[0].cursor().execute("INSERT INTO messages (queue, body) VALUES ('jobs', 'written on node 1')")
        for c in conns[1:]:
            # Galera applies a write set on the other nodes just after the commit returns on the first.
            wait_for(
                lambda c=c: rows(c, "SELECT body FROM messages") == [(b"written on node 1",)],
                timeout=30, what="the write on the other node",
            )
    finally:
        for c in conns:
            c.close()


def test_a_killed_node_leaves_a_cluster_of_2_and_rejoins_with_what_it_missed(galera, cluster_dsns) -> None:
    """SIGKILL node 1 (the one that bootstrapped): the other two go on as a cluster of 2; restarted,
    node 1 rejoins them (it does not bootstrap a cluster of its own) and receives the writes it missed."""
    setup = admin_connection(cluster_dsns[1])
    setup.cursor().execute(MESSAGES)
    try:
        galera.kill(0)
        galera.wait_synced(60)  # the survivors have evicted it
        assert [galera.nodes[i].status()["wsrep_cluster_size"] for i in (1, 2)] == ["2", "2"]
        setup.cursor().execute("INSERT INTO messages (queue, body) VALUES ('jobs', 'while node 1 was down')")
    finally:
        galera.start_node(0)
        setup.close()
    assert [node.status()["wsrep_cluster_size"] for node in galera.nodes] == ["3", "3", "3"]
    assert len({node.status()["wsrep_cluster_state_uuid"] for node in galera.nodes}) == 1
    back = admin_connection(cluster_dsns[0])
    try:
        assert rows(back, "SELECT body FROM messages") == [(b"while node 1 was down",)]
    finally:
        back.close()


def _equal_connection_ids(dsn_a: str, dsn_b: str, timeout: float = 60.0) -> tuple[MySQLdb.Connection, MySQLdb.Connection]:
    """One session on each node with the same CONNECTION_ID(): each node numbers its sessions on its
    own, upwards, so reconnecting on the node whose id is lower brings the two together."""
    a, b = admin_connection(dsn_a), admin_connection(dsn_b)
    deadline = time.monotonic() + timeout
    reconnects = 0
    while time.monotonic() < deadline:
        id_a, id_b = connection_id(a), connection_id(b)
        if id_a == id_b:
            return a, b
        reconnects += 1
        if id_a < id_b:
            a.close()
            a = admin_connection(dsn_a)
        else:
            b.close()
            b = admin_connection(dsn_b)
    a.close()
    b.close()
    raise AssertionError(f"no equal connection ids on the two nodes after {reconnects} reconnections in {timeout:g}s")


def test_equal_connection_ids_on_two_nodes_read_each_others_claims(cluster_dsns) -> None:
    """The double delivery that equal session ids on two nodes cause, in raw SQL: the bug exists on a
    cluster, so mqlite's ownership must name the node as well as the session."""
    setup = admin_connection(cluster_dsns[0])
    setup.cursor().execute(MESSAGES)
    setup.cursor().execute("INSERT INTO messages (queue, body) VALUES ('jobs', 'm1'), ('jobs', 'm2'), ('jobs', 'm3')")
    first_id = rows(setup, "SELECT MIN(id) FROM messages")[0][0]
    node1, node2 = _equal_connection_ids(cluster_dsns[0], cluster_dsns[1])
    try:
        session = connection_id(node1)
        assert connection_id(node2) == session
        wait_for(lambda: rows(node2, "SELECT COUNT(*) FROM messages") == [(3,)], timeout=30, what="rows on node 2")

        # Node 1's session claims the head of the queue and reads back what it owns.
        assert node1.cursor().execute(CLAIM, ("jobs",)) == 1
        assert rows(node1, MINE) == [(first_id, b"m1")]

        # Node 2's session, with the same id, has claimed nothing, and yet reads m1 as its own
        # once the write set is applied there: m1 would be handed to a second consumer.
        wait_for(lambda: rows(node2, MINE) == [(first_id, b"m1")], timeout=30, what="node 2 to read node 1's claim")

        # The same through the whole pop on node 2: its own claim takes m2, and its read-back
        # returns m1 too. Both sessions now hold m1.
        assert node2.cursor().execute(CLAIM, ("jobs",)) == 1
        assert sorted(rows(node2, MINE)) == [(first_id, b"m1"), (first_id + _step(node2), b"m2")]
        assert rows(node1, MINE)[0] == (first_id, b"m1")

        # PROCESSLIST is per node too: node 2 does not list node 1's session. Asked from node 2, the
        # only session with that id is the one asking (its INFO is this very query); same on node 1.
        whose = f"SELECT INFO FROM information_schema.PROCESSLIST WHERE ID = {session} /* asked on %s */"
        assert rows(node2, whose % "node 2") == [(whose % "node 2",)]
        assert rows(node1, whose % "node 1") == [(whose % "node 1",)]

        # So when node 2's session goes away, recovery by PROCESSLIST run on node 2 takes node 1's
        # live claim (its session is still connected, on node 1) for an orphan.
        node2.close()
        observer = admin_connection(cluster_dsns[1])
        orphans = "SELECT id FROM messages m WHERE owner <> 0 AND owner NOT IN (SELECT ID FROM information_schema.PROCESSLIST)"
        try:
            looks_dead = wait_for(lambda: rows(observer, orphans), timeout=30, what="node 2 to lose its session")
        finally:
            observer.close()
        assert (first_id,) in looks_dead
        assert connection_id(node1) == session  # node 1's session is alive and still owns m1
        assert rows(node1, MINE)[0] == (first_id, b"m1")
    finally:
        for conn in (node1, node2, setup):
            with contextlib.suppress(MySQLdb.Error):
                conn.close()


def _step(conn: MySQLdb.Connection) -> int:
    # Galera sets auto_increment_increment to the cluster size: ids of one insert are that far apart.
    return int(rows(conn, "SELECT @@auto_increment_increment")[0][0])


def _naive_claims(dsns: list[str], queue: str, clients: int, seconds: float) -> dict[str, float]:
    """`clients` threads, spread round-robin over `dsns`, each looping the naive claim (UPDATE … LIMIT 1,
    autocommit) then DELETE of what it claimed, for `seconds`. Counts 1213s per statement."""
    counts: Counter[str] = Counter()
    lock = threading.Lock()
    stop = threading.Event()
    failures: list[BaseException] = []
    start = threading.Barrier(clients + 1, timeout=60)

    def client(i: int) -> None:
        mine: Counter[str] = Counter()
        try:
            conn = admin_connection(dsns[i % len(dsns)])
            token = 1_000_000 + i  # an owner no session id reaches: what is claimed is this thread's
            cur = conn.cursor()
            start.wait()
            while not stop.is_set():
                try:
                    claimed = cur.execute(
                        "UPDATE messages SET owner = %s WHERE queue = %s AND owner = 0 ORDER BY id LIMIT 1", (token, queue)
                    )
                except MySQLdb.OperationalError as e:
                    if e.args[0] != DEADLOCK:
                        raise
                    mine["claim_1213"] += 1
                    continue
                if not claimed:
                    mine["empty"] += 1
                    continue
                while True:
                    try:
                        cur.execute("DELETE FROM messages WHERE queue = %s AND owner = %s", (queue, token))
                        break
                    except MySQLdb.OperationalError as e:
                        if e.args[0] != DEADLOCK:
                            raise
                        mine["delete_1213"] += 1
                mine["done"] += 1
            conn.close()
        except BaseException as e:  # noqa: BLE001 - reported by the test
            failures.append(e)
            try:
                start.abort()
            except threading.BrokenBarrierError:
                pass
        finally:
            with lock:
                counts.update(mine)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    began = time.monotonic()
    # The measurement window: a bounded wait on an event nothing sets, not a synchronisation.
    stop.wait(seconds)
    stop.set()
    window = time.monotonic() - began
    for t in threads:
        t.join(timeout=60)
    elapsed = time.monotonic() - began
    assert not failures, failures[:3]
    assert not any(t.is_alive() for t in threads)
    conflicts = counts["claim_1213"] + counts["delete_1213"]
    statements = 2 * counts["done"] + counts["claim_1213"] + counts["delete_1213"] + counts["empty"]
    return {
        "done": counts["done"],
        "per_s": counts["done"] / elapsed,
        "claim_1213": counts["claim_1213"],
        "delete_1213": counts["delete_1213"],
        "conflicts_per_1000_done": 1000 * conflicts / max(counts["done"], 1),
        "conflict_share_of_statements": conflicts / max(statements, 1),
        "empty": counts["empty"],
        "seconds": elapsed,
        "drain": elapsed - window,  # from the end of the window until the last statement returned
    }


def _cert_counters(dsns: list[str]) -> Counter[str]:
    """Galera's own counters, summed over the nodes: certification failures and brute-force aborts
    (both include the conflicts that wsrep_retry_autocommit retried without the client seeing them),
    and the time flow control paused replication (appliers behind)."""
    total: Counter[str] = Counter()
    for dsn in dsns:
        conn = admin_connection(dsn)
        status = dict(rows(conn, "SHOW GLOBAL STATUS WHERE Variable_name IN "
                           "('wsrep_local_cert_failures', 'wsrep_local_bf_aborts', 'wsrep_flow_control_paused_ns')"))
        conn.close()
        total.update({k: int(v) for k, v in status.items()})
    return total


def test_certification_conflicts_of_the_naive_claim_3_writer_nodes_vs_1(cluster_dsns) -> None:
    """64 clients doing UPDATE … LIMIT 1 + DELETE for ~5 s, spread over 3 writer nodes, then all on node 1.
    Prints the figures recorded in bench/CLUSTER.md (run with -s to see them)."""
    clients, seconds, per_queue = 64, 5.0, 30_000
    setup = admin_connection(cluster_dsns[0])
    setup.cursor().execute(MESSAGES)
    for queue in ("spread", "single"):
        for _ in range(per_queue // 5000):
            setup.cursor().execute(
                "INSERT INTO messages (queue, body) SELECT %s, 'x' FROM "
                "(SELECT seq FROM seq_1_to_5000) s", (queue,)
            )
    setup.close()
    for dsn in cluster_dsns[1:]:
        conn = admin_connection(dsn)
        wait_for(lambda conn=conn: rows(conn, "SELECT COUNT(*) FROM messages") == [(2 * per_queue,)],
                 timeout=60, what="the rows on every node")
        conn.close()

    results = {}
    for name, queue, dsns in (("3 writer nodes", "spread", cluster_dsns), ("1 writer node", "single", cluster_dsns[:1])):
        before = _cert_counters(cluster_dsns)
        figures = _naive_claims(dsns, queue, clients, seconds)
        after = _cert_counters(cluster_dsns)
        figures.update({k: after[k] - before[k] for k in after})
        results[name] = figures
        print(
            f"\n{name}: {clients} clients, {figures['seconds']:.1f}s: {figures['done']} claimed+deleted "
            f"({figures['per_s']:.0f}/s), 1213 seen by clients: claim {figures['claim_1213']}, "
            f"delete {figures['delete_1213']} ({figures['conflicts_per_1000_done']:.1f} per 1000 messages, "
            f"{100 * figures['conflict_share_of_statements']:.2f}% of statements); "
            f"galera: cert failures {figures['wsrep_local_cert_failures']}, bf aborts {figures['wsrep_local_bf_aborts']}, "
            f"flow control paused {figures['wsrep_flow_control_paused_ns'] / 1e9:.1f}s; "
            f"last statement returned {figures['drain']:.1f}s after the window; empty claims {figures['empty']}"
        )
    for figures in results.values():
        assert figures["done"] > 0
        assert figures["empty"] == 0  # the queue never ran dry: the whole window was claims
    # One writer node certifies against nobody: Galera has no conflicts to report there.
    assert results["1 writer node"]["wsrep_local_cert_failures"] == 0


STARTER = """
import sys
from mqlite.testing.galera import GaleraCluster
cluster = GaleraCluster(nodes=1).start()
node = cluster.nodes[0]
print(node.root, node.process.pid, flush=True)
sys.stdin.read()
"""


def test_a_cluster_dies_with_the_process_that_started_it_and_its_directories_are_swept() -> None:
    """SIGKILL the Python process that runs a cluster: its nodes die with it (parent-death signal, set
    after the switch to the mysql account), and the next start sweeps their directories."""
    starter = python(STARTER)
    root, pid = read_line(starter, timeout=120).split()
    node_pid = int(pid)
    assert Path(root).is_dir() and _alive(node_pid)
    starter.kill()
    starter.wait(timeout=30)
    wait_for(lambda: not _alive(node_pid), timeout=30, what="the node to die with its parent")
    _sweep_stale()
    assert not Path(root).exists()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")  # a zombie waiting for its new parent to reap it is dead
