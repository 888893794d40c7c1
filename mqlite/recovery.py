"""When a claimed row goes back to the queue.

A claim is stale, and its row may be handed out again, only when one of these holds:
- **before restart**: it was made before the server last started. Session ids restart from 1
  after a restart, so such an owner id may now name an unrelated live session. Uptime counts
  whole seconds, so a claim from the second around the start is ambiguous: it comes back when
  its lease expires.
- **dead owner**: its session is absent from `information_schema.PROCESSLIST`, and we hold the
  PROCESS privilege (without it PROCESSLIST shows only our own user's sessions, and every
  other consumer would look dead). Only claims older than our own PROCESSLIST snapshot are
  considered, so a session that connected and claimed after the snapshot is never mistaken
  for a dead one.
- **lease expired**: its lease ran out and we cannot see its session: we lack the PROCESS
  privilege, or the claim was made on another node of a cluster (PROCESSLIST and uptime are per
  node; a node that never comes back leaves only leases behind). With the privilege, a live owner
  on our node keeps its claim however long it works; a dead one is caught by the rule above.

The first two rules touch only claims made on the node we are connected to.

A recovered claim counts as an attempt and records why it came back; past `max_attempts` the
message becomes failed instead of ready (a message that kills its consumer does not loop).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from . import protocol, sql
from .sql import Statements

_CHUNK = 500  # owner ids per UPDATE … IN (…)


@dataclass(frozen=True)
class Recovery:
    """What one recovery pass put back, by reason."""

    dead_owner: int = 0
    before_restart: int = 0
    lease_expired: int = 0
    sees_all_connections: bool = False

    @property
    def total(self) -> int:
        return self.dead_owner + self.before_restart + self.lease_expired


def server_start(cur: Any) -> tuple[datetime, datetime, datetime]:
    """(now, a time surely before the server's start, a time surely not before it), server clock.

    Uptime has whole-second resolution, so the start is only known to within a second: a claim
    made in that second may be from before or after the restart.
    """
    cur.execute(sql.SERVER_CLOCK)
    (now,) = cur.fetchone()
    cur.execute(sql.SERVER_UPTIME)
    uptime = int(cur.fetchone()[1])
    return now, now - timedelta(seconds=uptime + 1), now - timedelta(seconds=uptime)


def sees_all_connections(cur: Any) -> bool:
    """Whether PROCESSLIST shows every session (the PROCESS privilege)."""
    cur.execute(sql.HAS_PROCESS_PRIVILEGE)
    return bool(cur.fetchone()[0])


def recover(conn: Any, st: Statements, max_attempts: int, history: tuple[str, str] | None = None) -> Recovery:
    """One recovery pass over the messages table on `conn`. With `history` (table name, worker),
    the claims it gives up (failed now) are recorded in their queue's history in the same transaction."""
    cur = conn.cursor()

    def run(update: str, text: str, *where: Any) -> int:
        reason = f"Recovered: {text}"
        if history is None:
            return int(cur.execute(update, (max_attempts, max_attempts, reason, *where)))
        table, worker = history

        return protocol.group(cur, [
            (st.recovered_history(update), (reason, worker, table, *where, max_attempts)),
            (update, (max_attempts, max_attempts, reason, *where)),
        ])[1]

    try:
        now, surely_before, maybe_before = server_start(cur)
        before_restart = run(st.recover_before, "claimed before the server restarted", surely_before)
        # A claim from the second around the restart may belong to a live session that reuses the
        # dead owner's id: it comes back when its lease runs out, whoever can see what.
        before_restart += run(st.recover_before_expired, "claimed around a server restart, lease expired",
                              maybe_before)
        # Claims made on other nodes of a cluster: neither our PROCESSLIST nor our uptime knows them.
        other_nodes = run(st.recover_other_nodes, "lease expired (claimed on another node)")
        if not sees_all_connections(cur):
            expired = run(st.recover_expired, "lease expired (owner not visible without PROCESS)")
            return Recovery(before_restart=before_restart, lease_expired=expired + other_nodes,
                            sees_all_connections=False)
        # Snapshot order matters: `now` was read before PROCESSLIST, and only claims older than
        # `now` are touched, so every owner we may reset was already connected at the snapshot.
        cur.execute(sql.LIVE_CONNECTIONS)
        live = {int(row[0]) for row in cur.fetchall()}
        cur.execute(st.claimed_owners, (now,))
        dead = sorted(int(row[0]) for row in cur.fetchall() if int(row[0]) not in live)
        dead_owner = 0
        for i in range(0, len(dead), _CHUNK):
            chunk = dead[i : i + _CHUNK]
            dead_owner += run(st.in_list(st.recover_owners, len(chunk)), "owner session gone", *chunk, now)
        return Recovery(dead_owner=dead_owner, before_restart=before_restart, lease_expired=other_nodes,
                        sees_all_connections=True)
    finally:
        cur.close()
