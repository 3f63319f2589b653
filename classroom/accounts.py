"""Accounts and sign-in: sign-up, login with throttling, session tokens.

- Passwords are hashed with argon2id in a worker thread (hashing is ~20 ms of CPU that must not
  stall the event loop); a bounded limiter keeps a login storm from queueing unbounded threads.
- Unknown user and wrong password answer the same, and take the same time (a dummy hash is
  checked for unknown users).
- A session token is 256 random bits handed to the client once; only its SHA-256 is stored.
- Logout, expiry and a password change end sign-ins; live connections ask `ended_sessions`
  (the cache, then one query for those it does not hold) and are told at once through
  `on_sessions_ended`: in-process, from the bus, or when the cache drops a user's sessions.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Collection
from datetime import timedelta
from typing import Final

import argon2
import attrs
import trio

from storage import DuplicateKey, Storage, User

from . import limits
from .bus import Bus, NoBus
from .cache import Cache
from .clock import Clock, utcnow
from .errors import Conflict, Invalid, Throttled, Unauthenticated, translate_storage_errors

SESSION_LIFETIME: Final = timedelta(days=14)
# The cookie a browser carries its session token in, to the web pages and the chat server.
SESSION_COOKIE: Final = "classroom_session"
FAILURE_WINDOW: Final = timedelta(minutes=15)
# Failures allowed in the window before refusing: per account from one client address (so a
# stranger guessing locks out only their own address, never the owner's), per account from
# all addresses (many machines guessing one password), and per address over all accounts.
MAX_FAILURES_PER_ACCOUNT: Final = 5
MAX_FAILURES_PER_ACCOUNT_ANYWHERE: Final = 100
MAX_FAILURES_PER_ADDRESS: Final = 30
# Sign-ups from one client address in the same window (kept with the login failures): a class
# signing up behind one school NAT fits, a script making accounts in bulk does not.
MAX_SIGNUPS_PER_ADDRESS: Final = 40
LOGIN_FAILED: Final = "wrong username or password"
# OWASP's argon2id minimum (19 MiB, 2 passes): ~20 ms here.
_HASHER: Final = argon2.PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
_HASH_THREADS: Final = trio.CapacityLimiter(4)
_DUMMY_HASH: Final = _HASHER.hash("not a password of anybody")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def _hash(password: str) -> str:
    return await trio.to_thread.run_sync(_HASHER.hash, password, limiter=_HASH_THREADS)


async def _verify(password_hash: str, password: str) -> bool:
    def verify() -> bool:
        try:
            return _HASHER.verify(password_hash, password)
        except argon2.exceptions.VerificationError:
            return False
        except argon2.exceptions.InvalidHashError:
            return False

    return await trio.to_thread.run_sync(verify, limiter=_HASH_THREADS)


@attrs.frozen
class SignedIn:
    user: User
    token: str  # give to the client; never stored


SIGNED_OUT: Final = "signed out"
SESSION_EXPIRED: Final = "session expired"


class Accounts:
    def __init__(self, storage: Storage, cache: Cache, *, clock: Clock = utcnow,
                 bus: Bus | None = None) -> None:
        self._storage = storage
        self._cache = cache
        self._now = clock
        self._bus = bus or NoBus()
        self._ended_listeners: list[Callable[[], None]] = []
        self.max_signups_per_address = MAX_SIGNUPS_PER_ADDRESS
        # A sign-in the cache vouched for may have ended (another process's logout, read
        # from the change log): live connections check now, not at their next interval.
        cache.on_sessions_dropped(self.tell_sessions_ended)

    def on_sessions_ended(self, listener: Callable[[], None]) -> None:
        """Call `listener` (synchronously, from the trio thread) whenever sign-ins may have
        ended: a logout or a password change here, one the bus tells of, or one the cache
        read from the change log. Expiry is noticed only by checking."""
        self._ended_listeners.append(listener)

    def _sessions_ended(self) -> None:
        self.tell_sessions_ended()
        # Every other chat server checks its connections' sign-ins now, not at its next
        # look at the database.
        self._bus.announce("sessions", {})

    def tell_sessions_ended(self) -> None:
        """Sign-ins ended here or on another server (told by the bus or the cache): check
        ours now."""
        for listener in self._ended_listeners:
            listener()

    @staticmethod
    def session_key(token: str) -> str:
        """What a sign-in is known by in `ended_sessions` (its stored hash)."""
        return hash_token(token)

    @translate_storage_errors
    async def ended_sessions(self, keys: Collection[str]) -> dict[str, str]:
        """Which of these sign-ins (session_key values, distinct) have ended, each with why:
        SIGNED_OUT (logout, password change) or SESSION_EXPIRED. The cache answers for the
        sign-ins it holds (live within its bound, STALE_AFTER); the database for the rest,
        which are then kept: a chat server's check of its thousands of connections every
        few seconds reads nothing while none of them changes."""
        now = self._now()
        if not self._cache.fresh():
            # The cache is off (the database is slow or failing): the cheapest question,
            # nothing to keep.
            expired = await self._storage.ended_sessions(sorted(keys), now)
            return {key: SIGNED_OUT if at is None else SESSION_EXPIRED
                    for key, at in expired.items()}
        unknown = self._cache.unknown_sessions(keys, now)
        if not unknown:
            return {}
        stamp = self._cache.stamp()
        found = await self._storage.get_sessions(sorted(unknown))
        ended: dict[str, str] = {}
        for key in unknown:
            session = found.get(key)
            if session is None:
                ended[key] = SIGNED_OUT
            elif session[1] <= now:
                ended[key] = SESSION_EXPIRED
            else:
                self._cache.keep_session(stamp, key, *session)
        return ended

    @translate_storage_errors
    async def sign_up(self, username: str, display_name: str, password: str,
                      confirm: str | None = None, *, address: str | None = None) -> SignedIn:
        """Create an account and sign it in. Conflict when the username is taken; Throttled
        past max_signups_per_address from the client `address` (None: not throttled, for
        callers that are not a network client)."""
        name = limits.username(username)
        shown = limits.display_name(display_name)
        limits.password(password)
        if confirm is not None and confirm != password:
            raise Invalid("the two passwords differ")
        throttle_key = None if address is None else f"signup:{address}"
        if throttle_key is not None:
            since = self._now() - FAILURE_WINDOW
            if (await self._storage.count_login_failures(throttle_key, since)
                    >= self.max_signups_per_address):
                minutes = int(FAILURE_WINDOW.total_seconds() // 60)
                raise Throttled(f"too many new accounts from your address; try again in "
                                f"{minutes} minutes",
                                retry_after=int(FAILURE_WINDOW.total_seconds()))
        taken = Conflict(f"the username {name!r} is taken")
        if await self._storage.get_user_by_username(name) is not None:
            raise taken
        try:
            user = await self._storage.create_user(name, shown, await _hash(password),
                                                   self._now())
        except DuplicateKey as exc:  # signed up by someone else meanwhile
            raise taken from exc
        if throttle_key is not None:
            await self._storage.record_login_failure((throttle_key,), self._now())
        return await self._start_session(user)

    @translate_storage_errors
    async def log_in(self, username: str, password: str, *, address: str) -> SignedIn:
        """Unauthenticated(LOGIN_FAILED) for an unknown user or a wrong password alike;
        Throttled after too many recent failures for the account from this `address` (an
        address_key), for the account from anywhere, or from this address."""
        name = username.strip().lower()[: limits.USERNAME_MAX + 1]
        keys = (f"user:{name}@{address}", f"user:{name}", f"addr:{address}")
        since = self._now() - FAILURE_WINDOW
        for key, most in zip(keys, (MAX_FAILURES_PER_ACCOUNT, MAX_FAILURES_PER_ACCOUNT_ANYWHERE,
                                    MAX_FAILURES_PER_ADDRESS), strict=True):
            if await self._storage.count_login_failures(key, since) >= most:
                minutes = int(FAILURE_WINDOW.total_seconds() // 60)
                raise Throttled(f"too many failed logins; try again in {minutes} minutes",
                                retry_after=int(FAILURE_WINDOW.total_seconds()))
        found = await self._storage.get_password_hash(name) if name else None
        password = password[: limits.PASSWORD_MAX + 1]
        ok = await _verify(found[1] if found else _DUMMY_HASH, password) and found is not None
        if not ok or found is None:
            await self._storage.record_login_failure(keys, self._now())
            raise Unauthenticated(LOGIN_FAILED)
        await self._storage.clear_login_failures(keys[:2])  # the account's, not the address's
        return await self._start_session(found[0])

    async def _start_session(self, user: User) -> SignedIn:
        token = secrets.token_urlsafe(32)
        now = self._now()
        await self._storage.create_auth_session(hash_token(token), user.id, now,
                                                now + SESSION_LIFETIME)
        return SignedIn(user=user, token=token)

    @translate_storage_errors
    async def user_for_token(self, token: str | None) -> User | None:
        """The signed-in user of a session token, or None (missing, unknown, expired)."""
        if not token or len(token) > 128:
            return None
        token_hash, now = hash_token(token), self._now()
        await self._cache.ready()  # the first domain call of nearly every request
        user = self._cache.session(token_hash, now)
        if user is not None:
            return user
        stamp = self._cache.stamp()
        found = await self._storage.get_session(token_hash, now)
        if found is None:
            return None
        self._cache.keep_session(stamp, token_hash, *found)
        return found[0]

    @translate_storage_errors
    async def log_out(self, token: str | None) -> None:
        if token and len(token) <= 128:
            await self._storage.delete_auth_session(hash_token(token))
            self._sessions_ended()

    @translate_storage_errors
    async def change_password(self, user: User, token: str | None, current: str,
                              new: str, confirm: str | None = None) -> None:
        """Set a new password; every other sign-in of the user ends (their live connections
        too), the one of `token` stays. Invalid for a wrong current password (counted
        and throttled like a failed login), Invalid for an unacceptable new one."""
        # Apart from the login failures: only someone signed in as the user makes these.
        keys = (f"password:{user.username}",)
        since = self._now() - FAILURE_WINDOW
        if await self._storage.count_login_failures(keys[0], since) >= MAX_FAILURES_PER_ACCOUNT:
            raise Throttled("too many wrong passwords; try again later",
                            retry_after=int(FAILURE_WINDOW.total_seconds()))
        limits.password(new)
        if confirm is not None and confirm != new:
            raise Invalid("the two new passwords differ")
        found = await self._storage.get_password_hash(user.username)
        if found is None or not await _verify(found[1], current[: limits.PASSWORD_MAX + 1]):
            await self._storage.record_login_failure(keys, self._now())
            raise Invalid("the current password is wrong")
        keep = hash_token(token) if token and len(token) <= 128 else None
        await self._storage.change_password(user.id, await _hash(new), keep)
        self._sessions_ended()

    @translate_storage_errors
    async def forget_expired(self) -> None:
        now = self._now()
        await self._storage.delete_expired(now, now - FAILURE_WINDOW)
