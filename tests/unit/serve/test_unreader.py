"""ArrivedUnreader reads as gunicorn's own Unreader does, without copying what it holds: any mix
of reads and unreads gives the stream in order, and gunicorn's parser takes requests from it."""

from __future__ import annotations

import random

from gunicorn.config import Config
from gunicorn.http.parser import RequestParser

from dogbreed.serve import unreader as module
from dogbreed.serve.unreader import ArrivedUnreader


class Source:
    """A socket that hands out ``data`` ``step`` bytes per recv."""

    def __init__(self, data: bytes, step: int):
        self.data, self.step = data, step

    def recv(self, size: int) -> bytes:
        taken, self.data = self.data[:min(size, self.step)], self.data[min(size, self.step):]
        return taken


def test_any_reads_and_unreads_give_the_stream_in_order(monkeypatch):
    monkeypatch.setattr(module, "COMPACT_BYTES", 64)  # compaction happens within the test
    monkeypatch.setattr(module, "NEXT_CHUNK_BYTES", 50)
    rng = random.Random(7)
    data = bytes(rng.randrange(256) for _ in range(5000))
    for held_first in (0, 100, 5000):  # bytes the worker collected before the parser reads
        held = ArrivedUnreader(Source(data[held_first:], 37))
        held.append(data[:held_first])
        consumed = b""
        while len(consumed) < len(data):
            size = rng.choice([None, 1, 7, 100, 900])
            got = held.read(size)
            if size is not None:
                assert len(got) == min(size, len(data) - len(consumed))  # all of it, while there is data
            else:
                assert 0 < len(got) <= max(50, 37)  # the next chunk: bounded, never the whole hold
            if rng.random() < 0.4:  # the parser puts back what it did not use
                back = rng.randrange(len(got) + 1)
                held.unread(got[len(got) - back:])
                got = got[:len(got) - back]
            consumed += got
        assert consumed == data
        assert held.read(10) == b"" and held.read() == b""  # the source is done


def test_gunicorns_parser_takes_a_whole_request_from_it():
    body = bytes(range(256)) * 4096  # 1 MB
    request = (b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n" % len(body)) + body + b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n"
    parser = RequestParser(Config(), Source(b"", 1), ("127.0.0.1", 1))
    held = parser.unreader = ArrivedUnreader(Source(b"", 1))
    held.append(request)  # all of it arrived before the parser runs, as the worker collects it
    first = next(parser)
    assert (first.method, first.path) == ("POST", "/invocations")
    assert first.body.read() == body
    second = next(parser)  # a pipelined request after it, on the same connection
    assert (second.method, second.path) == ("GET", "/ping")
