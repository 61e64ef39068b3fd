"""What bench.serve holds against any client, however its request arrives.

- Sizes: the body is counted as it streams in, so a chunked body (no Content-Length) or a form
  of many fields stops at the limit; nothing over it is read whole into memory or written to a
  temporary file first. A field other than the file is a name or a flag: FIELD_BYTES at most.
- Time: a request's headers must be in within serve.header_timeout_s of the connection's
  opening (uvicorn waits for them forever), its body within serve.body_timeout_s of the
  headers; past either, the client gets 408 and the connection is closed.
- Length: a clip over serve.max_audio_seconds, or over what the warm engine takes (longest_served),
  is refused with 413 before it is queued.
- Echoes: an error quotes at most QUOTED characters of what it refuses.
- A client that hangs up while its request waits: the server hears it (ASGI's disconnect) and
  drops the request from the queue, or from its answer if its batch already runs.
"""

from __future__ import annotations

import asyncio
import time

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

FIELD_BYTES = 64 * 1024  # a form field that is not the file
FORM_OVERHEAD = 64 * 1024  # a form's boundaries and part headers besides its file and fields
QUOTED = 40  # characters of a refused value an error quotes


def longest_served(cfg, engine) -> tuple[float, str]:
    """The longest clip served and what sets it: serve.max_audio_seconds, or less where the warm
    engine takes no longer one (voxtral_compile's one static cache), refused before it is queued
    rather than failed inside the engine."""
    limit = engine.longest_clip()
    if limit and limit[0] < cfg.serve.max_audio_seconds:
        return limit
    return cfg.serve.max_audio_seconds, "serve.max_audio_seconds"


class BodyTooLarge(Exception):
    pass


class BodyTooSlow(Exception):
    pass


def quoted(value) -> str:
    """A refused value as an error quotes it: whole if short, else its start and its length."""
    text = str(value)
    return repr(text) if len(text) <= QUOTED else f"{text[:QUOTED]!r}... ({len(text):,} characters)"


class LimitedBody:
    """The ASGI receive of a request whose body may hold at most most_bytes and must be in
    within timeout_s: past either, the next read raises BodyTooLarge or BodyTooSlow. It keeps
    the body's last bytes, so a form cut off before its closing boundary can be told apart."""

    def __init__(self, receive, most_bytes: int, timeout_s: float):
        self.receive, self.most_bytes = receive, most_bytes
        self.deadline = time.monotonic() + timeout_s
        self.seen, self.tail = 0, b""

    async def __call__(self):
        try:
            message = await asyncio.wait_for(self.receive(), max(0.0, self.deadline - time.monotonic()))
        except TimeoutError as err:
            raise BodyTooSlow from err
        if message["type"] == "http.request":
            body = message.get("body", b"")
            self.seen += len(body)
            if self.seen > self.most_bytes:
                raise BodyTooLarge
            self.tail = (self.tail + body)[-256:]
        return message

    def closed(self, content_type: str) -> bool:
        """Whether the multipart body ended with its closing boundary (--BOUNDARY--)."""
        boundary = content_type.partition("boundary=")[2].split(";")[0].strip().strip('"')
        return bool(boundary) and f"--{boundary}--".encode() in self.tail


async def client_gone(receive) -> None:
    """Returns once the client has disconnected (its request read whole, ASGI says
    http.disconnect when the connection closes or the response is complete)."""
    while (await receive())["type"] != "http.disconnect":
        pass


class TimedHeaders(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a deadline for each request's headers: a connection
    whose request line and headers are not all in within header_timeout_s of its opening (or
    of the last response, on a kept-alive connection) is answered 408 and closed."""

    header_timeout_s = 10.0  # set from serve.header_timeout_s before the server starts

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._header_deadline = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._header_deadline is not None and self.conn.their_state is not h11.IDLE:  # headers in
            self._header_deadline.cancel()
            self._header_deadline = None

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self._header_deadline is None:  # the next request's
            self._header_deadline = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def connection_lost(self, exc) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
        super().connection_lost(exc)

    def _headers_late(self) -> None:
        self._header_deadline = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        message = f"the request's headers were not all in within {self.header_timeout_s:g} s (serve.header_timeout_s)"
        self.transport.write(
            b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
            + f"content-length: {len(message)}\r\n\r\n{message}".encode()
        )
        self.transport.close()
