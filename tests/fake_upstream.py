"""A fake LLM upstream: a real HTTP server speaking DashScope's native API and OpenAI's.

Routes (all behind ``Authorization: Bearer <api_key>``; a wrong key gets a 401 in the
route's own dialect):

- ``POST /api/v1/services/aigc/text-generation/generation`` — DashScope; SSE when the
  request has ``X-DashScope-SSE: enable``, one JSON body otherwise. A Qwen3.5+ model
  (``qwen3.5-plus``…) gets DashScope's 400 ``url error`` here, as from the real one.
- ``POST /api/v1/services/aigc/multimodal-generation/generation`` — the same, in the
  multimodal format: message ``content`` a list of ``{"text": …}`` / ``{"image": …}``
  parts, both ways.
- ``POST /v1/chat/completions`` — OpenAI; SSE when ``"stream": true``, with a usage chunk
  when ``stream_options.include_usage`` is set.
- ``GET /v1/models`` — OpenAI model list of ``models``.

Every answer is scripted by the text of the *last user message* (so concurrent requests
do not interfere). The reply to a prompt P is ``"echo: " + P`` (directives included),
sent in chunks of ``chunk_chars`` characters; :func:`reply_chunks` and
:func:`expected_reply` compute it. Directives, anywhere in the prompt:

``[tokens=N]``
    Reply with N chunks ``"t0 "``, ``"t1 "``, … instead of the echo.
``[delay=MS]`` / ``[first_delay=MS]``
    Sleep MS milliseconds between chunks / before the first chunk (or the JSON answer).
``[fault=CODE]``
    Answer with HTTP status CODE (e.g. 400, 401, 429, 500, 503) and the dialect's error
    body, before any token; a 429 carries ``Retry-After: S`` from ``[retry_after=S]``
    (default 2; fractions such as ``0.2`` are sent as they are).
``[fault=CODE_then_ok=N]``
    Answer the first N requests whose prompt is this one with HTTP status CODE (as
    ``[fault=CODE]``), then answer normally.
``[fault=drop_after=K]``
    Close the TCP connection abruptly (no end of the chunked body) after K chunks.
``[fault=eof_after=K]``
    End the body cleanly after K chunks, without a finish reason or ``[DONE]``.
``[fault=malformed]``
    After one chunk, send a ``data:`` line that is not JSON, then end.
``[fault=stream_error]``
    After one chunk (status 200), send an in-stream error (DashScope ``event:error`` with
    ``:HTTP_STATUS/400`` and code ``DataInspectionFailed``; OpenAI ``{"error": {"type":
    "server_error"}}``), then end.
``[fault=hang]``
    Send the response headers (or, without streaming, nothing), then wait forever.
``[fault=repeat]``
    Stream the first chunk again and again, forever (``[delay=MS]`` between chunks), until
    the client goes away.
``[fault=endless_data]``
    A hostile upstream: after the first chunk, ``data:`` lines of 1 KiB, 16 per write, forever
    and never a blank line, so the event never ends (``[delay=MS]`` between writes), until
    the client goes away. With ``[hold_at=BYTES]`` it stops once it has sent that many bytes
    of such lines (``stats.held`` counts the streams stopped there) and goes on when the test
    sets :attr:`FakeUpstream.resume`.

``[think=N]``
    When the request asks for thinking, N reasoning chunks ``"r0 "``, ``"r1 "``, … before
    the answer (:func:`reasoning_chunks`). DashScope: ``parameters.enable_thinking`` true,
    or absent for a model that thinks by default (``qwq``/``qvq``/``deepseek-r1``/
    ``*-thinking*``, Qwen3.5+); in ``message.reasoning_content``. It answers 400 to
    thinking without ``incremental_output`` (or without SSE), as the real one does.
    OpenAI: ``chat_template_kwargs.enable_thinking`` or ``enable_thinking`` true, or
    neither for a model named as thinking; in ``delta.reasoning_content`` (or
    ``message.reasoning_content`` without streaming).
``[reasoning_field=NAME]``
    OpenAI dialect: the reasoning goes in field NAME (e.g. ``reasoning``) instead.
``[inline_think=1]``
    OpenAI dialect: the reasoning goes inline in ``content`` as
    ``"<think>" + reasoning + "</think>\n\n"`` before the answer, all of it cut into
    ``chunk_chars`` pieces, so the tags are split across chunks (:func:`inline_chunks`).
``[search=K]``
    DashScope with ``parameters.enable_search``: the first event (or the JSON answer) has
    ``output.search_info.search_results``, K results (:func:`search_results`). Ignored by
    the OpenAI dialect.
``[cached=C]``
    Usage reports C cached input tokens (``prompt_tokens_details.cached_tokens``, both
    dialects).

Title requests (a system message that mentions "title", as liaotian's background titles
send; the first message of the conversation, with its directives, is in the user message)
are counted in ``stats.title_requests`` and follow three directives of their own, which
other requests ignore:

``[title=T]``
    Answer T (in chunks) instead of the echo; the prompt's other directives are ignored.
``[title_fault=CODE]``
    Answer with HTTP status CODE, as ``[fault=CODE]``.
``[title_hold=1]``
    Wait before answering until the test sets :attr:`FakeUpstream.release_titles`
    (``stats.titles_held`` counts the waiting ones).

Images in the last user message (DashScope ``{"image": …}`` parts, OpenAI ``image_url``
parts) are counted and the answer says so: ``"echo: (saw N image(s)) " + P``
(:func:`expected_reply` with ``images=N``).

``max_tokens`` in the request is honoured: the reply stops after that many answer chunks
with finish reason ``"length"``. Input tokens are counted as whitespace-separated words of
the text of all messages (:func:`count_input_tokens`); output tokens are the chunks sent,
reasoning ones included (also reported as reasoning tokens).

:class:`FakeStats` counts requests, open streams and client disconnects; tests wait on it
with :meth:`FakeUpstream.wait_for` instead of sleeping.

Run it standalone for manual checks: ``python tests/fake_upstream.py --port 9000``.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import orjson
from aiohttp import web

DASHSCOPE_PATH = "/api/v1/services/aigc/text-generation/generation"
DASHSCOPE_MULTIMODAL_PATH = "/api/v1/services/aigc/multimodal-generation/generation"
OPENAI_CHAT_PATH = "/v1/chat/completions"
OPENAI_MODELS_PATH = "/v1/models"

_DIRECTIVE = re.compile(r"\[(\w+)=([^\]]*)\]")


# ---------------------------------------------------------------------------------------------
# Scripts


@dataclass(frozen=True)
class Script:
    """What a prompt asks the fake to do; see the module docstring for the syntax."""

    prompt: str
    tokens: int | None = None
    delay: float = 0.0
    first_delay: float = 0.0
    fault: str | None = None
    fault_arg: int | None = None
    retry_after: str = "2"
    hold_at: int | None = None
    think: int = 0
    reasoning_field: str = "reasoning_content"
    inline_think: bool = False
    search: int = 0
    cached: int | None = None
    answer: str | None = None
    """The whole answer instead of the echo (a title request's ``[title=T]``)."""
    title: str | None = None
    title_fault: str | None = None
    title_hold: bool = False

    @classmethod
    def parse(cls, prompt: str) -> Script:
        values = dict(_DIRECTIVE.findall(prompt))
        fault, _, arg = values.get("fault", "").partition("=")
        return cls(
            prompt=prompt,
            tokens=int(values["tokens"]) if "tokens" in values else None,
            delay=float(values.get("delay", 0)) / 1000,
            first_delay=float(values.get("first_delay", 0)) / 1000,
            fault=fault or None,
            fault_arg=int(arg) if arg else None,
            retry_after=values.get("retry_after", "2"),
            hold_at=int(values["hold_at"]) if "hold_at" in values else None,
            think=int(values.get("think", 0)),
            reasoning_field=values.get("reasoning_field", "reasoning_content"),
            inline_think=values.get("inline_think", "0") not in ("", "0"),
            search=int(values.get("search", 0)),
            cached=int(values["cached"]) if "cached" in values else None,
            title=values.get("title"),
            title_fault=values.get("title_fault"),
            title_hold=values.get("title_hold", "0") not in ("", "0"),
        )

    @property
    def http_status(self) -> int | None:
        """The status of an up-front HTTP error fault, if that is the fault."""
        return int(self.fault) if self.fault and self.fault.isdigit() else None

    @property
    def fail_first(self) -> tuple[int, int] | None:
        """``(status, N)`` of a ``[fault=CODE_then_ok=N]`` fault."""
        code, then_ok, _ = (self.fault or "").partition("_then_ok")
        if not then_ok or not code.isdigit() or self.fault_arg is None:
            return None
        return int(code), self.fault_arg


def reply_chunks(prompt: str, chunk_chars: int = 4, *, images: int = 0) -> list[str]:
    """The answer chunks the fake streams for ``prompt`` (before any ``max_tokens`` cut),
    the last user message having ``images`` images."""
    script = Script.parse(prompt)
    if script.tokens is not None:
        return [f"t{i} " for i in range(script.tokens)]
    text = "echo: " + (f"(saw {images} image(s)) " if images else "") + prompt
    return _cut(text, chunk_chars)


def _cut(text: str, chunk_chars: int) -> list[str]:
    return [text[i : i + chunk_chars] for i in range(0, len(text), chunk_chars)]


def expected_reply(prompt: str, chunk_chars: int = 4, *, images: int = 0) -> str:
    """The whole answer text the fake gives to ``prompt``."""
    return "".join(reply_chunks(prompt, chunk_chars, images=images))


def reasoning_chunks(prompt: str) -> list[str]:
    """The reasoning chunks the fake sends for ``prompt`` when thinking is on."""
    return [f"r{i} " for i in range(Script.parse(prompt).think)]


def expected_reasoning(prompt: str) -> str:
    """The whole reasoning the fake sends for ``prompt`` when thinking is on."""
    return "".join(reasoning_chunks(prompt))


def inline_chunks(prompt: str, chunk_chars: int = 4, *, images: int = 0) -> list[str]:
    """The ``content`` chunks of ``[inline_think=1]`` with thinking on: the reasoning in
    ``<think>…</think>`` and the answer, cut every ``chunk_chars`` characters."""
    text = (
        "<think>"
        + expected_reasoning(prompt)
        + "</think>\n\n"
        + expected_reply(prompt, chunk_chars, images=images)
    )
    return _cut(text, chunk_chars)


def search_results(count: int) -> list[dict[str, Any]]:
    """The ``search_info.search_results`` of ``[search=count]``."""
    return [
        {
            "icon": f"https://site{i}.example/favicon.ico",
            "index": i,
            "site_name": f"Site {i}",
            "title": f"Result {i}",
            "url": f"https://site{i}.example/page",
        }
        for i in range(1, count + 1)
    ]


def message_text(message: dict[str, Any]) -> str:
    """The text of a message: its string content, or its text parts joined (DashScope
    ``{"text": …}``, OpenAI ``{"type": "text", "text": …}``)."""
    content = message.get("content", "")
    if isinstance(content, list):
        return "".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return str(content)


def image_count(message: dict[str, Any]) -> int:
    """The images of a message: DashScope ``{"image": …}`` or OpenAI ``image_url`` parts."""
    content = message.get("content")
    if not isinstance(content, list):
        return 0
    return sum(
        1
        for part in content
        if isinstance(part, dict) and ("image" in part or part.get("type") == "image_url")
    )


def count_input_tokens(messages: Sequence[dict[str, Any]]) -> int:
    """The fake's input token count: whitespace-separated words of all messages' text."""
    return sum(len(message_text(message).split()) for message in messages)


def _last_user(messages: Sequence[dict[str, Any]]) -> Any:
    for message in reversed(messages):
        if message.get("role") == "user":
            return message
    return {}


def _last_user_text(messages: Sequence[dict[str, Any]]) -> str:
    return message_text(_last_user(messages))


def asks_for_title(messages: Sequence[dict[str, Any]]) -> bool:
    """A title request: its system message mentions "title"."""
    return any(
        message.get("role") == "system" and "title" in message_text(message).lower()
        for message in messages
    )


_QWEN_VERSION = re.compile(r"^qwen(\d+)(?:\.(\d+))?")


def newer_than_qwen3(model: str) -> bool:
    """Qwen3.5 and later, which DashScope serves on the multimodal endpoint only."""
    match = _QWEN_VERSION.match(model)
    return match is not None and (int(match.group(1)), int(match.group(2) or 0)) >= (3, 5)


def always_thinks(model: str) -> bool:
    """A model name that thinks without being asked (as the fake sees it)."""
    return model.startswith(("qwq", "qvq")) or "deepseek-r1" in model or "thinking" in model


# ---------------------------------------------------------------------------------------------
# Observability


@dataclass
class FakeStats:
    """Counters tests assert on. ``disconnected`` is set at the first client disconnect."""

    requests: int = 0
    """HTTP requests received, any route (including rejected ones)."""
    streams_open: int = 0
    """SSE streams whose handler is running now (headers sent, body not finished)."""
    streams_completed: int = 0
    """SSE streams that reached their scripted end."""
    drops: int = 0
    """Connections the fake cut on purpose (``fault=drop_after``)."""
    disconnects: int = 0
    """Requests whose client went away before the answer ended (write failed or the
    connection closed while the handler was waiting)."""
    endless_bytes: int = 0
    """Bytes of never-ending ``data:`` lines sent (``fault=endless_data``)."""
    held: int = 0
    """Streams waiting at their ``hold_at`` for :attr:`FakeUpstream.resume`."""
    title_requests: int = 0
    """Requests for a conversation title (see the module docstring)."""
    titles_held: int = 0
    """Title requests waiting (``[title_hold=1]``) for :attr:`FakeUpstream.release_titles`."""
    disconnected: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(frozen=True)
class RecordedRequest:
    """One request as received: method, path, headers, JSON body (None if none), the
    client's ``host:port`` (equal for requests sent over one kept-alive connection) and
    when it arrived (``time.monotonic()``)."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    peer: str
    received_at: float = 0.0


# ---------------------------------------------------------------------------------------------
# Dialects


class _DashScope:
    """DashScope's native wire format."""

    name = "dashscope"

    @staticmethod
    def error_body(status: int, request_id: str) -> dict[str, Any]:
        code, message = {
            400: ("InvalidParameter", "The request is invalid."),
            401: ("InvalidApiKey", "Invalid API-key provided."),
            403: ("AccessDenied", "Access denied."),
            404: ("ModelNotFound", "Model not exist."),
            429: ("Throttling.RateQuota", "Requests rate limit exceeded, please try again later."),
        }.get(status, ("InternalError", "An internal error has occured, please try again later."))
        return {"code": code, "message": message, "request_id": request_id}

    @staticmethod
    def event(seq: int, payload: dict[str, Any]) -> bytes:
        data = orjson.dumps(payload)
        return b"id:%d\nevent:result\n:HTTP_STATUS/200\ndata:%s\n\n" % (seq, data)

    @staticmethod
    def result(
        content: str,
        finish: str,
        usage: tuple[int, int],
        request_id: str,
        *,
        reasoning: str | None = None,
        reasoning_tokens: int | None = None,
        cached: int | None = None,
        search: list[dict[str, Any]] | None = None,
        multimodal: bool = False,
    ) -> dict[str, Any]:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": ([{"text": content}] if content else []) if multimodal else content,
        }
        if reasoning is not None:
            message["reasoning_content"] = reasoning
        output: dict[str, Any] = {"choices": [{"message": message, "finish_reason": finish}]}
        if search is not None:
            output["search_info"] = {"extra_tool_info": [], "search_results": search}
        usage_body: dict[str, Any] = {
            "input_tokens": usage[0],
            "output_tokens": usage[1],
            "total_tokens": usage[0] + usage[1],
        }
        if reasoning_tokens is not None:
            usage_body["output_tokens_details"] = {"reasoning_tokens": reasoning_tokens}
        if cached is not None:
            usage_body["prompt_tokens_details"] = {"cached_tokens": cached}
        return {"output": output, "usage": usage_body, "request_id": request_id}

    @staticmethod
    def stream_error(seq: int, request_id: str) -> bytes:
        data = orjson.dumps(
            {
                "code": "DataInspectionFailed",
                "message": "Output data may contain inappropriate content.",
                "request_id": request_id,
            }
        )
        return b"id:%d\nevent:error\n:HTTP_STATUS/400\ndata:%s\n\n" % (seq, data)

    @staticmethod
    def malformed(seq: int) -> bytes:
        return b'id:%d\nevent:result\n:HTTP_STATUS/200\ndata:{"output": {"choices": [\n\n' % seq


class _OpenAI:
    """OpenAI's chat completions wire format."""

    name = "openai"

    @staticmethod
    def error_body(status: int, request_id: str) -> dict[str, Any]:
        kind, code, message = {
            400: ("invalid_request_error", None, "The request is invalid."),
            401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
            403: ("invalid_request_error", "unsupported_country_region_territory", "Forbidden."),
            404: ("invalid_request_error", "model_not_found", "The model does not exist."),
            429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests."),
        }.get(status, ("server_error", None, "The server had an error processing your request."))
        return {"error": {"message": message, "type": kind, "param": None, "code": code}}

    @staticmethod
    def chunk(
        request_id: str,
        model: str,
        delta: dict[str, Any],
        finish: str | None,
        include_usage: bool,
    ) -> bytes:
        payload: dict[str, Any] = {
            "id": request_id,
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        if include_usage:
            payload["usage"] = None  # as OpenAI sends it on every chunk but the last
        return b"data: %s\n\n" % orjson.dumps(payload)

    @staticmethod
    def usage(
        usage: tuple[int, int], reasoning_tokens: int | None, cached: int | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "prompt_tokens": usage[0],
            "completion_tokens": usage[1],
            "total_tokens": usage[0] + usage[1],
        }
        if reasoning_tokens is not None:
            body["completion_tokens_details"] = {"reasoning_tokens": reasoning_tokens}
        if cached is not None:
            body["prompt_tokens_details"] = {"cached_tokens": cached}
        return body

    @staticmethod
    def usage_chunk(request_id: str, model: str, usage: dict[str, Any]) -> bytes:
        payload = {
            "id": request_id,
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": [],
            "usage": usage,
        }
        return b"data: %s\n\n" % orjson.dumps(payload)

    @staticmethod
    def stream_error() -> bytes:
        error = _OpenAI.error_body(500, "")
        return b"data: %s\n\n" % orjson.dumps(error)

    @staticmethod
    def malformed() -> bytes:
        return b'data: {"choices": [{"delta": \n\n'


# ---------------------------------------------------------------------------------------------
# The server


class FakeUpstream:
    """The fake upstream server, listening on ``host``:``port`` (0 picks a free port).

    Use ``async with FakeUpstream() as fake:`` (or :meth:`start` / :meth:`stop`), then point
    the settings at :attr:`dashscope_base_url` / :attr:`openai_base_url`. ``api_key=None``
    accepts any (or no) ``Authorization`` header.
    """

    def __init__(
        self,
        *,
        api_key: str | None = "test-key",
        models: Sequence[str] = ("fake-chat", "fake-mini"),
        host: str = "127.0.0.1",
        port: int = 0,
        chunk_chars: int = 4,
        record: int = 256,
        error_message: str | None = None,
    ) -> None:
        self.api_key = api_key
        self.models = list(models)
        self.error_message = error_message
        """When set, the message of every error reply (tests feed hostile text through it)."""
        self.host = host
        self.port = port
        self.chunk_chars = chunk_chars
        self.stats = FakeStats()
        self.requests: deque[RecordedRequest] = deque(maxlen=record)
        """The last ``record`` requests received, oldest first."""
        self._runner: web.AppRunner | None = None
        self._stopping = False
        self._changed = asyncio.Event()
        self._sequence = 0
        self._failed: dict[str, int] = {}  # prompt -> requests failed by CODE_then_ok
        self.resume = asyncio.Event()
        """Set it to let the streams held at ``[hold_at=BYTES]`` go on."""
        self.release_titles = asyncio.Event()
        """Set it to let the title requests held by ``[title_hold=1]`` be answered."""

    # -- lifecycle

    async def start(self) -> None:
        """Listen; :attr:`port` is the real port afterwards."""
        # Real upstreams take a long history in one request: not aiohttp's 1 MiB default.
        app = web.Application(client_max_size=64 << 20)
        app.router.add_post(DASHSCOPE_PATH, self._dashscope_text)
        app.router.add_post(DASHSCOPE_MULTIMODAL_PATH, self._dashscope_multimodal)
        app.router.add_post(OPENAI_CHAT_PATH, self._openai_chat)
        app.router.add_get(OPENAI_MODELS_PATH, self._openai_models)
        # handler_cancellation: a handler waiting (delay, hang) learns at once that its
        # client went away, which is how disconnects are counted.
        self._runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=0.5
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        """Stop listening and end the handlers still running (hung streams included)."""
        if self._runner is not None:
            self._stopping = True
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeUpstream:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def dashscope_base_url(self) -> str:
        """The value for ``DASHSCOPE_HTTP_BASE_URL``."""
        return f"{self.base_url}/api/v1"

    @property
    def openai_base_url(self) -> str:
        """The value for ``OPENAI_BASE_URL``."""
        return f"{self.base_url}/v1"

    async def wait_for(self, predicate: Callable[[FakeStats], bool], within: float = 5.0) -> None:
        """Return once ``predicate(stats)`` holds; AssertionError after ``within`` seconds."""
        try:
            async with asyncio.timeout(within):
                while not predicate(self.stats):
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"not reached within {within}s: {self.stats}") from None

    # -- bookkeeping

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def _receive(self, request: web.Request) -> tuple[Any, str]:
        self.stats.requests += 1
        self._sequence += 1
        self._notify()
        raw = await request.read()
        body = orjson.loads(raw) if raw else None
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.requests.append(
            RecordedRequest(
                request.method,
                request.path,
                dict(request.headers),
                body,
                f"{peer[0]}:{peer[1]}" if peer else "",
                time.monotonic(),
            )
        )
        return body, f"fake-{self._sequence}"

    def _authorized(self, request: web.Request) -> bool:
        return self.api_key is None or request.headers.get("Authorization") == (
            f"Bearer {self.api_key}"
        )

    def _error(
        self, dialect: type[_DashScope | _OpenAI], status: int, script: Script | None, rid: str
    ) -> web.Response:
        headers = {"Retry-After": script.retry_after} if status == 429 and script else {}
        body = dialect.error_body(status, rid)
        if self.error_message is not None:
            if "error" in body:
                body["error"]["message"] = self.error_message
            else:
                body["message"] = self.error_message
        return web.Response(
            status=status,
            body=orjson.dumps(body),
            content_type="application/json",
            headers=headers,
        )

    def _scripted_status(self, script: Script) -> int | None:
        """The HTTP error status this request gets up front, if any."""
        if script.http_status is not None:
            return script.http_status
        fail_first = script.fail_first
        if fail_first is None:
            return None
        status, times = fail_first
        failed = self._failed.get(script.prompt, 0)
        if failed >= times:
            return None
        self._failed[script.prompt] = failed + 1
        return status

    def _count_disconnect(self) -> None:
        if not self._stopping:
            self.stats.disconnects += 1
            self.stats.disconnected.set()

    # -- routes

    async def _openai_models(self, request: web.Request) -> web.Response:
        _, rid = await self._receive(request)
        if not self._authorized(request):
            return self._error(_OpenAI, 401, None, rid)
        data = [
            {"id": model, "object": "model", "created": 0, "owned_by": "fake"}
            for model in self.models
        ]
        return web.json_response({"object": "list", "data": data}, dumps=_dumps)

    async def _dashscope_text(self, request: web.Request) -> web.StreamResponse:
        return await self._dashscope(request, multimodal=False)

    async def _dashscope_multimodal(self, request: web.Request) -> web.StreamResponse:
        return await self._dashscope(request, multimodal=True)

    async def _dashscope(self, request: web.Request, *, multimodal: bool) -> web.StreamResponse:
        body, rid = await self._receive(request)
        if not self._authorized(request):
            return self._error(_DashScope, 401, None, rid)
        model = str(body.get("model", ""))
        if not multimodal and newer_than_qwen3(model):
            return self._bad_request(rid, "url error, please check url！")
        messages = body["input"]["messages"]
        parameters = body.get("parameters") or {}
        script = Script.parse(_last_user_text(messages))
        if asks_for_title(messages):
            script = await self._title_script(script)
        images = image_count(_last_user(messages))
        chunks, finish = self._plan(script, parameters.get("max_tokens"), images)
        input_tokens = count_input_tokens(messages)
        status = self._scripted_status(script)
        if status is not None:
            return self._error(_DashScope, status, script, rid)
        enable = parameters.get("enable_thinking")
        thinking = enable is True or (
            enable is None and (always_thinks(model) or newer_than_qwen3(model))
        )
        streaming = request.headers.get("X-DashScope-SSE", "").lower() == "enable"
        incremental = bool(parameters.get("incremental_output"))
        if thinking and not (streaming and incremental):
            return self._bad_request(
                rid, "This model only support stream mode with incremental_output=true."
            )
        thoughts = reasoning_chunks(script.prompt) if thinking else []
        reasoning_tokens = len(thoughts) if thinking else None
        search = search_results(script.search) if parameters.get("enable_search") else None
        if not search:
            search = None
        if not streaming:
            await self._before_json(script)
            result = _DashScope.result(
                "".join(chunks),
                finish,
                (input_tokens, len(chunks)),
                rid,
                cached=script.cached,
                search=search,
                multimodal=multimodal,
            )
            return web.json_response(result, dumps=_dumps)

        sent: list[str] = []
        pieces: list[tuple[str, str]] = [("reasoning", text) for text in thoughts]
        pieces += [("content", text) for text in chunks]
        if search is not None:
            pieces.insert(0, ("search", ""))
        if not pieces:
            pieces = [("content", "")]

        def event(seq: int, kind: str, text: str, last: bool) -> bytes:
            if kind != "search":
                sent.append(text)
            content = "".join(
                piece for kind_, piece in zip(kinds, sent, strict=False) if kind_ == "content"
            )
            if kind == "content" and incremental:
                content = text
            elif incremental:
                content = ""
            reasoning = None
            if thinking:
                reasoning = text if kind == "reasoning" else ""
            usage = (input_tokens, len(sent))
            payload = _DashScope.result(
                content,
                finish if last else "null",
                usage,
                rid,
                reasoning=reasoning,
                reasoning_tokens=reasoning_tokens,
                cached=script.cached,
                search=search if kind == "search" else ([] if search is not None else None),
                multimodal=multimodal,
            )
            return _DashScope.event(seq, payload)

        kinds = [kind for kind, _ in pieces if kind != "search"]
        events = [
            event(i + 1, kind, text, i == len(pieces) - 1) for i, (kind, text) in enumerate(pieces)
        ]
        return await self._stream(
            request,
            script,
            events,
            first=b"",
            tail=b"",
            stream_error=_DashScope.stream_error(2, rid),
            malformed=_DashScope.malformed(2),
        )

    def _bad_request(self, rid: str, message: str) -> web.Response:
        body = {"code": "InvalidParameter", "message": message, "request_id": rid}
        return web.Response(status=400, body=orjson.dumps(body), content_type="application/json")

    async def _openai_chat(self, request: web.Request) -> web.StreamResponse:
        body, rid = await self._receive(request)
        if not self._authorized(request):
            return self._error(_OpenAI, 401, None, rid)
        messages = body["messages"]
        model = str(body.get("model", ""))
        script = Script.parse(_last_user_text(messages))
        if asks_for_title(messages):
            script = await self._title_script(script)
        images = image_count(_last_user(messages))
        chunks, finish = self._plan(script, body.get("max_tokens"), images)
        status = self._scripted_status(script)
        if status is not None:
            return self._error(_OpenAI, status, script, rid)
        switch = (body.get("chat_template_kwargs") or {}).get("enable_thinking")
        if switch is None:
            switch = body.get("enable_thinking")
        thinking = switch is True or (switch is None and always_thinks(model))
        thoughts = reasoning_chunks(script.prompt) if thinking else []
        reasoning_tokens = len(thoughts) if thinking else None
        usage = _OpenAI.usage(
            (count_input_tokens(messages), len(chunks) + len(thoughts)),
            reasoning_tokens,
            script.cached,
        )
        inline = script.inline_think and bool(thoughts)
        if inline:
            text = "<think>" + "".join(thoughts) + "</think>\n\n" + "".join(chunks)
            deltas = [{"content": piece} for piece in _cut(text, self.chunk_chars)]
        else:
            field = script.reasoning_field
            deltas = [{field: piece} for piece in thoughts]
            deltas += [{"content": piece} for piece in chunks]
        if not body.get("stream"):
            await self._before_json(script)
            message: dict[str, Any] = {"role": "assistant"}
            if inline:
                message["content"] = "".join(delta["content"] for delta in deltas)
            else:
                message["content"] = "".join(chunks)
                if thoughts:
                    message[script.reasoning_field] = "".join(thoughts)
            completion = {
                "id": rid,
                "object": "chat.completion",
                "created": 0,
                "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": usage,
            }
            return web.json_response(completion, dumps=_dumps)

        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        events = [_OpenAI.chunk(rid, model, delta, None, include_usage) for delta in deltas]
        tail = _OpenAI.chunk(rid, model, {}, finish, include_usage)
        if include_usage:
            tail += _OpenAI.usage_chunk(rid, model, usage)
        tail += b"data: [DONE]\n\n"
        role = {"role": "assistant", "content": ""}
        return await self._stream(
            request,
            script,
            events,
            first=_OpenAI.chunk(rid, model, role, None, include_usage),
            tail=tail,
            stream_error=_OpenAI.stream_error(),
            malformed=_OpenAI.malformed(),
        )

    # -- shared behaviour

    async def _title_script(self, script: Script) -> Script:
        """What a title request does: count it, hold it, answer its ``title`` directives."""
        self.stats.title_requests += 1
        self._notify()
        if script.title_hold:
            self.stats.titles_held += 1
            self._notify()
            try:
                await self.release_titles.wait()
            finally:
                self.stats.titles_held -= 1
                self._notify()
        if script.title_fault is not None:
            return Script(prompt=script.prompt, fault=script.title_fault)
        if script.title is not None:
            return Script(prompt=script.prompt, answer=script.title)
        return script

    def _plan(self, script: Script, max_tokens: object, images: int) -> tuple[list[str], str]:
        if script.answer is not None:
            chunks = _cut(script.answer, self.chunk_chars)
        else:
            chunks = reply_chunks(script.prompt, self.chunk_chars, images=images)
        if isinstance(max_tokens, int) and 0 <= max_tokens < len(chunks):
            return chunks[:max_tokens], "length"
        return chunks, "stop"

    async def _before_json(self, script: Script) -> None:
        try:
            if script.fault == "hang":
                await asyncio.Future()  # until the client goes away or the server stops
            await asyncio.sleep(script.first_delay)
        except asyncio.CancelledError:
            self._count_disconnect()
            raise

    async def _stream(
        self,
        request: web.Request,
        script: Script,
        events: list[bytes],
        *,
        first: bytes,
        tail: bytes,
        stream_error: bytes,
        malformed: bytes,
    ) -> web.StreamResponse:
        """Send ``first``, the chunk ``events``, then ``tail``, applying the script's faults."""
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        self.stats.streams_open += 1
        self._notify()
        try:
            await response.prepare(request)
            if script.fault == "hang":
                await asyncio.Future()
            await asyncio.sleep(script.first_delay)
            if first:
                await response.write(first)
            if script.fault == "endless_data":
                await response.write(events[0])
                await self._endless_data(response, script)
            while script.fault == "repeat":
                await response.write(events[0])
                # Also yields to the loop: a write to a fast reader never suspends.
                await asyncio.sleep(script.delay)
            for index, data in enumerate(events):
                if index and script.delay:
                    await asyncio.sleep(script.delay)
                if index == script.fault_arg and script.fault == "drop_after":
                    if request.transport is not None:
                        # close() flushes the chunks already written, then ends the TCP
                        # connection without the chunked terminator: a truncated body.
                        request.transport.close()
                    self.stats.drops += 1
                    return response
                if index == script.fault_arg and script.fault == "eof_after":
                    break
                await response.write(data)
                if script.fault == "malformed":
                    await response.write(malformed)
                    break
                if script.fault == "stream_error":
                    await response.write(stream_error)
                    break
            else:
                await response.write(tail)
                self.stats.streams_completed += 1
            await response.write_eof()
        except ConnectionResetError:  # aiohttp's ClientConnectionResetError included
            self._count_disconnect()
        except asyncio.CancelledError:
            self._count_disconnect()
            raise
        finally:
            self.stats.streams_open -= 1
            self._notify()
        return response

    async def _endless_data(self, response: web.StreamResponse, script: Script) -> None:
        """``fault=endless_data``: one event that never ends, until the client goes away."""
        lines = (b"data: " + b"x" * 1017 + b"\n") * 16
        while True:
            held = script.hold_at is not None and self.stats.endless_bytes >= script.hold_at
            if held and not self.resume.is_set():
                self.stats.held += 1
                self._notify()
                try:
                    await self.resume.wait()
                finally:
                    self.stats.held -= 1
            await response.write(lines)
            self.stats.endless_bytes += len(lines)
            # Also yields to the loop: a write to a fast reader never suspends.
            await asyncio.sleep(script.delay)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


# ---------------------------------------------------------------------------------------------
# Standalone


async def _serve(host: str, port: int, api_key: str | None) -> None:
    async with FakeUpstream(host=host, port=port, api_key=api_key) as fake:
        print(f"DASHSCOPE_HTTP_BASE_URL={fake.dashscope_base_url}")
        print(f"OPENAI_BASE_URL={fake.openai_base_url}")
        print(f"API key: {api_key or '(any)'}; Ctrl-C or SIGTERM stops", flush=True)
        started = time.monotonic()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        print(f"served {fake.stats.requests} requests in {time.monotonic() - started:.0f}s")


def main() -> None:
    parser = argparse.ArgumentParser(description="Fake DashScope + OpenAI upstream for liaotian")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--api-key", default=None, help="require this Bearer key (default: any)")
    args = parser.parse_args()
    asyncio.run(_serve(args.host, args.port, args.api_key))


if __name__ == "__main__":
    main()
