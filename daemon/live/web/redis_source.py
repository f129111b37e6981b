"""Live state read from Redis, for ``hotline web serve`` beside one or more daemons.

The daemons write the live state to Redis and publish every change on ``hotline:live``
(``daemon/live/state.py``). This process reads the keys for a snapshot (cached for
``cache_s``, so a burst of wallboard views costs one read) and follows the channel in a
greenlet of its own; each message (and every reconnect, as a ``resync``) wakes the
wallboard's live stream. Redis away: the snapshot raises, the stream's views say
stale, and the follower retries with a doubling delay.
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any, Callable

import gevent

from daemon.live.state import CHANNEL, PREFIX, snapshot_from_redis

logger = logging.getLogger(__name__)


class RedisSource:
    def __init__(self, url: str, *, prefix: str = PREFIX, channel: str = CHANNEL,
                 cache_s: float = 0.05, retry_max_s: float = 15.0) -> None:
        self.url = url
        self.prefix = prefix
        self.channel = channel
        self.cache_s = cache_s
        self.retry_max_s = retry_max_s
        self.connected = False
        self._snap: dict[str, Any] | None = None
        self._read_at = 0.0
        self._follower: gevent.Greenlet | None = None
        self._callbacks: list[Callable[[dict[str, Any]], None]] = []

    def snapshot(self) -> dict[str, Any]:
        now = time.monotonic()
        if self._snap is None or now - self._read_at > self.cache_s:
            self._snap = snapshot_from_redis(self.url, prefix=self.prefix)
            self._read_at = now
        return self._snap

    def subscribe(self, callback: Callable[[dict[str, Any]], None]) -> None:
        self._callbacks.append(callback)
        if self._follower is None:
            self._follower = gevent.spawn(self._follow)

    def health(self) -> dict[str, Any]:
        import redis

        client = redis.Redis.from_url(self.url, socket_timeout=1.0, socket_connect_timeout=1.0)
        try:
            client.ping()
            ok = True
        except redis.RedisError:
            ok = False
        finally:
            client.close()
        return {"ok": ok, "redis_connected": ok, "follows": self.channel}

    def close(self) -> None:
        follower, self._follower = self._follower, None
        if follower is not None:
            follower.kill(block=False)

    def _emit(self, message: dict[str, Any]) -> None:
        self._snap = None  # the next view re-reads the keys
        for callback in self._callbacks:
            try:
                callback(message)
            except Exception:
                logger.exception("live-stream subscriber failed")

    def _follow(self) -> None:
        import redis

        delay = 0.5
        while True:
            client = redis.Redis.from_url(self.url, socket_connect_timeout=2.0,
                                          socket_timeout=None, decode_responses=True)
            try:
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self.channel)
                self.connected = True
                delay = 0.5
                self._emit({"kind": "resync", "at_ms": int(time.time() * 1000)})
                for item in pubsub.listen():
                    if item.get("type") != "message":
                        continue
                    try:
                        message = json.loads(item["data"])
                    except (TypeError, ValueError):
                        continue
                    if isinstance(message, dict):
                        self._emit(message)
            except redis.RedisError as exc:
                if self.connected:
                    logger.warning("web: Redis channel %s lost (%s); retrying", self.channel, exc)
                self.connected = False
                self._emit({"kind": "resync", "at_ms": int(time.time() * 1000)})
            finally:
                client.close()
            gevent.sleep(delay)
            delay = min(self.retry_max_s, delay * 2)
