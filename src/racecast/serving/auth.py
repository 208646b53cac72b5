"""API keys and per-key rate limiting of the inference service.

Keys come from ``conf/local/credentials.yml`` (``racecast_api_keys: [...]``, never
committed), the comma-separated environment variable ``RACECAST_API_KEYS`` and
``ServingSettings.api_keys``. Each entry is a key in plain text or, to keep keys out of
configuration files, its hash ``sha256:<hex>`` as :func:`hash_api_key` prints it
(``racecast api-key-hash KEY``). Only the hashes are kept in memory; a presented key is
hashed (salted SHA-256: keys are long random tokens, so a slow password hash buys
nothing and would cost latency on every request) and compared with
:func:`hmac.compare_digest` against every configured hash.

The rate limiter is a sliding-window log per key: at most ``limit`` requests in any
``window_s`` seconds; a refused request learns from ``Retry-After`` when the oldest
request of the window leaves it.

Guessing keys is slowed by :class:`AuthBackoff`: per client address, after a few free
failed attempts every further failure doubles the time the address is refused (up to a
maximum); while refused, the address gets 429 whatever key it sends, so a guess that
happens to be right is not told apart from a wrong one.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import yaml

__all__ = [
    "API_KEYS_ENV",
    "CREDENTIALS_KEY",
    "ApiKeyVerifier",
    "AuthBackoff",
    "RateLimiter",
    "hash_api_key",
    "load_api_key_hashes",
]

#: Environment variable with comma-separated API keys (plain or ``sha256:`` hashes).
API_KEYS_ENV = "RACECAST_API_KEYS"
#: Key of the API key list in the credentials file.
CREDENTIALS_KEY = "racecast_api_keys"
#: Constant project salt of the key hashes (a stolen hash list is useless elsewhere).
_SALT = b"racecast/api-key/v1:"
_PREFIX = "sha256:"


def hash_api_key(key: str) -> str:
    """The stored form of an API key: ``sha256:`` + hex SHA-256 of salt + key.

    Args:
        key: The API key in plain text.

    Returns:
        The hash, e.g. ``sha256:3f2a...`` (71 characters).

    Raises:
        ValueError: If the key is empty.
    """
    if not isinstance(key, str) or not key.strip():
        raise ValueError("an API key must be a non-empty string")
    return _PREFIX + hashlib.sha256(_SALT + key.strip().encode("utf-8")).hexdigest()


def _as_hash(entry: str, where: str) -> str:
    """A configured entry as a hash: ``sha256:<64 hex>`` kept, plain text hashed."""
    text = entry.strip()
    if text.startswith(_PREFIX):
        digest = text[len(_PREFIX) :].lower()
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ValueError(f"{where}: {text[:12]}... is not a sha256:<64 hex digits> hash")
        return _PREFIX + digest
    return hash_api_key(text)


def _credential_entries(path: Path) -> list[str]:
    """The ``racecast_api_keys`` list of a credentials file ([] if the file or key is absent)."""
    if not path.is_file():
        return []
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML ({exc.__class__.__name__})") from exc
    if not isinstance(document, Mapping):
        raise ValueError(f"{path}: expected a mapping at the top level")
    entries = document.get(CREDENTIALS_KEY)
    if entries is None:
        return []
    if isinstance(entries, str) or not isinstance(entries, list):
        raise ValueError(f"{path}: {CREDENTIALS_KEY} must be a list of strings")
    bad = [i for i, e in enumerate(entries) if not isinstance(e, str) or not e.strip()]
    if bad:
        raise ValueError(f"{path}: {CREDENTIALS_KEY}[{bad[0]}] must be a non-empty string")
    return list(entries)


def load_api_key_hashes(
    credentials_path: Path | None = None,
    extra_keys: Iterable[str] = (),
    environ: Mapping[str, str] | None = None,
) -> frozenset[str]:
    """Every configured API key, as hashes.

    Args:
        credentials_path: YAML file with ``racecast_api_keys`` (skipped if None or absent).
        extra_keys: More entries (plain keys or ``sha256:`` hashes).
        environ: Environment variables (``os.environ`` by default); reads
            :data:`API_KEYS_ENV`.

    Returns:
        The set of ``sha256:<hex>`` hashes (empty when no key is configured).

    Raises:
        ValueError: If the credentials file or an entry is malformed (the message names
            where, never the key itself).
    """
    environ = os.environ if environ is None else environ
    hashes: set[str] = set()
    if credentials_path is not None:
        path = Path(credentials_path)
        for i, entry in enumerate(_credential_entries(path)):
            hashes.add(_as_hash(entry, f"{path}: {CREDENTIALS_KEY}[{i}]"))
    for i, entry in enumerate(k for k in environ.get(API_KEYS_ENV, "").split(",") if k.strip()):
        hashes.add(_as_hash(entry, f"{API_KEYS_ENV} entry {i}"))
    for i, entry in enumerate(extra_keys):
        hashes.add(_as_hash(entry, f"api_keys[{i}]"))
    return frozenset(hashes)


class ApiKeyVerifier:
    """Checks presented API keys against configured hashes in constant time per hash.

    Args:
        hashes: ``sha256:<hex>`` hashes from :func:`load_api_key_hashes`.
    """

    def __init__(self, hashes: Iterable[str]) -> None:
        self._hashes = tuple(sorted(hashes))

    def __bool__(self) -> bool:
        return bool(self._hashes)

    def __len__(self) -> int:
        return len(self._hashes)

    def verify(self, key: str | None) -> str | None:
        """The identity of a valid key, None for a missing or unknown one.

        Args:
            key: The ``X-API-Key`` header value.

        Returns:
            A short, non-secret key id (the first 12 hex digits of its hash) used for
            rate limiting and logs, or None.
        """
        if not key or not key.strip():
            return None
        presented = hash_api_key(key).encode("ascii")
        found = None
        for stored in self._hashes:  # no early exit: the time does not say which key matched
            if hmac.compare_digest(presented, stored.encode("ascii")):
                found = stored
        return None if found is None else found[len(_PREFIX) : len(_PREFIX) + 12]


class RateLimiter:
    """Sliding-window log limiter: at most ``limit`` requests per key in ``window_s`` seconds.

    Thread-safe. Memory is bounded by ``limit`` timestamps per active key; keys idle for a
    whole window are dropped.

    Args:
        limit: Requests allowed per window, > 0.
        window_s: Window length in seconds, > 0.
        clock: Monotonic clock (injectable for tests).
    """

    def __init__(
        self, limit: int, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if limit <= 0:
            raise ValueError(f"rate limit must be > 0 requests per window, got {limit}")
        if window_s <= 0:
            raise ValueError(f"rate limit window must be > 0 seconds, got {window_s}")
        self.limit = int(limit)
        self.window_s = float(window_s)
        self._clock = clock
        self._log: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._calls = 0

    def acquire(self, key: str) -> tuple[bool, int]:
        """Count a request of ``key`` if the window has room.

        Args:
            key: The caller's identity (API key id, or client address when anonymous).

        Returns:
            ``(allowed, retry_after_s)``: ``retry_after_s`` is 0 when allowed, else the
            whole seconds (>= 1) until the oldest request leaves the window.
        """
        now = self._clock()
        horizon = now - self.window_s
        with self._lock:
            self._calls += 1
            if self._calls % 1024 == 0:
                self._forget_idle(horizon)
            log = self._log.setdefault(key, deque())
            while log and log[0] <= horizon:
                log.popleft()
            if len(log) >= self.limit:
                return False, max(1, math.ceil(log[0] - horizon))
            log.append(now)
            return True, 0

    def _forget_idle(self, horizon: float) -> None:
        for key in [k for k, log in self._log.items() if not log or log[-1] <= horizon]:
            del self._log[key]


class AuthBackoff:
    """Exponential back-off of failed API key attempts, per client address.

    The first ``free_failures`` failures of an address cost nothing; failure ``n`` after
    them refuses the address for ``base_s * 2 ** (n - 1)`` seconds, at most ``max_s``. An
    address without a failure for ``max_s`` seconds starts again from zero. Success does
    not reset the count (one valid key must not buy unlimited guesses of others).
    Thread-safe; at most ``max_clients`` addresses are remembered (the oldest go first).

    Args:
        free_failures: Failures allowed before the first back-off.
        base_s: First back-off, seconds.
        max_s: Longest back-off and memory of a quiet address, seconds.
        clock: Monotonic clock (injectable for tests).
        max_clients: Addresses remembered.
    """

    def __init__(
        self,
        free_failures: int,
        base_s: float,
        max_s: float,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = 100_000,
    ) -> None:
        self.free_failures = int(free_failures)
        self.base_s = float(base_s)
        self.max_s = float(max_s)
        self._clock = clock
        self._max_clients = max_clients
        # address -> (failures, time of the last failure, refused until)
        self._state: dict[str, tuple[int, float, float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, client: str) -> int:
        """Whole seconds (>= 1) the address is still refused, 0 when it may try."""
        now = self._clock()
        with self._lock:
            state = self._state.get(client)
        if state is None or state[2] <= now:
            return 0
        return max(1, math.ceil(state[2] - now))

    def fail(self, client: str) -> float:
        """Count a failed attempt of ``client``; returns the back-off it now has (s)."""
        now = self._clock()
        with self._lock:
            failures, last, _ = self._state.pop(client, (0, now, now))
            if now - last > self.max_s:
                failures = 0
            failures += 1
            over = failures - self.free_failures
            wait = 0.0 if over <= 0 else min(self.max_s, self.base_s * 2.0 ** min(over - 1, 60))
            self._state[client] = (failures, now, now + wait)  # re-inserted: newest last
            while len(self._state) > self._max_clients:
                del self._state[next(iter(self._state))]
            return wait
