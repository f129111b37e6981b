"""The CRM lookup: a tenant's own HTTP service asked who a caller is, never slower than
its timeout.

``crm_lookup:`` of a tenant (docs/CUSTOMERS.md) gives a URL with ``{number}`` (the
caller's E.164 number, URL-encoded) and an optional bearer token. The answer is a JSON
object with at least ``name`` (``account_id``, ``vip``, ``tags``, ``language``, ``notes``
optional); 404 means "not a customer". Guarantees:

* at most ``timeout_ms`` per lookup (``gevent.Timeout`` around connect, send and read);
* answers, including "not a customer", are cached for ``cache_ttl_s``;
* a circuit breaker: after ``breaker_failures`` failures in a row (timeouts, refused
  connections, 5xx, replies that are not the JSON agreed) the CRM is not asked for
  ``breaker_open_s``; then one lookup tries it again. While open, a lookup returns at
  once, without context.

Any failure is "no context": the call goes on exactly as it would without a CRM.
"""
from __future__ import annotations

import http.client
import json
import logging
import time
from collections import OrderedDict
from typing import Any, Callable
from urllib.parse import quote, urlsplit

from daemon.definition.model import CrmLookup
from daemon.integrations.customers import Customer

logger = logging.getLogger(__name__)

CACHE_SIZE = 10_000


class CrmClient:
    def __init__(self, conf: CrmLookup, clock: Callable[[], float] = time.monotonic) -> None:
        self.conf = conf
        self.clock = clock
        self._cache: OrderedDict[str, tuple[float, Customer | None]] = OrderedDict()
        self._failures = 0
        self._open_until = 0.0
        self.asked = 0  # requests sent
        self.failed = 0
        self.skipped = 0  # lookups answered "no context" by the open breaker

    @property
    def open(self) -> bool:
        return self.clock() < self._open_until

    def lookup(self, number: str) -> Customer | None:
        """The CRM's customer for an E.164 number, or None (unknown, or no answer in time)."""
        now = self.clock()
        hit = self._cache.get(number)
        if hit is not None and hit[0] > now:
            self._cache.move_to_end(number)
            return hit[1]
        if now < self._open_until:
            self.skipped += 1
            return None
        try:
            found = self._ask(number)
        except Exception as exc:  # any failure is "no context"
            self.failed += 1
            self._failures += 1
            if self._failures >= self.conf.breaker_failures:
                self._open_until = self.clock() + self.conf.breaker_open_s
                logger.warning("CRM lookup failing (%s); not asked for %ds", exc,
                               self.conf.breaker_open_s)
            else:
                logger.info("CRM lookup failed: %s", exc)
            return None
        self._failures = 0
        self._cache[number] = (self.clock() + self.conf.cache_ttl_s, found)
        self._cache.move_to_end(number)
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return found

    def _ask(self, number: str) -> Customer | None:
        import gevent
        import gevent.socket
        import gevent.ssl

        url = self.conf.url.replace("{number}", quote(number, safe=""))
        parts = urlsplit(url)
        timeout = self.conf.timeout_ms / 1000
        if parts.scheme == "https":
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                parts.hostname or "", parts.port, timeout=timeout,
                context=gevent.ssl.create_default_context())
        else:
            conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
        conn._create_connection = gevent.socket.create_connection  # type: ignore[attr-defined]
        headers = {"Accept": "application/json", "User-Agent": "hotline-crm-lookup/1"}
        if self.conf.token:
            headers["Authorization"] = f"Bearer {self.conf.token}"
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.asked += 1
        try:
            with gevent.Timeout(timeout, TimeoutError(f"no answer within {timeout:g}s")):
                conn.request("GET", path, headers=headers)
                reply = conn.getresponse()
                body = reply.read(256 * 1024)
        finally:
            conn.close()
        if reply.status == 404:
            return None
        if reply.status != 200:
            raise ValueError(f"HTTP {reply.status}")
        return customer_of(json.loads(body), number)


def customer_of(data: Any, number: str) -> Customer:
    """The CRM's JSON as a Customer; ValueError if it is not the object agreed."""
    if not isinstance(data, dict) or not isinstance(data.get("name"), str) \
            or not data["name"].strip():
        raise ValueError("the answer is not a JSON object with a name")
    vip = data.get("vip", 0)
    if isinstance(vip, bool) or not isinstance(vip, int) or not 0 <= vip <= 9:
        raise ValueError("vip is not a whole number from 0 to 9")
    tags = data.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise ValueError("tags is not a list of texts")

    def text(key: str, limit: int) -> str | None:
        value = data.get(key)
        return str(value)[:limit] if value not in (None, "") else None

    return Customer(number=number, name=data["name"].strip()[:128],
                    account_id=text("account_id", 64), vip=vip,
                    tags=tuple(t[:32] for t in tags), language=text("language", 16),
                    notes=text("notes", 2000))
