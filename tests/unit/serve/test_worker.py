"""serve's worker: when a request's head (and a small declared body) has wholly arrived, and what a
thread does once it has."""

from __future__ import annotations

import logging
import os
import socket

from gunicorn.config import Config
from gunicorn.workers.gthread import TConn

from dogbreed.serve import worker as worker_module
from dogbreed.serve.unreader import ArrivedUnreader
from dogbreed.serve.worker import (
    BUFFERED_BODY_BYTES,
    MAX_HEAD_BYTES,
    THREAD_WAIT_SECONDS,
    Arrival,
    Worker,
    _missing,
    buffered_body,
)

HEAD = b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"


def arrived(*parts: bytes) -> list[bool]:
    """Whether the request counts as complete after each part arrives, in order."""
    held, arrival, seen = holding(), Arrival(), []
    for part in parts:
        held.append(part)
        seen.append(_missing(held, arrival) == 0)
    return seen


def holding(data: bytes = b"") -> ArrivedUnreader:
    held = ArrivedUnreader(sock=None)
    held.append(data)
    return held


def test_a_head_is_complete_at_its_blank_line_and_a_small_body_when_all_of_it_is_in():
    assert arrived(HEAD, b"\r\n") == [False, True]
    assert arrived(HEAD + b"Content-Length: 5\r\n\r\n", b"abc", b"de") == [False, False, True]
    assert arrived(HEAD.lower() + b"content-length:  5 \r\n\r\nabcde") == [True]


def test_a_large_body_or_one_awaiting_100_continue_is_left_to_the_app():
    big = f"Content-Length: {BUFFERED_BODY_BYTES + 1}\r\n\r\n".encode()
    assert arrived(HEAD + big) == [True]
    assert arrived(HEAD + b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\n") == [True]


def test_what_is_missing_is_counted_in_bytes():
    assert _missing(holding(HEAD + b"Content-Length: 10\r\n\r\nabc"), Arrival()) == 7
    line = b"GET / HTTP/1.1\r\n"
    assert _missing(holding(line), Arrival()) == MAX_HEAD_BYTES - len(line)


def test_an_endless_head_goes_to_gunicorn_whose_limits_refuse_it():
    assert arrived(b"GET / HTTP/1.1\r\n", b"X: " + b"y" * MAX_HEAD_BYTES) == [False, True]


def test_the_app_is_told_a_body_is_buffered_exactly_when_the_worker_waited_for_it():
    small = {"CONTENT_LENGTH": "5"}
    assert buffered_body(small) and arrived(HEAD + b"Content-Length: 5\r\n\r\n") == [False]
    expect = {"CONTENT_LENGTH": "5", "HTTP_EXPECT": "100-continue"}
    assert not buffered_body(expect)  # the worker left it on the socket: a drain must bound it
    assert not buffered_body({"CONTENT_LENGTH": str(BUFFERED_BODY_BYTES + 1)})
    assert not buffered_body({})


class SteppingClock:
    """``time`` for the worker's module: each reading is ``step`` seconds after the last."""

    def __init__(self, step: float):
        self.now, self.step = 0.0, step

    def monotonic(self) -> float:
        self.now += self.step
        return self.now


def test_a_request_whose_last_bytes_arrive_past_the_threads_wait_is_served_not_deferred(monkeypatch):
    # A thread that read the whole request after its THREAD_WAIT_SECONDS gave the connection back to
    # the event loop, where nothing more would arrive to wake it: gunicorn then closed it unanswered
    # (CI, serve saturated: "Remote end closed connection without response").
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    served, peer = listener.accept()
    worker = Worker(age=1, ppid=os.getpid(), sockets=[], app=None, timeout=30, cfg=Config(),
                    log=logging.getLogger("test-worker"))
    try:
        client.sendall(HEAD + b"Content-Length: 5\r\n\r\nabcde")
        conn = TConn(worker.cfg, served, peer, listener.getsockname())
        monkeypatch.setattr(worker_module, "time", SteppingClock(step=THREAD_WAIT_SECONDS + 0.1))
        assert worker.collect(conn) is True
        assert _missing(conn.parser.unreader, conn.dogbreed_arrival) == 0
    finally:
        worker.tmp.close()
        for s in (client, served, listener):
            s.close()
