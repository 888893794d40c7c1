"""A kombu virtual transport over `mqlite.Queue`: mqlite as Celery's broker.

Configuration, one line (see the README's "Using with Celery")::

    app = Celery("proj", broker="mysql://user:pw@db:3306/app",
                 broker_transport="mqlite.contrib.kombu:Transport")

kombu refuses import paths in a URL's scheme (they would let a URL choose a module to import),
so an out-of-tree transport is named by `broker_transport`, which every Celery process reads
from the app's configuration: no import side effect is needed in the worker, beat or `celery
purge`. Importing this module also registers the aliases `mqlite` and `mysql` (kombu has none of
that name), so `broker="mqlite+mysql://…"` works in processes that import `mqlite.contrib.kombu`
before connecting. Without a URL (`broker_url` unset), `MQLITE_DSN` is used. Run `mqlite schema
apply` once, as for any mqlite use (schema 010 holds the transport's exchanges).

How kombu's verbs map onto mqlite (one mqlite queue per kombu queue, same name):

- publish: `Queue.push`, one `INSERT`. Celery's `countdown`/`eta` (the `eta` header) and a
  `DelaySeconds` property become mqlite delays: the message waits in the table, not in a worker.
  Celery's `priority` (the message's `priority` property) becomes the mqlite priority as it is:
  lower first, as with kombu's Redis transport (not RabbitMQ's higher-first).
- consume (`no_ack=False`, which is every Celery worker): `Queue.take(lease=…)`; the delivery tag
  is the claim's receipt. `basic_ack` -> `ack`; `basic_reject(requeue=True)` -> `nack` with no
  delay (back at once, one attempt counted, so a message that keeps killing its worker ends
  failed after `max_attempts` instead of looping); `basic_reject(requeue=False)` -> `fail`
  (kept in the failed state with the reason: mqlite's dead letter).
- unacked messages at a clean shutdown (kombu's restore): `release`, the same row, no attempt
  counted, no copy. A worker that dies (SIGKILL, OOM, power loss) restores nothing: its claims
  belong to its dead database sessions and come back by mqlite's recovery, which consumers run
  (a consumer also runs it once when it starts).
- `no_ack=True` consumers and `basic_get(no_ack=True)`: `Queue.pop` (at-most-once).
- purge: `Queue.purge` (ready and delayed messages; claimed ones finish).

Throughput on a server where every statement is a commit:
- claims are made in batches of up to the prefetch window left (`claim_batch`, default 16, caps
  it): one `Queue.take_many`, one claim statement; the next batch is claimed while the worker goes
  through the current one. An idle queue is probed with a single take. Buffered claims are
  renewed and released like delivered ones.
- acks go out in the background (`ack_threads`: 0 = acknowledge in the caller's thread; the
  default, 1, = one thread that sends every ack arrived meanwhile as one `Queue.ack_many`, one
  `DELETE` and one commit; at most 1,000 pending). Like an AMQP ack, an ack is not waited for:
  if the process dies before it lands, the message runs again.

Leases and prefetch: a message in Celery's prefetch buffer is claimed by this process for
`lease` seconds (default 600) and renewed every `lease / 3` seconds while unacked, from the
consuming loop. With the PROCESS privilege mqlite never recovers a live session's claim, so a
message held longer than its lease is not redelivered while the worker lives; without it, the
renewal is what keeps it, and a dead worker's messages come back when their lease runs out.

Idle polling: every queue is polled once per round; after an empty round the consumer sleeps
`min_polling_interval` (default 0.01 s), doubling up to `polling_interval` (default 1 s) while
nothing arrives; an acknowledgement wakes it early (a slot in the prefetch window opened), and so
does a publish from any process to a queue it consumes (the Queue's doorbell, mqlite/wake.py).

Broadcast (routing.py): bindings are shared through the database, so fanout exchanges reach every
bound queue of every process (Celery's remote control: `celery inspect`, `celery control`,
revoke, Flower), and direct/topic exchanges route to queues other processes bound. Queues
declared with `x-expires` or `auto_delete` (reply and pidbox queues) are purged once unused.
Idle, those are polled every `broadcast_polling_interval` (0.2 s) while task queues back off.

Not supported: per-message TTL (`x-message-ttl` is ignored).

Transport options (`broker_transport_options`): `lease`, `polling_interval`,
`min_polling_interval`, `broadcast_polling_interval`, `claim_batch`, `ack_threads`,
`queue_prefix`, and for the `mqlite.Queue`: `table`, `pool_size`, `max_attempts`, `retry_for`,
`recover_every`, `connect_timeout`.

Modules: transport.py (Transport: shared Queue, batched claims, background acks, polling loop), channel.py (publish,
claims, acks), routing.py (exchanges, expiring queues), shared.py.
"""

from kombu.transport import TRANSPORT_ALIASES

from .channel import Channel
from .transport import Transport

__all__ = ["Channel", "Transport"]

TRANSPORT_ALIASES.setdefault("mqlite", "mqlite.contrib.kombu:Transport")
# kombu has no `mysql` transport of its own; Celery builds `Connection(broker_url)` without the
# app's broker_transport in places (the worker's `inspect conf`, `celery report`, Flower).
TRANSPORT_ALIASES.setdefault("mysql", "mqlite.contrib.kombu:Transport")
