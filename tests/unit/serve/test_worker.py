"""serve's worker: when a request's head (and a small declared body) has wholly arrived."""

from __future__ import annotations

from dogbreed.serve.unreader import ArrivedUnreader
from dogbreed.serve.worker import BUFFERED_BODY_BYTES, MAX_HEAD_BYTES, Arrival, _missing, buffered_body

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
