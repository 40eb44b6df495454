"""The load client: conversations over protocol v1, or the same streams read directly.

Run as a child process pinned to a core: ``python -m bench.workload '<job json>'``. It
prints one JSON line with the result (see :class:`Recorder.result`). Jobs:

``chat``
    ``conversations`` WebSocket connections (one owner each, connected in turn over
    ``stagger`` seconds), each sending ``turns`` messages in one conversation, one after
    the other's ``reply.done``, asking the fake upstream for ``tokens`` tokens ``delay_ms``
    apart. Time to first token is from sending ``chat.send`` to the first ``reply.delta``.
``direct``
    The same streams, POSTed straight to the fake upstream through liaotian's own
    DashScope provider on one pooled aiohttp session (the server's HTTP client and SSE
    decoder); time to first token is from the request to the first delta.
``api``
    The same streams as ``chat`` (``conversations`` of ``turns`` answers), each turn a
    ``POST /v1/chat/completions`` of one user message with ``stream: true``,
    ``stream_options.include_usage`` and ``store``, on one pooled aiohttp session, its
    server-sent events read line by line (no SDK: this client's CPU is not measured, but
    must not be the bottleneck). Time to first token is from the request to the first
    chunk with content.
``idle``
    ``conversations`` connections that only read ``hello``; prints ``READY n`` and keeps
    them open until a line arrives on stdin.

Everything is timed with ``time.monotonic()`` (one clock for every process here). A turn
is an error unless it ends ``completed`` with exactly ``tokens`` tokens in time.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time
from array import array
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np
import orjson
import uvloop

from bench.stats import histogram, percentiles


@dataclass(frozen=True)
class Job:
    kind: str
    conversations: int = 1
    turns: int = 1
    tokens: int = 200
    delay_ms: float = 20.0
    stagger: float = 0.0
    urls: tuple[str, ...] = ()
    upstream: str = ""
    prefix: str = "bench"
    turn_timeout: float = 120.0
    model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    prompt: str | None = None
    """For the embedded model: the message sent (the directives are for the fake)."""
    fresh: bool = False
    """Every turn in a new conversation (the same prompt, no history)."""
    store: bool = False
    """``api``: the request's ``store`` (false: the turn is not kept)."""
    bearer: str | None = None
    """Servers that require accounts: connection ``i`` signs in with the API token
    ``f"{bearer}-{i}"`` (its own user, made by :func:`bench.procs.sign_up`)."""

    def connect_to(self, index: int) -> tuple[str, dict[str, str]]:
        """The URL and headers of connection ``index``: one owner each."""
        url = self.urls[index % len(self.urls)]
        if self.bearer is not None:
            return url, {"Authorization": f"Bearer {self.bearer}-{index}"}
        return f"{url}?client_id={self.prefix}-{index}", {}

    def api_key(self, index: int) -> str:
        """The API key of stream ``index``: its user's token, or (open, per-client owners)
        its client id."""
        if self.bearer is not None:
            return f"{self.bearer}-{index}"
        return f"{self.prefix}-{index}"

    @classmethod
    def parse(cls, text: str) -> Job:
        values = json.loads(text)
        values["urls"] = tuple(values.get("urls", ()))
        return cls(**values)

    def prompt_for(self, conversation: int, turn: int) -> str:
        if self.prompt is not None:
            return self.prompt
        return (
            f"[tokens={self.tokens}] [delay={self.delay_ms:g}] "
            f"conversation {conversation} turn {turn}: tell me more"
        )


@dataclass
class Recorder:
    """Timings of one job; every figure is kept in milliseconds."""

    ttft: array[float] = field(default_factory=lambda: array("d"))
    gaps: array[float] = field(default_factory=lambda: array("d"))
    durations: array[float] = field(default_factory=lambda: array("d"))
    lag: array[float] = field(default_factory=lambda: array("d"))
    tokens: int = 0
    output_tokens: int = 0
    frames: int = 0
    turns: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    started: float = 0.0
    ended: float = 0.0
    cpu: float = 0.0
    """CPU seconds this process used from ``started`` to ``ended``."""

    def begin(self, at: float) -> None:
        self.started = at
        self.cpu = -time.process_time()

    def end(self) -> None:
        self.ended = time.monotonic()
        self.cpu += time.process_time()

    def error(self, what: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(what[:300])

    def result(self) -> dict[str, Any]:
        gaps = np.frombuffer(self.gaps, dtype=np.float64) if self.gaps else np.zeros(0)
        return {
            "ttft_ms": list(self.ttft),
            "durations_ms": list(self.durations),
            "gap_ms": percentiles(gaps),
            "gap_hist": histogram(gaps),
            "lag_ms": percentiles(np.frombuffer(self.lag, dtype=np.float64)),
            "tokens": self.tokens,
            "output_tokens": self.output_tokens,
            "frames": self.frames,
            "turns": self.turns,
            "errors": self.errors,
            "error_samples": self.error_samples,
            "started": self.started,
            "ended": self.ended,
            "cpu_s": self.cpu,
        }


async def watch_lag(recorder: Recorder, period: float = 0.01) -> None:
    """Record how late this process's event loop wakes up (is the load core keeping up?)."""
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + period
        await asyncio.sleep(period)
        recorder.lag.append((loop.time() - due) * 1000)


# ---------------------------------------------------------------------------------------------
# Through the server


async def chat_conversation(
    job: Job, index: int, http: aiohttp.ClientSession, recorder: Recorder, start_at: float
) -> None:
    await asyncio.sleep(max(0.0, start_at - time.monotonic()))
    url, headers = job.connect_to(index)
    try:
        async with http.ws_connect(url, autoping=True, max_msg_size=0, headers=headers) as ws:
            hello = orjson.loads((await ws.receive(timeout=30)).data)
            if hello.get("type") != "hello":
                recorder.error(f"expected hello, got {hello}")
                return
            conversation_id: str | None = None
            for turn in range(job.turns):
                conversation_id = await chat_turn(
                    job, ws, recorder, conversation_id, job.prompt_for(index, turn), turn
                )
                if conversation_id is None:
                    return
                if job.fresh:
                    conversation_id = None
    except (aiohttp.ClientError, TimeoutError, OSError) as error:
        recorder.error(f"connection {index}: {type(error).__name__}: {error}")


async def chat_turn(
    job: Job,
    ws: aiohttp.ClientWebSocketResponse,
    recorder: Recorder,
    conversation_id: str | None,
    prompt: str,
    turn: int,
) -> str | None:
    """One message and its whole reply; the conversation id, or None after an error."""
    frame: dict[str, Any] = {"type": "chat.send", "id": turn, "message": prompt}
    if conversation_id is not None:
        frame["conversation_id"] = conversation_id
    for name in ("model", "temperature", "max_tokens"):
        if getattr(job, name) is not None:
            frame[name] = getattr(job, name)
    clock = time.monotonic
    sent = clock()
    await ws.send_str(orjson.dumps(frame).decode())
    last: float | None = None
    seq = 0
    deadline = sent + job.turn_timeout
    ttft = recorder.ttft
    gaps = recorder.gaps
    while True:
        remaining = deadline - clock()
        if remaining <= 0:
            recorder.error("turn timed out")
            return None
        message = await ws.receive(timeout=remaining)
        now = clock()
        if message.type is not aiohttp.WSMsgType.TEXT:
            recorder.error(f"connection ended: {message.type.name} {message.extra}")
            return None
        data = orjson.loads(message.data)
        kind = data["type"]
        recorder.frames += 1
        if kind == "reply.delta":
            if last is None:
                ttft.append((now - sent) * 1000)
            else:
                gaps.append((now - last) * 1000)
            last = now
            seq = data["seq"]
        elif kind == "reply.started":
            conversation_id = data["conversation_id"]
        elif kind == "reply.done":
            recorder.turns += 1
            recorder.tokens += seq
            usage = data.get("usage") or {}
            recorder.output_tokens += usage.get("output_tokens") or seq
            recorder.durations.append((now - sent) * 1000)
            if data["status"] != "completed":
                recorder.error(f"reply {data['status']}: {data.get('error')}")
                return None
            if job.prompt is None and seq != job.tokens:
                recorder.error(f"reply had {seq} tokens, not {job.tokens}")
                return None
            return conversation_id
        elif kind == "error":
            recorder.error(f"error frame: {data.get('code')}: {data.get('message')}")
            return None


async def run_chat(job: Job, recorder: Recorder) -> None:
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as http:
        begin = time.monotonic() + 0.05
        step = job.stagger / job.conversations if job.conversations else 0.0
        recorder.begin(begin)
        await asyncio.gather(
            *(
                chat_conversation(job, index, http, recorder, begin + index * step)
                for index in range(job.conversations)
            )
        )
        recorder.end()


# ---------------------------------------------------------------------------------------------
# Through the OpenAI-compatible API

_DATA = b"data:"
_DONE = b"[DONE]"


async def api_turn(
    job: Job, http: aiohttp.ClientSession, index: int, recorder: Recorder, prompt: str
) -> bool:
    """One streamed chat completion, read whole; False after an error."""
    url = job.urls[index % len(job.urls)] + "/v1/chat/completions"
    body = orjson.dumps(
        {
            "model": job.model,
            "messages": [{"role": "user", "content": prompt}],
            "stream": True,
            "stream_options": {"include_usage": True},
            "store": job.store,
            **({"max_tokens": job.max_tokens} if job.max_tokens is not None else {}),
            **({"temperature": job.temperature} if job.temperature is not None else {}),
        }
    )
    headers = {"Authorization": f"Bearer {job.api_key(index)}", "Content-Type": "application/json"}
    clock = time.monotonic
    ttft, gaps = recorder.ttft, recorder.gaps
    sent = clock()
    last: float | None = None
    chars = 0
    usage: dict[str, Any] | None = None
    finish: str | None = None
    async with http.post(
        url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=job.turn_timeout)
    ) as response:
        if response.status != 200:
            recorder.error(f"HTTP {response.status}: {(await response.text())[:200]}")
            return False
        async for line in response.content:
            if not line.startswith(_DATA):
                continue  # the blank line that ends each event
            data = line[len(_DATA) :].strip()
            if data == _DONE:
                break
            recorder.frames += 1
            chunk = orjson.loads(data)
            if "error" in chunk:
                recorder.error(f"error event: {chunk['error']}")
                return False
            for choice in chunk.get("choices") or ():
                text = (choice.get("delta") or {}).get("content")
                if text:
                    now = clock()
                    if last is None:
                        ttft.append((now - sent) * 1000)
                    else:
                        gaps.append((now - last) * 1000)
                    last = now
                    chars += len(text)
                finish = choice.get("finish_reason") or finish
            usage = chunk.get("usage") or usage
        else:
            recorder.error("the stream ended without [DONE]")
            return False
    recorder.turns += 1
    recorder.durations.append((clock() - sent) * 1000)
    tokens = int((usage or {}).get("completion_tokens") or 0)
    recorder.tokens += tokens
    recorder.output_tokens += tokens
    if finish != "stop":
        recorder.error(f"finish_reason {finish!r}")
        return False
    if job.prompt is None and (tokens != job.tokens or chars != answer_chars(job.tokens)):
        recorder.error(f"answer of {tokens} tokens ({chars} characters), not {job.tokens}")
        return False
    return True


def answer_chars(tokens: int) -> int:
    """The length of the fake upstream's answer of ``tokens`` tokens: "t0 t1 … "."""
    return sum(len(f"t{n} ") for n in range(tokens))


async def run_api(job: Job, recorder: Recorder) -> None:
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as http:
        begin = time.monotonic() + 0.05
        step = job.stagger / job.conversations if job.conversations else 0.0

        async def stream(index: int) -> None:
            await asyncio.sleep(max(0.0, begin + index * step - time.monotonic()))
            try:
                for turn in range(job.turns):
                    if not await api_turn(job, http, index, recorder, job.prompt_for(index, turn)):
                        return
            except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as error:
                recorder.error(f"stream {index}: {type(error).__name__}: {error}")

        recorder.begin(begin)
        await asyncio.gather(*(stream(index) for index in range(job.conversations)))
        recorder.end()


# ---------------------------------------------------------------------------------------------
# Directly from the upstream


async def run_direct(job: Job, recorder: Recorder) -> None:
    from pydantic import SecretStr

    from liaotian.providers.base import ChatMessage, ChatRequest, Finish
    from liaotian.providers.dashscope import DashScopeProvider
    from liaotian.settings import Settings

    settings = Settings(
        dashscope_api_key=SecretStr("bench-key"),
        dashscope_base_url=f"{job.upstream}/api/v1",
        local_enabled=False,
    )
    # The server's session, as liaotian.services creates it.
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, ttl_dns_cache=300)
    async with aiohttp.ClientSession(connector=connector, json_serialize=None) as http:  # type: ignore[arg-type]
        provider = DashScopeProvider(settings, http)
        clock = time.monotonic

        async def conversation(index: int, start_at: float) -> None:
            await asyncio.sleep(max(0.0, start_at - clock()))
            for turn in range(job.turns):
                request = ChatRequest(
                    model="qwen-plus",
                    messages=[ChatMessage("user", job.prompt_for(index, turn))],
                )
                sent = clock()
                last: float | None = None
                count = 0
                try:
                    async for item in provider.stream(request):
                        now = clock()
                        if isinstance(item, Finish):
                            break
                        if last is None:
                            recorder.ttft.append((now - sent) * 1000)
                        else:
                            recorder.gaps.append((now - last) * 1000)
                        last = now
                        count += 1
                except Exception as error:
                    recorder.error(f"{type(error).__name__}: {error}")
                    return
                recorder.turns += 1
                recorder.frames += count
                recorder.tokens += count
                recorder.output_tokens += count
                recorder.durations.append((clock() - sent) * 1000)
                if count != job.tokens:
                    recorder.error(f"read {count} tokens, not {job.tokens}")

        begin = clock() + 0.05
        step = job.stagger / job.conversations if job.conversations else 0.0
        recorder.begin(begin)
        await asyncio.gather(
            *(conversation(index, begin + index * step) for index in range(job.conversations))
        )
        recorder.end()


# ---------------------------------------------------------------------------------------------
# Idle connections


async def run_idle(job: Job, recorder: Recorder) -> None:
    connector = aiohttp.TCPConnector(limit=0)
    sockets: list[aiohttp.ClientWebSocketResponse] = []
    async with aiohttp.ClientSession(connector=connector) as http:
        recorder.begin(time.monotonic())
        counter = itertools.count()

        async def connect(index: int) -> None:
            url, headers = job.connect_to(index)
            try:
                ws = await http.ws_connect(url, autoping=True, heartbeat=None, headers=headers)
                hello = await ws.receive(timeout=60)
                if hello.type is not aiohttp.WSMsgType.TEXT:
                    recorder.error(f"no hello: {hello.type.name} {hello.extra}")
                    await ws.close()
                    return
                sockets.append(ws)
                next(counter)
            except (aiohttp.ClientError, TimeoutError, OSError) as error:
                recorder.error(f"connection {index}: {type(error).__name__}: {error}")

        # In waves, so the listen backlog never overflows.
        wave = 200
        for first in range(0, job.conversations, wave):
            last = min(job.conversations, first + wave)
            await asyncio.gather(*(connect(index) for index in range(first, last)))
            print(f"OPEN {len(sockets)}", flush=True)
        recorder.turns = len(sockets)
        print(f"READY {len(sockets)}", flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.readline)
        closed = [ws for ws in sockets if ws.closed]
        if closed:
            recorder.error(f"{len(closed)} connections were closed by the server while idle")
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
        recorder.end()


RUNNERS = {"chat": run_chat, "api": run_api, "direct": run_direct, "idle": run_idle}


async def main_async(job: Job) -> dict[str, Any]:
    recorder = Recorder()
    watcher = asyncio.create_task(watch_lag(recorder))
    try:
        await RUNNERS[job.kind](job, recorder)
    finally:
        watcher.cancel()
    return recorder.result()


def main() -> None:
    job = Job.parse(sys.argv[1])
    result = uvloop.run(main_async(job))
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
