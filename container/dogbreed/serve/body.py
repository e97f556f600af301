"""Reading a request's body in ``serve``: bounded in bytes and in time, and a refused one dropped.

Every read of the client's bytes ends within the worker's idle timeout (a 408 when a body stops
arriving). A refused body is read and dropped, so the client reads the answer instead of a reset
connection, within :data:`DRAIN_LIMIT` bytes and :data:`DRAIN_SECONDS`; one still on the socket
is dropped only in a thread that admission can spare, so drains never take ``/ping``'s thread.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import select
import socket
import struct
import termios
import time
from collections.abc import Iterator
from typing import Any

from flask import request

from dogbreed.serve import payloads
from dogbreed.serve.admission import Admission
from dogbreed.serve.worker import IDLE_SECONDS, buffered_body

DRAIN_LIMIT = 64 * 1024 * 1024  # read and drop at most this much of a refused body
DRAIN_SECONDS = 5.0  # ... for at most this long
STALLED = "dogbreed.stalled"  # set in the WSGI environment once a read timed out


def whole(limit: int) -> bytes:
    """The whole body (a photo, or JSON), or RequestError(413) past ``limit`` or
    :data:`payloads.WHOLE_BODY_BYTES`, whichever is lower."""
    most = min(limit, payloads.WHOLE_BODY_BYTES)
    hint = "" if most == limit else " for a photo or a JSON body (send JSON Lines for more)"
    refuse_if_declared_over(most, hint)
    try:
        body = request.stream.read(most + 1)
    except OSError as exc:  # the worker's idle timeout on the socket
        raise stalled(exc) from None
    if len(body) > most:
        raise payloads.RequestError(413, f"request body is over the limit of {most:,} bytes{hint}")
    return body


def lines(limit: int) -> Iterator[bytes]:
    """The body's lines as they arrive, RequestError(413) once past ``limit`` in all or a line
    past :data:`payloads.WHOLE_BODY_BYTES` (a line is parsed whole, like a JSON body)."""
    refuse_if_declared_over(limit)
    longest = min(limit, payloads.WHOLE_BODY_BYTES)
    left = limit + 1
    number = 0
    stream = line_reader(request.stream)
    while True:
        number += 1
        try:
            line = stream.readline(min(left, longest + 1))
        except OSError as exc:  # the worker's idle timeout on the socket
            raise stalled(exc) from None
        if not line:
            return
        left -= len(line)
        if left <= 0:
            raise payloads.RequestError(413, f"request body is over the limit of {limit:,} bytes")
        if len(line) > longest:
            raise payloads.RequestError(413, f"line {number}: over {longest:,} bytes; split the "
                                             "photos over more lines")
        yield line


def line_reader(stream: Any) -> Any:
    """``stream``, read in blocks: werkzeug's LimitedStream (what Flask reads from a WSGI server that
    does not terminate the input, and from its test client) inherits IOBase's readline, which reads
    one byte a call (a 100 MB line took 55 s); a buffer in front of it finds lines in blocks.
    gunicorn's own body (``wsgi.input_terminated``) reads in blocks already."""
    return io.BufferedReader(stream, 64 * 1024) if isinstance(stream, io.RawIOBase) else stream


def refuse_if_declared_over(limit: int, hint: str = "") -> None:
    """RequestError(413) when the declared length is past ``limit`` (the body dropped first;
    called within the request's admission, which the drain counts against)."""
    length = request.content_length
    if length is not None and length > limit:
        drain(None, min(length, DRAIN_LIMIT))
        raise payloads.RequestError(413, f"request body is {length:,} bytes; the limit is {limit:,}{hint}")


def stalled(exc: OSError) -> payloads.RequestError:
    """The 408 for a body that stopped arriving; the connection closes after it (no drain)."""
    request.environ[STALLED] = True
    sock = request.environ.get("gunicorn.socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RD)  # the answer still goes out; nothing more is read
    return payloads.RequestError(408, f"the request body stopped arriving ({exc.strerror or exc}); "
                                      f"each part must come within {IDLE_SECONDS:g}s")


def drain(admission: Admission | None, limit: int = DRAIN_LIMIT) -> None:
    """Drop what is left of a declared-length body, at most ``limit`` bytes. A body the worker
    buffered goes at once; one on the socket only as far as it has arrived, within
    :data:`DRAIN_SECONDS`, and only if ``admission`` (None: the caller is admitted already)
    spares a thread. What is left is gunicorn's to drop, or the connection closes."""
    length = request.content_length
    if length is None or request.environ.get(STALLED):
        return  # chunked (left to gunicorn), or the client stopped sending
    remaining = min(limit, length)
    sock = request.environ.get("gunicorn.socket")
    if buffered_body(request.environ) or sock is None:  # in memory already (or a test client)
        with contextlib.suppress(OSError):
            while remaining > 0 and (chunk := request.stream.read(min(remaining, 1 << 20))):
                remaining -= len(chunk)
        return
    with admission.spare() if admission else contextlib.nullcontext(True) as spared:
        if spared:
            _drain_arrived(sock, remaining)


def _drain_arrived(sock: socket.socket, remaining: int) -> None:
    until = time.monotonic() + DRAIN_SECONDS
    with contextlib.suppress(OSError, ValueError):
        while remaining > 0 and (left := until - time.monotonic()) > 0:
            arrived = _arrived(sock)
            if not arrived:
                if select.select([sock], [], [], min(left, 0.2))[0] and not _arrived(sock):
                    return  # readable with nothing to read: the client closed
                continue
            chunk = request.stream.read(min(arrived, remaining, 1 << 20))  # there already: no wait
            if not chunk:
                return
            remaining -= len(chunk)


def _arrived(sock: socket.socket) -> int:
    """Bytes waiting in the socket's receive buffer (FIONREAD)."""
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]
