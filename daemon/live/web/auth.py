"""Who may use the web console and API: hashed secrets, logins, sessions, failed-login limits.

Logins are the settings' ``http_users`` (``daemon.definition.model.WebUser``). A
browser logs in with a form (POST /login) and gets a session cookie; a script
(Prometheus, curl, Grafana) sends HTTP Basic credentials on every request.

* Secrets are stored hashed (``scrypt$N$r$p$salt$hash``, or ``pbkdf2_sha256$iter$salt$hash``)
  or come from a ``${ENV}`` reference; comparisons are constant-time.
* A hash costs ~50 ms of CPU, so checking it runs in gevent's thread pool, never in the
  daemon's hub; a Basic credential that checked out is remembered (by its SHA-256, not the
  secret) for a few minutes so a scraper does not cost a hash per scrape.
* Failed logins are counted per client address and per user name; after ``MAX_FAILURES``
  in ``WINDOW_S`` that key is refused until the window passes. The log line names the
  user and the address, never the secret.
* Sessions live in memory (a daemon restart logs everyone out), expire after the idle
  time (settings ``http_session_minutes``) and after ``MAX_SESSION_S`` in any case; each
  carries a CSRF token that every POST must echo.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from daemon.definition.model import WebUser

logger = logging.getLogger(__name__)

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 14, 8, 1
PBKDF2_ITERATIONS = 600_000
MAX_FAILURES = 5
WINDOW_S = 300.0
MAX_SESSION_S = 12 * 3600.0
BASIC_CACHE_S = 300.0
MAX_SESSIONS = 10_000  # a flood of logins cannot grow memory without bound
ROLES = ("admin", "supervisor", "viewer")


# --- secrets -----------------------------------------------------------------------------

def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_secret(secret: str, *, salt: bytes | None = None) -> str:
    """``scrypt$16384$8$1$<salt>$<hash>`` for the settings' ``http_users`` (base64 parts)."""
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R,
                            p=SCRYPT_P, maxmem=64 * 1024 * 1024, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_secret(stored: str, given: str) -> bool:
    """Does ``given`` match ``stored`` (a hash, or a plain secret from ``${ENV}``)?"""
    given_b = given.encode("utf-8")
    try:
        if stored.startswith("scrypt$"):
            _, n, r, p, salt, digest = stored.split("$")
            want = base64.b64decode(digest)
            got = hashlib.scrypt(given_b, salt=base64.b64decode(salt), n=int(n), r=int(r),
                                 p=int(p), maxmem=128 * 1024 * 1024, dklen=len(want))
            return hmac.compare_digest(got, want)
        if stored.startswith("pbkdf2_sha256$"):
            _, iterations, salt, digest = stored.split("$")
            want = base64.b64decode(digest)
            got = hashlib.pbkdf2_hmac("sha256", given_b, base64.b64decode(salt),
                                      int(iterations), dklen=len(want))
            return hmac.compare_digest(got, want)
    except (ValueError, TypeError):
        logger.error("http: a stored secret hash is malformed; that login cannot succeed")
        return False
    return hmac.compare_digest(stored.encode("utf-8"), given_b)


# --- who is asking -----------------------------------------------------------------------

@dataclass(frozen=True)
class Principal:
    """An authenticated user (or the anonymous local user when no logins are configured)."""

    name: str
    role: str
    tenant: str | None  # None: every tenant

    def sees(self, tenant_id: str) -> bool:
        return self.tenant is None or self.tenant == tenant_id


LOCAL = Principal("local", "admin", None)  # loopback without configured logins


@dataclass
class Session:
    principal: Principal
    csrf: str
    created: float
    last_seen: float


class RateLimited(Exception):
    """Too many failed logins from this address or for this user; retry after ``seconds``."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"too many failed logins; try again in {int(seconds) + 1} s")
        self.seconds = seconds


class Authenticator:
    """Checks logins against ``users``; keeps sessions and the failed-login counts."""

    def __init__(self, users: Sequence[WebUser], *, idle_s: float = 3600.0,
                 clock: Callable[[], float] = time.monotonic,
                 run_blocking: Callable[..., object] | None = None) -> None:
        self.users = {u.name: u for u in users}
        self.idle_s = idle_s
        self.clock = clock
        self.sessions: dict[str, Session] = {}
        self._failures: dict[str, list[float]] = {}
        self._basic_ok: dict[bytes, tuple[float, Principal]] = {}
        self._run = run_blocking or _threadpool
        self.failed = 0

    @property
    def required(self) -> bool:
        return bool(self.users)

    # -- checking a secret ---------------------------------------------------------------
    def _blocked_for(self, keys: Sequence[str]) -> float:
        now = self.clock()
        worst = 0.0
        for key in keys:
            stamps = [t for t in self._failures.get(key, []) if now - t < WINDOW_S]
            if stamps:
                self._failures[key] = stamps
            else:
                self._failures.pop(key, None)
            if len(stamps) >= MAX_FAILURES:
                worst = max(worst, WINDOW_S - (now - stamps[0]))
        return worst

    def _fail(self, keys: Sequence[str], name: str, address: str) -> None:
        self.failed += 1
        now = self.clock()
        for key in keys:
            self._failures.setdefault(key, []).append(now)
        if len(self._failures) > 100_000:  # an address sweep: forget the oldest keys
            for key in list(self._failures)[:50_000]:
                self._failures.pop(key, None)
        logger.warning("http: login failed user=%r from=%s", name[:64], address)

    def check(self, name: str, secret: str, address: str) -> Principal | None:
        """The principal for a name and secret, or None; raises RateLimited when blocked."""
        keys = (f"addr:{address}", f"user:{name[:64]}")
        wait = self._blocked_for(keys)
        if wait > 0:
            logger.warning("http: login refused (rate limit) user=%r from=%s", name[:64],
                           address)
            raise RateLimited(wait)
        user = self.users.get(name)
        # an unknown user costs a hash too, so timing does not tell which names exist
        stored = user.secret if user is not None else _DUMMY_HASH
        ok = bool(self._run(verify_secret, stored, secret)) and user is not None
        if not ok:
            self._fail(keys, name, address)
            return None
        return Principal(user.name, user.role, user.tenant)

    def check_basic(self, name: str, secret: str, address: str) -> Principal | None:
        key = hashlib.sha256(f"{name}\0{secret}".encode("utf-8")).digest()
        hit = self._basic_ok.get(key)
        now = self.clock()
        if hit is not None and now - hit[0] < BASIC_CACHE_S and name in self.users:
            return hit[1]
        principal = self.check(name, secret, address)
        if principal is not None:
            if len(self._basic_ok) > 1000:
                self._basic_ok.clear()
            self._basic_ok[key] = (now, principal)
        return principal

    # -- sessions ------------------------------------------------------------------------
    def open_session(self, principal: Principal) -> tuple[str, Session]:
        self._expire()
        if len(self.sessions) >= MAX_SESSIONS:  # drop the least recently used
            oldest = min(self.sessions, key=lambda s: self.sessions[s].last_seen)
            self.sessions.pop(oldest, None)
        sid = secrets.token_urlsafe(32)
        now = self.clock()
        session = Session(principal, secrets.token_urlsafe(24), now, now)
        self.sessions[sid] = session
        logger.info("http: login user=%s role=%s tenant=%s", principal.name, principal.role,
                    principal.tenant or "*")
        return sid, session

    def session(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        session = self.sessions.get(sid)
        if session is None:
            return None
        now = self.clock()
        if now - session.last_seen > self.idle_s or now - session.created > MAX_SESSION_S:
            self.sessions.pop(sid, None)
            return None
        # the user may have been removed or changed since: the settings are the truth
        user = self.users.get(session.principal.name)
        if user is None or (user.role, user.tenant) != (session.principal.role,
                                                        session.principal.tenant):
            self.sessions.pop(sid, None)
            return None
        session.last_seen = now
        return session

    def close_session(self, sid: str | None) -> None:
        if sid:
            session = self.sessions.pop(sid, None)
            if session is not None:
                logger.info("http: logout user=%s", session.principal.name)

    def _expire(self) -> None:
        now = self.clock()
        for sid, s in list(self.sessions.items()):
            if now - s.last_seen > self.idle_s or now - s.created > MAX_SESSION_S:
                self.sessions.pop(sid, None)


_DUMMY_HASH = ("scrypt$16384$8$1$" + _b64(b"hotline-dummy-salt") + "$"
               + _b64(b"\0" * 32))


def _threadpool(fn: Callable[..., object], *args: object) -> object:
    """Run a CPU-heavy call (a hash) in gevent's thread pool: the hub keeps serving."""
    import gevent

    return gevent.get_hub().threadpool.apply(fn, args)
