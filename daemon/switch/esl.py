"""The Event Socket connection: greenswitch behind one small adapter.

greenswitch 0.0.19's ``InboundESL`` stays the base class (the design's
choice: its handler registry, authenticate, context manager, error types),
but the parts that fail in production are replaced here:

* ``receive_events`` (reader greenlet): greenswitch reads line by line,
  percent-decodes *before* splitting lines (header injection: a caller-ID name
  ``a%0ACC-Action%3A%20member-queue-end`` becomes a header) and loops forever
  without yielding when the socket closes in the middle of a body (its
  ``_read_socket`` spins on ``read() == b""``, freezing the gevent hub). Ours
  reads raw chunks with a timeout, feeds :class:`daemon.switch.frames.EslParser`
  (split first, decode lazily), resolves command replies in order, and on EOF
  or error marks the connection dead and releases every pending command.
* ``process_events`` (dispatcher greenlet): greenswitch fires ``'*'``
  handlers only when no specific handler matched and logs through the root
  logger; an exception escaping there ends its loop. Ours calls ``on_frame``,
  ``on_event``, the specific handlers *and* every ``'*'`` handler for each
  event, each guarded, logging through this module's logger.
* ``send``: greenswitch uses ``socket.send`` (may write part of a command) and
  waits for the reply without a timeout, forever once the switch is gone
  (pending replies are never released by InboundESL). Ours holds a lock so
  replies match the order commands went out, uses ``sendall``, waits with a
  timeout, and raises :class:`EslDisconnected` at once when the link drops.
* ``connect``/``stop``: connect has timeouts for TCP, the auth/request greeting
  and the auth reply; ``stop()`` sends ``exit`` with a short timeout, closes the
  socket itself (waking the reader) and joins the greenlets with a bound, so it
  returns even while the peer keeps the socket open.

Also new: ``bgapi`` results matched by the ``Job-UUID`` we send with the
command (registered before sending, so a fast BACKGROUND_JOB is not missed);
an idle timeout (no bytes, not even HEARTBEAT, for N seconds = dead link); a
bounded reader->dispatcher backlog (a slow consumer stops the reader, and TCP
pushes back on the switch, instead of the heap growing); frames bounded by what a switch sends
(``frames.MAX_EVENT_BODY``/``MAX_BODY``: a bigger Content-Length drops the link, which the
supervisor reconnects) and a frame still incomplete after ``frame_stall_timeout`` s drops it
too, both logged and counted in ``stats``; ``on_frames`` hands
on one list of event frames per socket read (the daemon's fast path); command
arguments with line breaks are refused (they would smuggle a second command).

A connection is single-use: greenswitch instances cannot reconnect, so the
supervisor builds a fresh ``EslConnection`` for every attempt.
"""
from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from typing import Callable, Iterable

import gevent
import gevent.event
import gevent.lock
import gevent.queue
import gevent.socket as gsocket
from greenswitch.esl import InboundESL, NotConnectedError

from daemon.switch.events import Event
from daemon.switch.frames import EslParser, Frame, FrameError, FrameTooLarge, decode

logger = logging.getLogger(__name__)

READ_CHUNK = 256 * 1024
# A frame the switch started must be complete within this: FreeSWITCH writes a frame in
# one go (the largest reply, a few MB, takes milliseconds even over a WAN), so a frame
# still open after 10 s is a stalled link or a lying Content-Length eating the stream.
FRAME_STALL_S = 10.0


class EslError(Exception):
    """An ESL command failed or the connection is unusable."""


class EslDisconnected(EslError, NotConnectedError):
    """The connection to the switch is gone (or was never made)."""


class EslTimeout(EslError):
    """The switch did not answer a command in time."""


class EslAuthError(EslError):
    """The switch refused the password."""


class Reply:
    """A command's answer (``command/reply`` or ``api/response``).

    Shaped like greenswitch's ``ESLEvent`` (``headers`` dict of str, ``data``)
    so greenswitch's own ``authenticate`` keeps working on top of it.
    """

    __slots__ = ("frame", "headers", "data")

    def __init__(self, frame: Frame) -> None:
        self.frame = frame
        self.headers = {k.decode("utf-8", "replace"): decode(v) for k, v in frame.headers.items()}
        if frame.content_type == "api/response":
            self.data = frame.text
        else:
            self.data = self.headers.get("Reply-Text", "")

    @property
    def ok(self) -> bool:
        return not self.data.startswith("-ERR")

    def __repr__(self) -> str:
        return f"Reply({self.data[:60]!r})"


FrameCallback = Callable[[Frame], None]
FramesCallback = Callable[[list[Frame]], None]
EventCallback = Callable[[Event], None]


class _HardenedInbound(InboundESL):
    """greenswitch's InboundESL with reading, parsing, dispatch and sending replaced."""

    def __init__(self, host: str, port: int, password: str, timeout: float,
                 on_frame: FrameCallback | None, on_event: EventCallback | None,
                 on_disconnect: Callable[[], None] | None, idle_timeout: float | None,
                 on_frames: FramesCallback | None = None, max_backlog: int = 64,
                 frame_stall_timeout: float | None = FRAME_STALL_S) -> None:
        super().__init__(host, port, password, timeout=timeout)
        self.frame_stall_timeout = frame_stall_timeout
        self.on_frames = on_frames
        self.on_frame = on_frame
        self.on_event = on_event
        self.on_disconnect = on_disconnect
        self.idle_timeout = idle_timeout
        self.sock = None
        self.sock_file = None  # greenswitch's stop() closes it; we never make one
        self._parser = EslParser()
        self._pending: deque[gevent.event.AsyncResult] = deque()
        self._jobs: dict[str, gevent.event.AsyncResult] = {}
        self._send_lock = gevent.lock.Semaphore()
        # bounded: when the consumer falls behind, the reader stops reading and TCP pushes
        # back on the switch, instead of the daemon buffering a whole busy hour in memory
        self._batches: gevent.queue.Queue = gevent.queue.Queue(maxsize=max_backlog)
        self._dead = gevent.event.Event()
        self._rejected = False
        self.frames_received = 0
        self.garbage_frames = 0
        self.oversized_frames = 0  # Content-Length over the bound: the link was dropped
        self.stalled_frames = 0  # a frame not complete in frame_stall_timeout: link dropped

    # --- connection -------------------------------------------------------------------
    def connect(self) -> None:
        if self.sock is not None:
            raise EslError("an ESL connection cannot be reused; make a new one")
        try:
            self.sock = gsocket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as exc:
            self._dead.set()
            raise EslDisconnected(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        # the reader wakes at least once a second to notice stop() and idle links
        self._tick = min(1.0, self.idle_timeout) if self.idle_timeout else 1.0
        self.sock.settimeout(self._tick)
        self.connected = True
        self._receive_events_greenlet = gevent.spawn(self.receive_events)
        self._process_events_greenlet = gevent.spawn(self.process_events)
        if not self._auth_request_event.wait(self.timeout):
            self._shutdown("no auth/request greeting")
            raise EslTimeout(f"{self.host}:{self.port} sent no auth/request in {self.timeout} s")
        if self._rejected or not self.connected:
            self._shutdown("rejected")
            raise EslDisconnected(f"{self.host}:{self.port} rejected the connection")
        try:
            reply = self.command(f"auth {self.password}", self.timeout)
        except EslError:
            self._shutdown("auth failed")
            raise
        if reply.data != "+OK accepted":
            self._shutdown("auth refused")
            raise EslAuthError(f"{self.host}:{self.port} refused the ESL password")

    # --- reading ------------------------------------------------------------------------
    def receive_events(self) -> None:
        sock = self.sock
        idle = 0.0
        reason = "closed by peer"
        parser = self._parser
        # the frame in progress: which one (frames completed before it) and since when
        frame_no, frame_since = 0, 0.0
        try:
            while self._run:
                try:
                    data = sock.recv(READ_CHUNK)
                except gsocket.timeout:
                    idle += self._tick
                    if self.idle_timeout and idle >= self.idle_timeout:
                        reason = f"nothing received for {self.idle_timeout:g} s"
                        break
                    data = None
                except OSError as exc:
                    reason = f"read error: {exc}"
                    break
                if data is not None:
                    if not data:
                        if parser.buffered:
                            reason = ("closed by peer in the middle of a frame "
                                      f"({parser.buffered} bytes)")
                        break
                    idle = 0.0
                    refused = self._feed(data)
                    if refused is not None:
                        self.oversized_frames += 1
                        logger.warning("esl frame refused host=%s error=%s; dropping the link",
                                       self.host, refused)
                        reason = f"frame refused: {refused}"
                        break
                stall = self.frame_stall_timeout
                if stall:
                    now = time.monotonic()
                    if parser.partial is None or parser.completed != frame_no:
                        frame_no, frame_since = parser.completed, now
                    elif now - frame_since >= stall:
                        have, need = parser.partial
                        self.stalled_frames += 1
                        reason = (f"frame stalled: {have} of {need or '?'} bytes after "
                                  f"{now - frame_since:.0f} s")
                        logger.warning("esl %s host=%s; dropping the link", reason, self.host)
                        break
        except Exception:  # never let the reader die silently with connected=True
            logger.exception("esl reader failed host=%s", self.host)
            reason = "reader failed"
        finally:
            self._mark_dead(reason)

    def _feed(self, data: bytes) -> FrameTooLarge | None:
        """Parse and route ``data``; an oversized frame is returned (the link is then out
        of step: nothing after it in this read is trusted), garbage is skipped."""
        while True:
            try:
                frames = self._parser.feed(data)
            except FrameTooLarge as exc:
                if exc.frames:
                    self._route(exc.frames)
                return exc
            except FrameError as exc:
                self.garbage_frames += 1
                logger.warning("esl garbage skipped host=%s error=%s", self.host, exc)
                if exc.frames:
                    self._route(exc.frames)
                data = b""
                continue
            if frames:
                self._route(frames)
            return None

    def _route(self, frames: list[Frame]) -> None:
        events: list[Frame] = []
        for frame in frames:
            self.frames_received += 1
            if frame.is_event:
                if self._jobs:  # only while a bgapi waits: costs nothing otherwise
                    self._finish_job(frame)
                events.append(frame)
                continue
            ctype = frame.headers.get(b"Content-Type")
            if ctype in (b"command/reply", b"api/response"):
                if self._pending:
                    result = self._pending.popleft()
                    result.set(Reply(frame))
                else:
                    logger.warning("esl reply without a pending command host=%s", self.host)
            elif ctype == b"auth/request":
                self._auth_request_event.set()
            elif ctype == b"text/disconnect-notice":
                if frame.header("Content-Disposition") == "linger":
                    self._lingering = True
                else:
                    logger.info("esl disconnect notice host=%s", self.host)
                    self.connected = False
            elif ctype == b"text/rude-rejection":
                logger.warning("esl rude rejection host=%s text=%r", self.host, frame.text[:200])
                self._rejected = True
                self.connected = False
                self._auth_request_event.set()
            else:
                events.append(frame)  # log/data and anything new: handed on, not lost
        if events:
            self._batches.put(events)

    def _finish_job(self, frame: Frame) -> None:
        event = Event(frame.body)
        if event.name != "BACKGROUND_JOB":
            return
        job = event.get("Job-UUID")
        result = self._jobs.pop(job, None) if job else None
        if result is not None:
            result.set(event.body)

    # --- dispatch -----------------------------------------------------------------------
    def process_events(self) -> None:
        while True:
            try:
                batch = self._batches.get(timeout=0.5)
            except gevent.queue.Empty:
                if self._dead.is_set():
                    return  # everything received before the link died was handed on
                continue
            if batch is None:
                return
            if self.on_frames is not None:
                # events only: log/data and other frames go to the per-frame callbacks
                events = [f for f in batch if f.is_event]
                if events:
                    try:
                        self.on_frames(events)
                    except Exception:
                        logger.exception("esl on_frames handler failed host=%s", self.host)
            if self.on_frame is not None or self.on_event is not None or self.event_handlers:
                for frame in batch:
                    self._dispatch(frame)

    def _dispatch(self, frame: Frame) -> None:
        if self.on_frame is not None:
            try:
                self.on_frame(frame)
            except Exception:
                logger.exception("esl on_frame handler failed host=%s", self.host)
        if self.on_event is None and not self.event_handlers:
            return
        event = Event(frame.body)
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:
                logger.exception("esl on_event handler failed host=%s event=%s", self.host,
                                 event.name)
        if self.event_handlers:
            key = event.subclass if event.name == "CUSTOM" else event.name
            handlers = list(self.event_handlers.get(key, ()))
            # unlike greenswitch, catch-all handlers see every event
            handlers += [h for h in self.event_handlers.get("*", ()) if h not in handlers]
            for handler in handlers:
                try:
                    handler(event)
                except Exception:
                    logger.exception("esl handler %s failed host=%s event=%s",
                                     getattr(handler, "__name__", handler), self.host, event.name)

    # --- commands -----------------------------------------------------------------------
    def command(self, text: str, timeout: float | None = None) -> Reply:
        """Send one command and wait (bounded) for its reply."""
        if not self.connected or self._dead.is_set():
            raise EslDisconnected(f"not connected to {self.host}:{self.port}")
        timeout = self.timeout if timeout is None else timeout
        result = gevent.event.AsyncResult()
        with self._send_lock:
            # the reply is matched by position: append and write under one lock
            self._pending.append(result)
            try:
                self.sock.sendall((text + "\n\n").encode("utf-8"))
            except OSError as exc:
                self._mark_dead(f"write error: {exc}")
                raise EslDisconnected(f"write to {self.host}:{self.port} failed: {exc}") from exc
        try:
            # a late reply still pops this result, so later replies stay matched
            return result.get(timeout=timeout)
        except gevent.Timeout:
            verb = "auth" if text.startswith("auth ") else text.split(" ", 1)[0]
            raise EslTimeout(
                f"{verb}: no reply from {self.host}:{self.port} in {timeout} s") from None

    def send(self, data: str) -> Reply:  # greenswitch's API, now bounded
        return self.command(data)

    def bgapi(self, cmd: str, timeout: float | None) -> str:
        job_uuid = str(uuid.uuid4())
        result = gevent.event.AsyncResult()
        self._jobs[job_uuid] = result  # before sending: the job may finish before the reply is read
        try:
            reply = self.command(f"bgapi {cmd}\nJob-UUID: {job_uuid}", timeout)
            if not reply.ok:
                raise EslError(f"bgapi {cmd.split(' ', 1)[0]}: {reply.data}")
            switch_uuid = reply.headers.get("Job-UUID")
            if switch_uuid and switch_uuid != job_uuid:  # a switch that ignores our Job-UUID
                if result.ready():
                    return result.get()
                self._jobs[switch_uuid] = self._jobs.pop(job_uuid, result)
                job_uuid = switch_uuid
            try:
                return result.get(timeout=timeout)
            except gevent.Timeout:
                raise EslTimeout(
                    f"bgapi {cmd.split(' ', 1)[0]}: no BACKGROUND_JOB in {timeout} s") from None
        finally:
            self._jobs.pop(job_uuid, None)

    # --- teardown -----------------------------------------------------------------------
    def _mark_dead(self, reason: str) -> None:
        if self._dead.is_set():
            return
        was_connected = self.connected
        self.connected = False
        self._run = False
        self._dead.set()
        error = EslDisconnected(f"connection to {self.host}:{self.port} lost: {reason}")
        while self._pending:
            self._pending.popleft().set_exception(error)
        for result in list(self._jobs.values()):
            result.set_exception(error)
        self._jobs.clear()
        self._auth_request_event.set()
        try:
            self._batches.put_nowait(None)
        except gevent.queue.Full:
            pass  # the dispatcher drains the backlog, then sees the link is dead
        if was_connected:
            logger.info("esl disconnected host=%s port=%s reason=%s", self.host, self.port, reason)
        if self.on_disconnect is not None:
            try:
                self.on_disconnect()
            except Exception:
                logger.exception("esl on_disconnect handler failed host=%s", self.host)

    def _shutdown(self, reason: str) -> None:
        self._mark_dead(reason)
        sock = self.sock
        if sock is not None:
            try:
                sock.shutdown(gsocket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def stop(self, timeout: float = 2.0) -> None:
        """Close within about ``timeout`` s, whatever the peer does.

        ``exit`` first: its ``+OK bye`` comes after every event the switch sent
        before it, so waiting for it lets the reader hand those on (not lose them
        in the socket buffer); then the socket is closed and the dispatcher drains.
        """
        deadline = time.monotonic() + timeout
        if self.connected and not self._dead.is_set():
            try:
                self.command("exit", timeout * 0.75)
            except EslError:
                pass
        self._shutdown("stopped")
        greenlets = [g for g in (self._receive_events_greenlet, self._process_events_greenlet) if g]
        gevent.joinall(greenlets, timeout=max(0.2, deadline - time.monotonic()))
        for greenlet in greenlets:
            if not greenlet.dead:
                greenlet.kill(block=False)


class EslConnection:
    """One inbound Event Socket connection to one switch. Single use.

    ``on_frame(frame)`` gets every event frame (raw bytes included, for the
    journal); ``on_frames(frames)`` the same frames a socket read at a time (the
    daemon's path: one hand-over per read, not per event); ``on_event(event)``
    each as a lazy :class:`Event`. All run in
    the connection's dispatcher greenlet; an exception there is logged and the
    next event goes on. ``on_disconnect()`` runs once when the link is lost.
    """

    def __init__(self, host: str, port: int, password: str, timeout: float = 5.0, *,
                 on_frame: FrameCallback | None = None, on_event: EventCallback | None = None,
                 on_disconnect: Callable[[], None] | None = None,
                 idle_timeout: float | None = None,
                 on_frames: FramesCallback | None = None, max_backlog: int = 64,
                 frame_stall_timeout: float | None = FRAME_STALL_S) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self._esl = _HardenedInbound(host, port, password, timeout, on_frame, on_event,
                                     on_disconnect, idle_timeout, on_frames, max_backlog,
                                     frame_stall_timeout)

    def __repr__(self) -> str:  # never shows the password
        return f"EslConnection({self.host}:{self.port})"

    @property
    def connected(self) -> bool:
        return self._esl.connected and not self._esl._dead.is_set()

    @property
    def greenswitch(self) -> InboundESL:
        """The underlying greenswitch object (register_handle etc.)."""
        return self._esl

    @property
    def stats(self) -> dict[str, int]:
        esl = self._esl
        return {"frames": esl.frames_received, "garbage": esl.garbage_frames,
                "oversized": esl.oversized_frames, "stalled": esl.stalled_frames}

    def connect(self) -> "EslConnection":
        self._esl.connect()
        logger.info("esl connected host=%s port=%s", self.host, self.port)
        return self

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Block until the link is gone; True if it is."""
        return self._esl._dead.wait(timeout)

    def command(self, text: str, timeout: float | None = None) -> Reply:
        return self._esl.command(text, timeout)

    @staticmethod
    def _line(arg: str) -> str:
        # a line break would end the command early and smuggle in another one
        if "\n" in arg or "\r" in arg:
            raise ValueError("an ESL command argument cannot contain a line break")
        return arg

    def _checked(self, text: str, timeout: float | None) -> str:
        reply = self._esl.command(text, timeout)
        if not reply.ok:
            raise EslError(f"{text.split(' ', 1)[0]}: {reply.data}")
        return reply.data

    def api(self, cmd: str, timeout: float | None = None) -> str:
        """``api CMD``: the command's output text (``-ERR ...`` is returned as is)."""
        return self._esl.command(f"api {self._line(cmd)}", timeout).data

    def bgapi(self, cmd: str, timeout: float | None = None) -> str:
        """``bgapi CMD``: the job's output, matched by Job-UUID on BACKGROUND_JOB.

        The connection must be subscribed to BACKGROUND_JOB.
        """
        return self._esl.bgapi(self._line(cmd), timeout)

    def subscribe(self, events: Iterable[str], timeout: float | None = None) -> str:
        """``event plain NAME ...`` (custom subclasses after ``CUSTOM``)."""
        return self._checked(self._line("event plain " + " ".join(events)), timeout)

    def filter(self, header: str, value: str, timeout: float | None = None) -> str:
        return self._checked(self._line(f"filter {header} {value}"), timeout)

    def noevents(self, timeout: float | None = None) -> str:
        return self._checked("noevents", timeout)

    def close(self, timeout: float = 2.0) -> None:
        """Say ``exit`` (briefly) and drop the link; returns within ~``timeout`` s."""
        self._esl.stop(timeout)

    def __enter__(self) -> "EslConnection":
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()
