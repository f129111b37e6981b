"""The webhook delivery worker: outbox rows out to their receivers, signed, with retries.

One dispatcher per subscription claims due messages (``daemon.storage.outbox.claim``)
up to the subscription's ``concurrency`` and sends each in a greenlet of its own, over a
kept-alive HTTP connection of that subscription, inside a hard per-request timeout
(``gevent.Timeout``: a receiver that accepts and then hangs, or trickles bytes, is cut
off at ``timeout_s``). So a slow receiver only ever holds its own subscription's slots:
the event path never waits for a webhook, and other subscribers go on.

Any 2xx is delivered. Anything else - a refused connection, a timeout, a 500, a reply
that is not HTTP - is retried after an exponential backoff with full jitter
(``backoff_s``); the backoff state (``attempts``, ``next_attempt_ms``) is in the row, so
a restarted daemon resumes it. A message still undelivered ``dead_letter_after_s`` after
it was queued is dead (``hotline webhooks retry`` revives it).

Receivers deduplicate by the ``Hotline-Idempotency-Key`` header: a delivery whose
answer was lost (the daemon killed between send and commit, a timeout after the receiver
took it) is sent again after the claim's lease runs out.
"""
from __future__ import annotations

import http.client
import json
import logging
import os
import random
import socket
import time
import uuid
from typing import Any, Callable
from urllib.parse import urlsplit

from daemon.definition.model import WebhookSubscription
from daemon.integrations.webhooks import headers as signed_headers
from daemon.storage import outbox

logger = logging.getLogger(__name__)

BACKOFF_BASE_S = 1.0
BACKOFF_MAX_S = 600.0
LEASE_MARGIN_S = 10.0  # a claim outlives the request's timeout by this much
IDLE_POLL_S = 1.0  # look for due retries at least this often
MAX_REPLY_BYTES = 64 * 1024


def backoff_s(attempts: int, base_s: float = BACKOFF_BASE_S, max_s: float = BACKOFF_MAX_S,
              rand: Callable[[], float] = random.random) -> float:
    """Full jitter: uniform in [base/2, min(max, base * 2^(attempts-1))]."""
    cap = min(max_s, base_s * 2 ** max(0, attempts - 1))
    return max(base_s / 2, cap * rand())


class _Connections:
    """Kept-alive HTTP connections to one receiver, one per request in flight."""

    def __init__(self, url: str, timeout_s: float) -> None:
        parts = urlsplit(url)
        self.https = parts.scheme == "https"
        self.host = parts.hostname or ""
        self.port = parts.port
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.timeout_s = timeout_s
        self.host_header = parts.netloc.rsplit("@", 1)[-1]
        self._idle: list[http.client.HTTPConnection] = []

    def get(self) -> http.client.HTTPConnection:
        if self._idle:
            return self._idle.pop()
        # gevent's sockets whether or not the process is monkey-patched (the daemon is;
        # tests and the CLI are not), so a request never blocks the hub
        import gevent.socket
        import gevent.ssl

        if self.https:
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                self.host, self.port, timeout=self.timeout_s,
                context=gevent.ssl.create_default_context())
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
        conn._create_connection = gevent.socket.create_connection  # type: ignore[attr-defined]
        return conn

    def put(self, conn: http.client.HTTPConnection) -> None:
        self._idle.append(conn)

    def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()


class SendResult:
    __slots__ = ("ok", "status", "error")

    def __init__(self, ok: bool, status: int | None, error: str) -> None:
        self.ok, self.status, self.error = ok, status, error


def webhook_request(sub: WebhookSubscription, msg: outbox.Message, now_s: float
                    ) -> tuple[str, dict[str, str], bytes]:
    body = msg.payload.encode("utf-8")
    return "POST", signed_headers(sub.secret, int(now_s), body, msg.event, msg.event_id,
                                  msg.id), body


def send(conns: _Connections, sub: WebhookSubscription, msg: outbox.Message,
         clock: Callable[[], float] = time.time, gateway: Any = None) -> SendResult:
    """One signed POST (or, for an SMS, the gateway's request) within ``sub.timeout_s``;
    never raises."""
    import gevent

    if gateway is not None:
        from daemon.integrations.sms import gateway_request

        text = json.loads(msg.payload)
        method, head, body = gateway_request(gateway, text["to"], text["text"], text["sender"])
    else:
        method, head, body = webhook_request(sub, msg, clock())
    head["Host"] = conns.host_header
    conn = conns.get()
    try:
        with gevent.Timeout(sub.timeout_s):
            conn.request(method, conns.path, body=body, headers=head)
            reply = conn.getresponse()
            reply.read(MAX_REPLY_BYTES)
            status = reply.status
            keep = not reply.will_close and reply.isclosed()
    except gevent.Timeout:
        conn.close()
        return SendResult(False, None, f"no answer within {sub.timeout_s:g}s")
    except (OSError, http.client.HTTPException) as exc:
        conn.close()
        return SendResult(False, None, f"{exc.__class__.__name__}: {exc}"[:300])
    if keep:
        conns.put(conn)
    else:
        conn.close()
    if 200 <= status < 300:
        return SendResult(True, status, "")
    return SendResult(False, status, f"HTTP {status}")


class WebhookDelivery:
    """The worker: a dispatcher greenlet per subscription (see the module docstring)."""

    def __init__(self, url: str, center: Any, *, worker_id: str | None = None,
                 backoff_base_s: float = BACKOFF_BASE_S, backoff_max_s: float = BACKOFF_MAX_S,
                 lease_margin_s: float = LEASE_MARGIN_S, idle_poll_s: float = IDLE_POLL_S,
                 clock: Callable[[], float] = time.time, sms_gateway: Any = None) -> None:
        from daemon.storage.store import make_engine

        self.engine = make_engine(url)
        self.single = self.engine.dialect.name != "postgresql"
        self.worker = worker_id or f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        tenants = getattr(center, "tenants", ()) or ()
        self.subs = [(t.domain, s) for t in tenants for s in t.webhooks]
        self.sms_gateway = sms_gateway
        if sms_gateway is not None:  # a tenant's SMS: its subscription "sms" to the gateway
            self.subs += [(t.domain, WebhookSubscription(
                name=outbox.SMS, url=sms_gateway.url, events=(), secret="",
                concurrency=sms_gateway.concurrency, timeout_s=sms_gateway.timeout_s,
                dead_letter_after_s=24 * 3600)) for t in tenants if t.sms is not None]
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.lease_margin_s = lease_margin_s
        self.idle_poll_s = idle_poll_s
        self.clock = clock
        self.sent = 0
        self.delivered = 0
        self.failures = 0
        import gevent.event

        self._wakes = {(d, s.name): gevent.event.Event() for d, s in self.subs}
        self._greenlets: list[Any] = []
        self._done: list[tuple[str, int]] = []  # delivered, not yet recorded
        self._recorder: Any = None
        self._stopping = False

    def wake(self) -> None:
        """New messages were committed (the outbox writer's listener)."""
        for ev in self._wakes.values():
            ev.set()

    def start(self) -> "WebhookDelivery":
        import gevent

        from daemon.storage.store import _gevent_patched, _make_psycopg2_cooperative

        if _gevent_patched():  # PostgreSQL waits yield to the hub (the store does the same)
            _make_psycopg2_cooperative()
        if self.single:  # the only worker: claims left by a killed process are ours now
            try:
                with self.engine.begin() as conn:
                    released = outbox.release_claims(conn)
                if released:
                    logger.info("webhooks: %d messages claimed by a stopped daemon resent",
                                released)
            except Exception as exc:  # database away: the dispatchers retry
                logger.warning("webhooks: claims not released: %s", exc)
        for domain, sub in self.subs:
            self._greenlets.append(gevent.spawn(self._dispatch, domain, sub))
        if self.subs:
            logger.info("webhook delivery started subscriptions=%d", len(self.subs))
        return self

    def stop(self, timeout: float = 3.0) -> None:
        """Let requests in flight finish for ``timeout`` s; the rest are resent later."""
        import gevent

        self._stopping = True
        self.wake()
        gevent.joinall(self._greenlets, timeout=timeout)
        gevent.killall([g for g in self._greenlets if not g.dead], block=True, timeout=1)
        self._greenlets.clear()
        if self._recorder is not None:
            self._recorder.join(timeout=2)
        if self._done:
            self._write_delivered()
        self.engine.dispose()

    # -- one subscription ---------------------------------------------------------------------

    def _dispatch(self, domain: str, sub: WebhookSubscription) -> None:
        import gevent
        import gevent.pool

        conns = _Connections(sub.url, sub.timeout_s)
        pool = gevent.pool.Pool(sub.concurrency)
        wake = self._wakes[(domain, sub.name)]
        lease_ms = int((sub.timeout_s + self.lease_margin_s) * 1000)
        try:
            while not self._stopping:
                free = pool.free_count()
                claimed: list[outbox.Message] = []
                if free:
                    try:
                        with self.engine.begin() as conn:
                            claimed = outbox.claim(conn, domain, sub.name, free, self.worker,
                                                   lease_ms, int(self.clock() * 1000))
                    except Exception as exc:
                        logger.warning("webhooks %s/%s: outbox unreadable: %s", domain,
                                       sub.name, str(exc).splitlines()[0][:200])
                        wake.wait(self.idle_poll_s * 5)
                        wake.clear()
                        continue
                for msg in claimed:
                    pool.spawn(self._deliver, conns, sub, msg, wake)
                if claimed and len(claimed) == free:
                    pool.wait_available()
                    # let the requests finishing now free their slots too: one claim
                    # transaction for several messages, not one per message
                    gevent.sleep(0.002)
                    continue
                if not claimed:
                    wake.wait(self._idle_wait(domain, sub))
                    wake.clear()
                else:
                    gevent.sleep(0)
            pool.join(timeout=2)
        finally:
            conns.close()

    def _record_delivered(self, mid: str, status: int) -> None:
        import gevent

        self._done.append((mid, status))
        if self._recorder is None or self._recorder.dead:
            self._recorder = gevent.spawn(self._write_delivered)

    def _write_delivered(self) -> None:
        import gevent

        gevent.sleep(0.005)  # the deliveries finishing meanwhile join this transaction
        while self._done:
            done, self._done = self._done, []
            try:
                with self.engine.begin() as conn:
                    outbox.delivered(conn, done, self.worker, int(self.clock() * 1000))
                self.delivered += len(done)
            except Exception as exc:  # their leases run out and they are sent again
                logger.warning("webhooks: %d deliveries not recorded: %s", len(done),
                               str(exc).splitlines()[0][:200])

    def _idle_wait(self, domain: str, sub: WebhookSubscription) -> float:
        try:
            with self.engine.connect() as conn:
                due = outbox.next_due_ms(conn, domain, sub.name)
        except Exception:
            return self.idle_poll_s
        if due is None:
            return self.idle_poll_s
        return min(self.idle_poll_s, max(0.0, due / 1000 - self.clock()))

    def _deliver(self, conns: _Connections, sub: WebhookSubscription, msg: outbox.Message,
                 wake: Any) -> None:
        self.sent += 1
        gateway = self.sms_gateway if sub.name == outbox.SMS else None
        result = send(conns, sub, msg, self.clock, gateway)
        if result.ok:  # recorded in batches: one transaction per delivery caps the rate
            self._record_delivered(msg.id, result.status or 200)
        else:
            self._record_failed(sub, msg, result)
        wake.set()  # a slot is free

    def _record_failed(self, sub: WebhookSubscription, msg: outbox.Message,
                       result: SendResult) -> None:
        now = self.clock()
        # the last attempt falls on the dead-letter age; failing that, the message is dead
        deadline = msg.created_ms / 1000 + sub.dead_letter_after_s
        delay = min(backoff_s(msg.attempts, self.backoff_base_s, self.backoff_max_s),
                    max(0.0, deadline - now))
        dead = now >= deadline
        try:
            with self.engine.begin() as conn:
                outbox.failed(conn, msg.id, self.worker,
                              next_attempt_ms=None if dead else int((now + delay) * 1000),
                              status=result.status, error=result.error)
        except Exception as exc:  # the lease runs out and the message is sent again
            logger.warning("webhooks %s: result of %s not recorded: %s", sub.name, msg.id[:12],
                           str(exc).splitlines()[0][:200])
            return
        self.failures += 1
        if dead:
            logger.error("webhooks %s: %s %s dead after %d attempts: %s", sub.name, msg.event,
                         msg.event_id, msg.attempts, result.error)
        else:
            logger.info("webhooks %s: %s %s attempt %d failed (%s), retry in %.1fs", sub.name,
                        msg.event, msg.event_id, msg.attempts, result.error, delay)


def start_webhooks(settings: Any, center: Any) -> tuple[outbox.OutboxWriter | None,
                                                        Callable[[], None]]:
    """For ``build_service``: the store's outbox hook and a stop function (both inert
    when no tenant subscribes). The worker starts with the hub; it only reads the outbox."""
    gateway = getattr(settings, "sms_gateway", None)
    writer = outbox.OutboxWriter(center, sms_gateway=gateway)
    if not writer:
        return None, lambda: None
    worker = WebhookDelivery(settings.database_url, center, sms_gateway=gateway)
    writer.on_commit(worker.wake)
    import gevent

    gevent.spawn_later(0.5, worker.start)  # after the store's migration created the table
    return writer, worker.stop
