"""serve's gunicorn worker: gthread, with slow clients kept from holding its threads.

gunicorn's gthread worker hands a connection to a thread once its first byte arrives and then
reads the request line, headers and body with blocking reads that have no time limit: a few
dozen clients trickling bytes hold every thread, and ``/ping`` (SageMaker allows it 2 s) waits
behind them. This worker (hand-written: no gunicorn setting or WSGI library bounds it) reads a
request's head on its event loop without blocking, and a body of declared length up to
:data:`BUFFERED_BODY_BYTES` (every real-time invocation) in a thread that waits at most
:data:`THREAD_WAIT_SECONDS` for it before giving the connection back to the event loop. It
closes a connection whose head has not arrived within :data:`HEAD_SECONDS` of its first byte,
or whose whole request not within gunicorn's timeout (``SAGEMAKER_MODEL_SERVER_TIMEOUT``).
Once the app runs, each read and write waits at most :data:`IDLE_SECONDS` for the client, and a
request still there :data:`GRACE_SECONDS` past that timeout has its connection shut.
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import socket
import struct
import threading
import time
from functools import partial
from typing import Any

from gunicorn.workers import gthread

from .unreader import ArrivedUnreader

HEAD_SECONDS = 10.0  # from a request's first byte to the end of its headers
IDLE_SECONDS = 10.0  # in a thread: the longest wait for the client's next byte, or to take ours
GRACE_SECONDS = 5.0  # past the model server's timeout, a request's connection is shut
HEAD_END = b"\r\n\r\n"
MAX_HEAD_BYTES = 64 * 1024  # past this, gunicorn's own limits answer (431/400) as usual
BUFFERED_BODY_BYTES = 8 * 1024 * 1024  # a body of declared length up to this arrives before the app runs
LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d{1,12})[ \t]*\r\n", re.IGNORECASE)
CONTINUE = re.compile(rb"\r\nexpect:[ \t]*100-continue", re.IGNORECASE)  # the body follows our 100
THREAD_WAIT_SECONDS = 0.5  # a thread reading a body waits this long for it, then the event loop


def buffered_body(environ: dict[str, Any]) -> bool:
    """Whether the worker collected the whole body before the app ran (so reading or dropping
    it cannot wait on the client): the same rule as :func:`_missing`."""
    length = environ.get("CONTENT_LENGTH")
    if environ.get("HTTP_EXPECT", "").strip().lower() == "100-continue":
        return False  # the client sends it only once the app reads it
    return bool(length and length.isdigit() and int(length) <= BUFFERED_BODY_BYTES)


def set_idle_timeouts(sock: socket.socket, seconds: float) -> None:
    """SO_RCVTIMEO and SO_SNDTIMEO: the kernel's bound on each blocking read or write (unlike
    Python's own timeout, which gunicorn resets when it makes the socket blocking)."""
    whole = int(seconds)
    timeval = struct.pack("ll", whole, int((seconds - whole) * 1_000_000))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)


class Arrival:
    """How much of a connection's next request has arrived, and since when."""

    __slots__ = ("need", "since")

    def __init__(self) -> None:
        self.since: float | None = None  # the first byte's time
        self.need: int | None = None  # bytes the head and buffered body take, once the head is in


class Worker(gthread.ThreadWorker):
    """gthread that waits for a request's head on its event loop and for its body in threads
    that never block on the client (see the module's docstring)."""

    def init_process(self) -> None:
        self.in_threads: dict[Any, float] = {}  # connection -> when it is shut
        self.in_threads_lock = threading.Lock()
        if self.cfg.uid != os.geteuid() and os.geteuid() == 0:
            # gunicorn switches uid and gid next but keeps root's supplementary groups (disk, ...).
            os.setgroups([self.cfg.gid])
        super().init_process()

    def enqueue_req(self, conn: Any) -> None:
        """On the event loop: a new connection, or a kept-alive one with more to read (TLS
        handshakes block: those go to a thread, as in gthread)."""
        if self.cfg.is_ssl:
            super().enqueue_req(conn)
            return
        state = self.collect(conn, head_only=True)
        if state is gthread._DEFER:
            conn.timeout = time.monotonic() + self.cfg.keepalive
            self.pending_conns.append(conn)
            self.poller.register(conn.sock, selectors.EVENT_READ,
                                 partial(self.on_pending_socket_readable, conn))
        elif state:
            super().enqueue_req(conn)
        else:
            self.nr_conns -= 1
            conn.close()

    def on_pending_socket_readable(self, conn: Any, client: Any) -> None:
        """On the event loop: more of a waiting request arrived. The event loop reads a head
        (small, without blocking); a thread reads a body."""
        if _arrival(conn).need is None:
            state = self.collect(conn, head_only=True)
            if state is gthread._DEFER:  # still incomplete: wait on, idle time counted afresh
                self.pending_conns.remove(conn)
                conn.set_timeout()
                self.pending_conns.append(conn)  # the newest timeout: the queue stays in order
                return
            if not state:
                self.drop_pending(conn)
                return
        super().on_pending_socket_readable(conn, client)  # to a thread: handle()

    def handle(self, conn: Any) -> Any:
        """In a thread: read what has arrived of the request; serve it once it is all in, else
        give the connection back to the event loop (gthread's deferral) until more arrives."""
        state = self.collect(conn)
        if state is not True:
            return state
        arrival = _arrival(conn)
        since = arrival.since if arrival.since is not None else time.monotonic()
        conn.dogbreed_arrival = Arrival()  # the next request on this connection starts afresh
        with self.in_threads_lock:
            self.in_threads[conn] = since + float(self.cfg.timeout) + GRACE_SECONDS
        try:
            conn.sock.setblocking(True)
            set_idle_timeouts(conn.sock, IDLE_SECONDS)
            return super().handle(conn)
        finally:
            with self.in_threads_lock:
                self.in_threads.pop(conn, None)

    def murder_pending(self) -> None:
        """gunicorn's sweep of idle waiting connections (each second), then of waiting ones past
        their time to arrive, then the shutting of those past their time in a thread."""
        super().murder_pending()
        now = time.monotonic()
        for conn in [c for c in self.pending_conns if self.late(c, now)]:
            self.drop_pending(conn)
        with self.in_threads_lock:
            late = [conn for conn, until in self.in_threads.items() if now > until]
            for conn in late:
                del self.in_threads[conn]
        for conn in late:
            self.log.warning("shutting a connection from %s: its request is %.0f s past the "
                             "model server's timeout", conn.client, GRACE_SECONDS)
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)  # the thread's next read or write ends

    def drop_pending(self, conn: Any) -> None:
        """Close a connection waiting on the poller for the rest of its request."""
        self.pending_conns.remove(conn)
        with contextlib.suppress(OSError, KeyError, ValueError):
            self.poller.unregister(conn.sock)
        self.nr_conns -= 1
        conn.close()

    def collect(self, conn: Any, head_only: bool = False) -> Any:
        """Read what has arrived (on the event loop, ``head_only``: without blocking; in a thread:
        for at most :data:`THREAD_WAIT_SECONDS`): True once the head (and, unless ``head_only``,
        a declared body up to :data:`BUFFERED_BODY_BYTES`) is in the parser's buffer, gthread's
        ``_DEFER`` while it is not, False when the client went away or took too long."""
        now = time.monotonic()
        arrival = _arrival(conn)
        try:
            conn.init()  # the parser, whose unreader the bytes read here go to
            unreader = _unreader(conn)
            until = now + THREAD_WAIT_SECONDS
            # The event loop never waits; a thread waits on the socket, a little at a time.
            conn.sock.setblocking(not head_only)
            if not head_only:
                set_idle_timeouts(conn.sock, THREAD_WAIT_SECONDS)
            while (missing := _missing(unreader, arrival)) > 0:
                if head_only and arrival.need is not None:
                    return True
                try:
                    data = conn.sock.recv(min(missing, 1 << 22))
                except BlockingIOError:  # nothing more for now (or for THREAD_WAIT_SECONDS)
                    break
                if not data:
                    return False  # closed before sending a whole request
                unreader.append(data)
                if arrival.since is None:
                    arrival.since = now
                if not head_only and time.monotonic() > until and _missing(unreader, arrival):
                    break  # slow but steady: back to the event loop for the rest (with all of
                    # it in, nothing more would arrive to wake the loop: the client would wait on)
            else:
                return True
            conn.sock.setblocking(False)
        except OSError:
            return False
        if self.late(conn, now):
            return False
        return gthread._DEFER

    def late(self, conn: Any, now: float) -> bool:
        """Whether a waiting request is past its time to arrive (then logged)."""
        arrival = _arrival(conn)
        if arrival.since is None:
            return False  # nothing yet: gunicorn's keepalive time applies
        limit = float(self.cfg.timeout) if arrival.need is not None else HEAD_SECONDS
        if now - arrival.since <= limit:
            return False
        self.log.info("closing a connection from %s: its request took over %.0f s to arrive",
                      conn.client, limit)
        return True


def _arrival(conn: Any) -> Arrival:
    arrival = getattr(conn, "dogbreed_arrival", None)
    if arrival is None:
        arrival = conn.dogbreed_arrival = Arrival()
    return arrival


def _unreader(conn: Any) -> ArrivedUnreader:
    """The connection's parser's unreader, made an :class:`ArrivedUnreader` when it is not one."""
    unreader = conn.parser.unreader
    if not isinstance(unreader, ArrivedUnreader):
        arrived = ArrivedUnreader(unreader.sock, unreader.mxchunk)
        arrived.append(unreader.take_buffered())
        unreader = conn.parser.unreader = arrived
    return unreader


def _missing(unreader: ArrivedUnreader, arrival: Arrival) -> int:
    """How many more bytes make what ``unreader`` holds a request's whole head, and its body when
    that is declared and small enough to wait for (else the app reads it, each read bounded by the
    idle timeout): 0 once they are in; while the head is incomplete, what is left of its limit."""
    size = len(unreader)
    if arrival.need is None:
        data = unreader.head(MAX_HEAD_BYTES)
        end = data.find(HEAD_END)
        if end < 0:
            return max(0, MAX_HEAD_BYTES - size)  # past it, gunicorn's own limits answer
        head = end + len(HEAD_END)
        match = LENGTH.search(data, 0, head)
        length = int(match.group(1)) if match else 0
        if length > BUFFERED_BODY_BYTES or CONTINUE.search(data, 0, end):
            length = 0  # the app reads it (or asks for it first)
        arrival.need = head + length
    return max(0, arrival.need - size)
