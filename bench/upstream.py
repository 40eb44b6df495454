"""A lean fake DashScope upstream for load: an asyncio protocol on uvloop and httptools.

It speaks the same streaming wire format and reads the same prompt directives as
``tests/fake_upstream.py`` (``[tokens=N]``, ``[delay=MS]``, ``[first_delay=MS]``), but it
serves thousands of streams from the load core cheaply: no task, coroutine or timer per
token, only one ``call_at`` per token scheduled on absolute times (so a stream keeps its
pace however busy the loop is) and one ``write`` per event. With no delay it writes events
in batches as fast as the socket takes them, honouring flow control.

Tokens are ``"t0 "``, ``"t1 "``, …; every event carries the cumulative usage, the last one
``finish_reason: "stop"``. Only streaming requests (``X-DashScope-SSE: enable``) are
served; anything else gets a 404.

Run: ``python -m bench.upstream --port 0`` prints ``PORT <n>`` once listening.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import sys
from typing import Any

import httptools
import orjson
import uvloop

DASHSCOPE_PATH = b"/api/v1/services/aigc/text-generation/generation"
_DIRECTIVE = re.compile(r"\[(\w+)=([^\]]*)\]")
_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)
_NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
_BATCH = 32
"""Events per write when there is no delay between tokens."""


def script_of(body: bytes) -> tuple[int, float, float, int]:
    """``(tokens, delay s, first delay s, input tokens)`` from a DashScope request body.

    Like a real model, it stops at the request's ``max_tokens`` (a conversation's title is
    asked with a small one, quoting the first message and its directives)."""
    request = orjson.loads(body)
    messages = request["input"]["messages"]
    prompt = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    values = dict(_DIRECTIVE.findall(prompt))
    words = sum(len(str(m.get("content", "")).split()) for m in messages)
    tokens = int(values.get("tokens", 16))
    limit = (request.get("parameters") or {}).get("max_tokens")
    return (
        tokens if limit is None else min(tokens, int(limit)),
        float(values.get("delay", 0)) / 1000,
        float(values.get("first_delay", 0)) / 1000,
        words,
    )


def event(seq: int, text: str, finish: str, usage: tuple[int, int]) -> bytes:
    """One DashScope SSE event (incremental output) as an HTTP chunk."""
    payload = orjson.dumps(
        {
            "output": {
                "choices": [
                    {"message": {"role": "assistant", "content": text}, "finish_reason": finish}
                ]
            },
            "usage": {
                "input_tokens": usage[0],
                "output_tokens": usage[1],
                "total_tokens": usage[0] + usage[1],
            },
            "request_id": "bench",
        }
    )
    data = b"id:%d\nevent:result\n:HTTP_STATUS/200\ndata:%s\n\n" % (seq, payload)
    return b"%x\r\n%s\r\n" % (len(data), data)


class Stream:
    """One streaming answer on one connection."""

    __slots__ = ("conn", "delay", "due", "index", "input_tokens", "loop", "tokens")

    def __init__(self, conn: UpstreamConnection, body: bytes) -> None:
        self.conn = conn
        self.loop = conn.loop
        self.tokens, self.delay, first_delay, self.input_tokens = script_of(body)
        self.index = 0
        self.due = self.loop.time() + first_delay
        conn.transport.write(_HEAD)
        if first_delay:
            self.loop.call_at(self.due, self.step)
        else:
            self.step()

    def chunk(self, index: int) -> bytes:
        last = index == self.tokens - 1
        return event(
            index + 1, f"t{index} ", "stop" if last else "null", (self.input_tokens, index + 1)
        )

    def step(self) -> None:
        conn = self.conn
        if conn.closed:
            return
        if not self.delay:
            if conn.paused:
                conn.resume = self.step
                return
            end = min(self.tokens, self.index + _BATCH)
            conn.transport.write(b"".join(self.chunk(i) for i in range(self.index, end)))
            self.index = end
        else:
            conn.transport.write(self.chunk(self.index))
            self.index += 1
        if self.index >= self.tokens:
            conn.transport.write(b"0\r\n\r\n")
            conn.stream = None
            conn.served += 1
            return
        if self.delay:
            self.due += self.delay
            self.loop.call_at(self.due, self.step)
        else:
            self.loop.call_soon(self.step)


class UpstreamConnection(asyncio.Protocol):
    """An HTTP/1.1 keep-alive connection; one request at a time, as aiohttp sends them."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.url = b""
        self.sse = False
        self.body: list[bytes] = []
        self.stream: Stream | None = None
        self.closed = False
        self.paused = False
        self.resume: Any = None
        self.served = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        resume, self.resume = self.resume, None
        if resume is not None:
            resume()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.url = b""
        self.sse = False
        self.body = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"x-dashscope-sse" and value.lower() == b"enable":
            self.sse = True

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.url != DASHSCOPE_PATH or not self.sse:
            self.transport.write(_NOT_FOUND)
            return
        self.stream = Stream(self, b"".join(self.body))


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(UpstreamConnection, host, port, backlog=4096)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    uvloop.run(serve(args.host, args.port))
    sys.exit(0)


if __name__ == "__main__":
    main()
