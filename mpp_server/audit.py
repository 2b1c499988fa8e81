"""The audit journal (sql/migrations/014_console.sql, audit_journal): one row per sign-in
(success or failure), sign-out and operator action, of the operators' console
(mpp_server/console/) and of the command line (`operators ...`, `reconcile ack`), written
in the action's own transaction, so an action and its row commit together or not at all.
A base module (it needs only the database): any layer that acts for a person may write it.

Tamper-evident: each row's hash is SHA-256 over the previous row's hash and the row's
canonical form (`canonical`), so a row altered, inserted or removed afterwards breaks the
chain, which `verify` (`python -m mpp_server audit verify`) walks. The chain cannot fork:
`append` takes an advisory lock held to the commit before it reads the last row, so
appends are serialized and ids are consecutive; the table's UNIQUE prev_hash refuses a
second row after the same one anyway. The database refuses UPDATE, DELETE and TRUNCATE
(a trigger). The hash is keyless: someone who can disable the trigger could rewrite the
chain from a row onwards, which is why `verify` prints the head (id and hash) to be kept
elsewhere, and checks a head kept earlier with `--anchor`.
"""

from __future__ import annotations

import getpass
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import asyncpg

from mpp_server.db import Conn

GENESIS = "0" * 64  # the previous hash of row 1
LOCK_KEY = 7_316_204_024  # pg_advisory_xact_lock key of the appenders (any constant)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

JsonValue = str | int | bool | None | list["JsonValue"] | dict[str, "JsonValue"]


class Action(StrEnum):
    SIGN_IN = "sign_in"
    SIGN_IN_FAILED = "sign_in_failed"
    SIGN_OUT = "sign_out"
    DISCREPANCY_ACKNOWLEDGED = "discrepancy_acknowledged"
    NOTIFY_RETRY = "notify_retry"
    TOPUP_STATUS_CHECK = "topup_status_check"
    IDENTIFICATION_LEVEL_SET = "identification_level_set"
    OPERATOR_ADDED = "operator_added"
    OPERATOR_DISABLED = "operator_disabled"
    OPERATOR_UNLOCKED = "operator_unlocked"
    OPERATOR_PASSWORD_SET = "operator_password_set"
    DISPUTE_RESOLVED = "dispute_resolved"
    WEBHOOK_REPLAYED = "webhook_replayed"


class Via(StrEnum):
    CONSOLE = "console"
    CLI = "cli"


@dataclass(frozen=True)
class Actor:
    """Who acts: an operator signed in to the console, or a person at the command line
    (the name they gave, or their system user)."""

    name: str
    via: Via
    operator_id: int | None = None
    # The command line: the system user who ran it (in the row's details), also when
    # `name` is the one given (reconcile ack --by).
    system_user: str | None = None


def system_actor(name: str | None = None) -> Actor:
    """A person at the command line: `name` as they gave it (reconcile ack --by), else
    their system user, which the row's details carry either way."""
    try:
        user = getpass.getuser() or "uid-unknown"
    except (KeyError, OSError):  # no user name for this uid (a bare container)
        user = "uid-unknown"
    return Actor(name or user, Via.CLI, system_user=user)


@dataclass(frozen=True)
class Entry:
    id: int
    at: datetime
    actor: str
    operator_id: int | None
    via: str
    action: str
    subject: str
    details: Mapping[str, JsonValue]
    hash: str = ""  # as stored (not part of the canonical form)

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Entry:
        return cls(row["id"], row["at"], row["actor"], row["operator_id"], row["via"],
                   row["action"], row["subject"], row["details"], row["hash"])

    def canonical(self) -> bytes:
        """The row as hashed: compact JSON with sorted keys (UTF-8), the time as integer
        microseconds since the Unix epoch. Only exact types (no floats): what jsonb
        gives back is what was written."""
        return json.dumps({"id": self.id, "at_us": (self.at - _EPOCH) // _MICROSECOND,
                           "actor": self.actor, "operator_id": self.operator_id,
                           "via": self.via, "action": self.action, "subject": self.subject,
                           "details": self.details},
                          sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False).encode()

    def chained_hash(self, prev_hash: str) -> str:
        return hashlib.sha256(prev_hash.encode("ascii") + b"\n" + self.canonical()).hexdigest()


def printable(text: str) -> str:
    """Text typed by anyone (a login at /login), with what cannot be shown or stored
    (control characters, NUL) replaced by `?`."""
    return "".join(c if c.isprintable() else "?" for c in text)


def _check_exact(value: object) -> None:
    """Details hold only JSON values that survive jsonb exactly (no float, no NUL)."""
    if isinstance(value, dict):
        for key, item in value.items():
            _check_exact(key)
            _check_exact(item)
    elif isinstance(value, list):
        for item in value:
            _check_exact(item)
    elif isinstance(value, str):
        if "\x00" in value:
            raise ValueError("journal text must not contain NUL")
    elif value is not None and not isinstance(value, (bool, int)):
        raise TypeError(f"journal details take str, int, bool, None, lists and objects, "
                        f"not {type(value).__name__}")


async def append(conn: Conn, actor: Actor, action: Action, subject: str,
                 details: Mapping[str, JsonValue]) -> Entry:
    """Write one row in the caller's transaction (the action it records commits with it).
    Serialized by an advisory lock held to the commit, taken before the last row is read
    (a statement of its own: under READ COMMITTED it sees every row committed before the
    lock was granted). Call it last in the action, after its row locks: a transaction
    holding the journal's lock then waits for nothing else, so no action can deadlock
    with another over it."""
    if not conn.is_in_transaction():
        raise AssertionError("a journal row is written in its action's transaction")
    written: dict[str, JsonValue] = dict(details)
    if actor.system_user is not None:
        written["system_user"] = actor.system_user
    _check_exact(written)
    _check_exact([actor.name, subject])
    await conn.execute("SELECT pg_advisory_xact_lock($1)", LOCK_KEY)
    last = await conn.fetchrow(
        """SELECT clock_timestamp() AS now, j.id, j.hash
             FROM (SELECT 1) AS one
             LEFT JOIN LATERAL (SELECT id, hash FROM audit_journal ORDER BY id DESC LIMIT 1)
                  AS j ON true""")
    assert last is not None
    prev_hash: str = last["hash"] or GENESIS
    entry = Entry((last["id"] or 0) + 1, last["now"], actor.name[:100], actor.operator_id,
                  actor.via.value, action.value, subject[:200], written)
    entry = replace(entry, hash=entry.chained_hash(prev_hash))
    await conn.execute(
        """INSERT INTO audit_journal (id, at, actor, operator_id, via, action, subject,
                                      details, prev_hash, hash)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)""",
        entry.id, entry.at, entry.actor, entry.operator_id, entry.via, entry.action,
        entry.subject, entry.details, prev_hash, entry.hash)
    return entry


@dataclass(frozen=True)
class Verdict:
    """What `verify` found: `count` rows fit the chain; `bad_id` is the first that does
    not (None: the whole chain holds), and why."""

    count: int
    head_id: int
    head_hash: str
    bad_id: int | None = None
    why: str = ""


async def verify(conn: Conn, anchor: tuple[int, str] | None = None) -> Verdict:
    """Walk the chain from row 1 in one snapshot (a cursor: the journal may be large).
    `anchor`: a (row id, hash) printed by an earlier verify, which must still be there."""
    prev_id, prev_hash = 0, GENESIS
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        async for row in conn.cursor("SELECT * FROM audit_journal ORDER BY id", prefetch=500):
            entry = Entry.from_row(row)
            why = _misfit(entry, row["prev_hash"], row["hash"], prev_id, prev_hash)
            if (not why and anchor is not None and entry.id == anchor[0]
                    and row["hash"] != anchor[1]):
                why = "its hash is not the anchored one: the chain was rewritten up to here"
            if why:
                return Verdict(prev_id, prev_id, prev_hash, entry.id, why)
            prev_id, prev_hash = entry.id, row["hash"]
    if anchor is not None and anchor[0] > prev_id:
        return Verdict(prev_id, prev_id, prev_hash, anchor[0],
                       f"the anchored row is gone: the journal ends at row {prev_id}")
    return Verdict(prev_id, prev_id, prev_hash)


def _misfit(entry: Entry, stored_prev: str, stored_hash: str, prev_id: int,
            prev_hash: str) -> str:
    if entry.id != prev_id + 1:
        if entry.id <= prev_id:
            return f"its id does not follow row {prev_id}"
        gone = (f"row {prev_id + 1} is" if entry.id == prev_id + 2
                else f"rows {prev_id + 1}-{entry.id - 1} are")
        return f"it follows row {prev_id}: {gone} missing"
    if stored_prev != prev_hash:
        return (f"its previous hash is not row {prev_id}'s hash: a row before it was "
                f"removed or rewritten")
    if entry.chained_hash(prev_hash) != stored_hash:
        return "its contents do not match its hash: the row was altered"
    return ""


async def page(conn: Conn, *, actor: str | None, before_id: int | None,
               limit: int) -> list[Entry]:
    """Newest first; `actor` filters by who acted; `before_id` pages back."""
    rows = await conn.fetch(
        """SELECT * FROM audit_journal
            WHERE ($1::text IS NULL OR actor = $1) AND ($2::bigint IS NULL OR id < $2)
            ORDER BY id DESC LIMIT $3""", actor, before_id, limit)
    return [Entry.from_row(r) for r in rows]
