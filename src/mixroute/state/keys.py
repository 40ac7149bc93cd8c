"""The client key store: SQLite by default, one row per key, secrets hashed.

A key is ``mr-`` followed by 43 URL-safe random characters. Its first eight
characters after the prefix are the key id: not secret, shown by ``keys list``,
and used to find the row whose salted scrypt hash the whole key is checked
against. The key itself is never stored.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from mixroute.errors import ClientError, ConfigError

if TYPE_CHECKING:
    from mixroute.config.schema import MixrouteConfig

KEY_PREFIX = "mr-"
KEY_ID_LENGTH = 8
BudgetPeriod = Literal["hour", "day", "month"]
KEY_PATTERN = re.compile(r"^mr-[A-Za-z0-9_-]{40,100}$")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

# scrypt cost: about 16 MiB and tens of milliseconds per check, paid once per
# key per cache period, not per request.
_SCRYPT_N = 2**14
_SCRYPT_R = 8
_SCRYPT_P = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS client_keys (
    key_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    salt BLOB NOT NULL,
    hash BLOB NOT NULL,
    created_at REAL NOT NULL,
    revoked_at REAL,
    budget_usd REAL,
    budget_period TEXT,
    routes TEXT NOT NULL DEFAULT '',
    rpm INTEGER,
    tpm INTEGER
)
"""


@dataclass(frozen=True)
class ClientKey:
    """What the gateway knows about one client key (never the key itself)."""

    key_id: str
    name: str
    created_at: float
    revoked_at: float | None = None
    budget_usd: float | None = None
    budget_period: BudgetPeriod | None = None
    routes: tuple[str, ...] = ()
    rpm: int | None = None
    tpm: int | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def allows_route(self, route: str) -> bool:
        """True when the key is not restricted to routes, or ``route`` is one."""
        return not self.routes or route in self.routes


def hash_key(key: str, salt: bytes) -> bytes:
    """The salted scrypt hash of ``key`` (32 bytes)."""
    return hashlib.scrypt(
        key.encode("utf-8"),
        salt=salt,
        n=_SCRYPT_N,
        r=_SCRYPT_R,
        p=_SCRYPT_P,
        maxmem=64 * 1024 * 1024,
        dklen=32,
    )


def key_id_of(key: str) -> str | None:
    """The lookup id inside a well-formed key, or ``None`` if it is malformed."""
    if not KEY_PATTERN.match(key):
        return None
    return key[len(KEY_PREFIX) : len(KEY_PREFIX) + KEY_ID_LENGTH]


def parse_budget(text: str) -> tuple[float, BudgetPeriod]:
    """``"50/day"`` → ``(50.0, "day")``; a bare number means per day."""
    amount, _, period = text.strip().partition("/")
    period = period.strip().lower() or "day"
    try:
        value = float(amount.strip().lstrip("$"))
    except ValueError:
        value = -1.0
    if value <= 0 or period not in ("hour", "day", "month"):
        raise ValueError(
            f'budget "{text}" is not understood; write an amount in USD and a '
            "period, e.g. 50/day (periods: hour, day, month)"
        )
    return value, period  # type: ignore[return-value]


_COLUMNS = (
    "key_id, name, created_at, revoked_at, budget_usd, budget_period, routes, rpm, tpm"
)


class KeyStore:
    """Client keys in a SQLite file; safe to share between threads.

    The public methods are written on four storage steps (``_insert``,
    ``_records``, ``_secret_row``, ``_set_revoked``) that ``RedisKeyStore``
    implements again for replicas sharing one Redis.
    """

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        """Open (or, with ``create``, make) the store at ``path``.

        With ``create=False`` a missing file is an empty store until someone
        creates it (``mixroute keys create``), so a server in ``auth: auto``
        leaves no file behind yet notices the first key.
        """
        self.path = str(path)
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._create = create
        self._connect()

    def _connect(self) -> sqlite3.Connection | None:
        """The connection; ``None`` while the file is missing and may not be made."""
        if self._db is not None:
            return self._db
        if not self._create and not Path(self.path).exists():
            return None
        try:
            db = sqlite3.connect(self.path, check_same_thread=False)
            with db:
                db.execute(_SCHEMA)
        except sqlite3.Error as exc:
            raise ConfigError(
                [f"auth.keys_path: the key store {self.path} cannot be opened ({exc})"]
            ) from None
        self._db = db
        return db

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    # storage steps -------------------------------------------------------------

    def _rows(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            db = self._connect()
            if db is None:
                return []
            return db.execute(sql, params).fetchall()

    def _write(self, sql: str, params: tuple[object, ...]) -> None:
        with self._lock:
            self._create = True
            db = self._connect()
            assert db is not None
            with db:
                db.execute(sql, params)

    def _insert(self, record: ClientKey, salt: bytes, digest: bytes) -> None:
        self._write(
            f"INSERT INTO client_keys ({_COLUMNS}, salt, hash) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*_fields(record), salt, digest),
        )

    def _records(self) -> list[ClientKey]:
        rows = self._rows(f"SELECT {_COLUMNS} FROM client_keys ORDER BY created_at")
        return [_record(r) for r in rows]

    def _secret_row(self, key_id: str) -> tuple[bytes, bytes, ClientKey] | None:
        rows = self._rows(
            f"SELECT salt, hash, {_COLUMNS} FROM client_keys WHERE key_id = ?",
            (key_id,),
        )
        if not rows:
            return None
        row = rows[0]
        return bytes(row[0]), bytes(row[1]), _record(row[2:])

    def _set_revoked(self, key_id: str, when: float) -> None:
        self._write(
            "UPDATE client_keys SET revoked_at = ? WHERE key_id = ?", (when, key_id)
        )

    # public API ----------------------------------------------------------------

    def create(
        self,
        name: str,
        *,
        budget: str | None = None,
        routes: tuple[str, ...] = (),
        rpm: int | None = None,
        tpm: int | None = None,
    ) -> tuple[str, ClientKey]:
        """Make a new key; return it (shown once, never stored) and its record.

        Raises ``ValueError`` for a bad name or budget, or a name in use.
        """
        if not NAME_PATTERN.match(name):
            raise ValueError(
                f'key name "{name}" must be 1-64 letters, digits, ".", "_" or "-"'
            )
        budget_usd, period = parse_budget(budget) if budget else (None, None)
        for limit, label in ((rpm, "rpm"), (tpm, "tpm")):
            if limit is not None and limit < 1:
                raise ValueError(f"{label} must be at least 1, not {limit}")
        if self.find(name) is not None:
            raise ValueError(f'an active key named "{name}" already exists')

        while True:
            key = KEY_PREFIX + secrets.token_urlsafe(32)
            key_id = key_id_of(key)
            if key_id is not None and self._secret_row(key_id) is None:
                break
        salt = secrets.token_bytes(16)
        record = ClientKey(
            key_id=key_id,
            name=name,
            created_at=time.time(),
            budget_usd=budget_usd,
            budget_period=period,
            routes=tuple(routes),
            rpm=rpm,
            tpm=tpm,
        )
        self._insert(record, salt, hash_key(key, salt))
        return key, record

    def list(self, *, include_revoked: bool = False) -> list[ClientKey]:
        """Every key, oldest first (revoked ones only when asked)."""
        return [r for r in self._records() if include_revoked or r.active]

    def has_active_keys(self) -> bool:
        return any(r.active for r in self._records())

    def has_keys(self) -> bool:
        """Whether any key was ever made here (revoked ones count)."""
        return bool(self._records())

    def find(self, name_or_id: str) -> ClientKey | None:
        """The active key with this name, or with this key id."""
        for r in self._records():
            if r.active and name_or_id in (r.name, r.key_id):
                return r
        return None

    def revoke(self, name_or_id: str) -> ClientKey | None:
        """Revoke the active key with this name or id; ``None`` if there is none."""
        found = self.find(name_or_id)
        if found is None:
            return None
        now = time.time()
        self._set_revoked(found.key_id, now)
        return ClientKey(**{**found.__dict__, "revoked_at": now})

    def verify(self, key: str) -> ClientKey | None:
        """The active record for ``key`` if it is genuine, else ``None``.

        Costs one scrypt hash when the key id exists; the hash comparison is
        constant-time.
        """
        key_id = key_id_of(key)
        if key_id is None:
            return None
        row = self._secret_row(key_id)
        if row is None:
            return None
        salt, stored, record = row
        if not hmac.compare_digest(hash_key(key, salt), stored):
            return None
        return record if record.active else None


def _fields(r: ClientKey) -> tuple[object, ...]:
    return (
        r.key_id,
        r.name,
        r.created_at,
        r.revoked_at,
        r.budget_usd,
        r.budget_period,
        ",".join(r.routes),
        r.rpm,
        r.tpm,
    )


def _record(row: Sequence[Any]) -> ClientKey:
    key_id, name, created, revoked, budget, period, routes, rpm, tpm = row
    return ClientKey(
        key_id=str(key_id),
        name=str(name),
        created_at=float(created),
        revoked_at=None if revoked in (None, "") else float(revoked),
        budget_usd=None if budget in (None, "") else float(budget),
        budget_period=period or None,
        routes=tuple(r for r in str(routes or "").split(",") if r),
        rpm=None if rpm in (None, "") else int(rpm),
        tpm=None if tpm in (None, "") else int(tpm),
    )


class RedisKeyStore(KeyStore):
    """Client keys in Redis, for replicas that share one (``auth.backend: redis``).

    One hash per key under ``<prefix>clientkey:<id>`` and a set of ids under
    ``<prefix>clientkeys``; the same salted scrypt hashes as the SQLite store.
    """

    _NAMES = ("key_id", "name", "created_at", "revoked_at", "budget_usd",
              "budget_period", "routes", "rpm", "tpm")  # fmt: skip

    def __init__(self, client: Any, prefix: str = "mixroute:") -> None:
        self.client = client
        self.prefix = prefix
        self.path = f"redis ({prefix})"

    @classmethod
    def from_url(cls, url: str, prefix: str = "mixroute:") -> RedisKeyStore:
        import redis

        return cls(redis.Redis.from_url(url, socket_timeout=5), prefix)

    def close(self) -> None:
        self.client.close()

    def _call(self, fn: Any, *args: Any) -> Any:
        import redis

        try:
            return fn(*args)
        except redis.RedisError as exc:
            raise ConfigError(
                [f"auth: the Redis key store cannot be reached ({type(exc).__name__})"]
            ) from None

    def _insert(self, record: ClientKey, salt: bytes, digest: bytes) -> None:
        mapping: dict[str, Any] = {
            n: "" if v is None else v
            for n, v in zip(self._NAMES, _fields(record), strict=True)
        }
        mapping |= {"salt": salt, "hash": digest}
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(f"{self.prefix}clientkey:{record.key_id}", mapping=mapping)
        pipe.sadd(f"{self.prefix}clientkeys", record.key_id)
        self._call(pipe.execute)

    def _hash(self, key_id: str) -> dict[bytes, bytes]:
        data: dict[bytes, bytes] = self._call(
            self.client.hgetall, f"{self.prefix}clientkey:{key_id}"
        )
        return data

    def _from_hash(self, data: dict[bytes, bytes]) -> ClientKey:
        return _record([data.get(n.encode(), b"").decode() for n in self._NAMES])

    def _records(self) -> list[ClientKey]:
        ids = self._call(self.client.smembers, f"{self.prefix}clientkeys")
        out = []
        for key_id in ids:
            data = self._hash(key_id.decode())
            if data:
                out.append(self._from_hash(data))
        return sorted(out, key=lambda r: r.created_at)

    def _secret_row(self, key_id: str) -> tuple[bytes, bytes, ClientKey] | None:
        data = self._hash(key_id)
        if not data:
            return None
        return data[b"salt"], data[b"hash"], self._from_hash(data)

    def _set_revoked(self, key_id: str, when: float) -> None:
        self._call(
            self.client.hset, f"{self.prefix}clientkey:{key_id}", "revoked_at", when
        )


def open_key_store(config: MixrouteConfig, *, create: bool = True) -> KeyStore:
    """The key store ``auth.backend`` names: SQLite at ``auth.keys_path``, or the
    Redis of ``state:`` (its URL from ``state.redis_url_env`` or ``redis_url``)."""
    if config.auth.backend == "redis":
        from mixroute.state.factory import redis_url

        return RedisKeyStore.from_url(
            redis_url(config.state), prefix=config.state.key_prefix
        )
    return KeyStore(config.auth.keys_path, create=create)


def unauthorized(message: str) -> ClientError:
    """A 401 in OpenAI's shape; the message never repeats what the client sent."""
    return ClientError(
        message,
        status=401,
        code="invalid_api_key",
        type="invalid_request_error",
        headers={"www-authenticate": 'Bearer realm="mixroute"'},
    )
