"""gunicorn's socket unreader without its copies, for a worker that collects whole requests.

gunicorn's :class:`~gunicorn.http.unreader.Unreader` keeps what it has read ahead in a BytesIO
and copies all of it twice on every ``read`` and ``unread``: harmless for the few KB it reads at a
time, but serve's worker collects a request's whole body (up to 8 MB) before the app runs, so
parsing the head line by line and draining a refused 4 MB body 64 KB at a time copied hundreds of
MB each, holding the GIL: with the worker saturated, /ping waited up to 2.5 s for it (profiled
with py-spy). This one keeps the bytes in one bytearray with a read offset, and a read of "the
next chunk" (which the head parser follows with an unread of what it did not use) returns at most
:data:`NEXT_CHUNK_BYTES` of them. Hand-written: gunicorn has no setting for it.
"""

from __future__ import annotations

from typing import Any

from gunicorn.http.unreader import SocketUnreader

COMPACT_BYTES = 1 << 20  # bytes already read are dropped from the front once past this
NEXT_CHUNK_BYTES = 64 * 1024  # what a read of "the next chunk" returns at most of those held


class ArrivedUnreader(SocketUnreader):
    """A SocketUnreader whose read-ahead is a bytearray and an offset (see the module)."""

    def __init__(self, sock: Any, max_chunk: int = 8192):
        super().__init__(sock, max_chunk)
        self.data = bytearray()
        self.start = 0  # data[start:] is what is still to be read

    def __len__(self) -> int:
        return len(self.data) - self.start

    def append(self, more: bytes) -> None:
        """Bytes the worker received for this connection, after those held."""
        self.data += more

    def head(self, limit: int) -> bytes:
        """The first ``limit`` bytes held (a copy of at most that many)."""
        return bytes(self.data[self.start:self.start + limit])

    def take_buffered(self) -> bytes:
        held = bytes(self.data[self.start:])
        self.data, self.start = bytearray(), 0
        return held

    def read(self, size: int | None = None, read_ahead: int | None = None) -> bytes:
        if size is not None and not isinstance(size, int):
            raise TypeError("size parameter must be an int or long.")
        if size == 0:
            return b""
        if size is not None and size < 0:
            size = None
        if size is None:
            if not len(self):
                return self.chunk(read_ahead)
            size = min(len(self), max(NEXT_CHUNK_BYTES, read_ahead or 0))
        while len(self) < size:
            more = self.chunk(max(size, read_ahead or 0) - len(self))
            if not more:
                return self.take_buffered()
            self.data += more
        taken = bytes(self.data[self.start:self.start + size])
        self.start += size
        if self.start > COMPACT_BYTES and self.start * 2 > len(self.data):
            del self.data[:self.start]
            self.start = 0
        return taken

    def unread(self, data: bytes) -> None:
        if len(data) <= self.start:  # what was just read: put back in place
            self.start -= len(data)
            self.data[self.start:self.start + len(data)] = data
        else:
            self.data[:self.start] = data
            self.start = 0
