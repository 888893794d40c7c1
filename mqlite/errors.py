"""The errors mqlite raises. Every one is an `MqliteError`; driver exceptions never escape unwrapped."""

from __future__ import annotations


class MqliteError(Exception):
    """Base class of every error mqlite raises.

    `transient` says whether the same call may succeed if tried again (lost connection,
    deadlock, lock wait timeout, too many connections).
    """

    transient: bool = False


class ConfigError(MqliteError, ValueError):
    """A DSN or setting is malformed: wrong scheme, bad port, unknown option."""


class Multiplexed(ConfigError):
    """A proxy between mqlite and the server ran one claim's statements on different server
    sessions (connection multiplexing). The claim tags rows with CONNECTION_ID() and reads them
    back on the same session, so it refuses to run there: connect directly or pin the sessions."""


class InvalidName(MqliteError, ValueError):
    """A queue or table name is not acceptable."""


class PayloadTooLarge(MqliteError, ValueError):
    """A body does not fit in one statement under the server's `max_allowed_packet`."""


class InvalidBody(MqliteError, ValueError):
    """A body cannot be stored as given (a str that is not encodable as UTF-8)."""


class Unavailable(MqliteError):
    """The server cannot be reached, or the connection was lost mid-call."""

    transient = True


class TlsError(Unavailable):
    """A connection could not be set up as the DSN's TLS options ask. Not transient: retrying
    cannot change a certificate or an account's requirements."""

    transient = False


class TlsRequired(TlsError):
    """TLS was required and not used: the account requires it (`REQUIRE SSL`) and the DSN does not
    ask for it, or the DSN asks for it (`ssl_mode=REQUIRED` or stronger) and the server offers none."""


class CertificateRejected(TlsError):
    """The server's certificate failed the check `ssl_mode` asks for: its chain against `ssl_ca`
    (VERIFY_CA), and also the host name (VERIFY_IDENTITY)."""


class SchemaMissing(MqliteError):
    """The messages table is absent or older than this version of mqlite."""


class DatabaseError(MqliteError):
    """The server refused a statement. `code` is the MySQL error number."""

    def __init__(self, message: str, code: int = 0, transient: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.transient = transient


class ReadOnly(DatabaseError):
    """The server accepts no writes now: `read_only` is on (a replica, or a primary demoted by a
    failover). Transient: retried for `retry_for` on fresh connections (a failover may have moved
    the primary), then raised; nothing was written."""

    def __init__(self, message: str, code: int = 0, transient: bool = True) -> None:
        super().__init__(message, code, transient)


class StorageFull(DatabaseError):
    """The server has no space left for the table: its disk is full, or its tablespace reached
    its maximum size. Transient (space comes back as consumers delete rows, or an operator frees
    it): retried for `retry_for`, then raised; nothing was written."""

    def __init__(self, message: str, code: int = 0, transient: bool = True) -> None:
        super().__init__(message, code, transient)


class Duplicate(MqliteError):
    """A message with the same unique key is already in the queue. `existing_id` names it."""

    def __init__(self, message: str, existing_id: int | None = None) -> None:
        super().__init__(message)
        self.existing_id = existing_id


class NotClaimed(MqliteError):
    """The message is no longer held by this consumer (acknowledged, released or recovered)."""


class NotFound(MqliteError, LookupError):
    """No message with this id is in this queue (`Queue.cancel`)."""


class Interrupted(BaseException):
    """Raised by `message.checkpoint()` when the worker is stopping: the claim is released at once.

    A BaseException (like KeyboardInterrupt), so that a handler's `except Exception` does not
    swallow it, and so that `claim` releases the message instead of counting a failed attempt.
    """


class Cancelled(BaseException):
    """Raised by `message.checkpoint()`, `touch()` or `extend()` once `Queue.cancel` marked the claimed
    message cancelling: the message has ended, cancelled (deleted, and recorded in its queue's history).

    A BaseException like `Interrupted`: a handler's `except Exception` does not swallow it, and the
    claim block neither retries nor releases the message.
    """


__all__ = [
    "Cancelled",
    "Interrupted",
    "NotFound",
    "MqliteError",
    "ConfigError",
    "Multiplexed",
    "InvalidName",
    "PayloadTooLarge",
    "InvalidBody",
    "Unavailable",
    "TlsError",
    "TlsRequired",
    "CertificateRejected",
    "SchemaMissing",
    "DatabaseError",
    "ReadOnly",
    "StorageFull",
    "Duplicate",
    "NotClaimed",
]
